# Fails the build when a source file includes a header of a layer it may not
# depend on (docs/architecture.md, "Layers"). Run by the tern_layers target
# before anything is compiled:  cmake -DSRC=<repo>/src -P check_layers.cmake
#
# Each layer names the folders (or files) that belong to it and the layers
# it may include. The order is the one of the diagram: nothing includes a
# layer above its own.
set(layers
  common config net dns auth store protocols queue policy mailauth antispam
  reports acme delivery services server cli)

set(common_paths    "common/")
set(config_paths    "config/")
set(net_paths       "net/")
set(dns_paths       "dns/")
set(auth_paths      "auth/")
set(store_paths     "store/")
set(protocols_paths "smtp/protocol/" "smtp/client/" "pop3/session" "imap/protocol/"
                    "http/protocol/")
set(queue_paths     "queue/")
set(policy_paths    "policy/")
set(mailauth_paths  "mailauth/")
set(antispam_paths  "antispam/")
set(reports_paths   "reports/")
set(acme_paths      "acme/")
set(delivery_paths  "delivery/")
set(services_paths  "smtp/server/" "pop3/server" "pop3/connection" "imap/server/"
                    "http/server/" "control/")
set(server_paths    "server/")
set(cli_paths       "cli/")

set(common_may    common)
set(config_may    common)
set(net_may       common)
set(dns_may       common)
set(auth_may      common)
set(store_may     common)
set(protocols_may common auth)
set(queue_may     common)
set(policy_may    common auth protocols)
set(mailauth_may  common dns)
set(antispam_may  common config dns)
set(reports_may   common dns queue mailauth)
set(acme_may      common config net)
set(delivery_may  common config net dns auth store protocols queue mailauth)
set(services_may  common config net dns auth store protocols queue policy mailauth
                  antispam reports)
set(server_may    common config net dns auth store protocols queue policy mailauth
                  antispam reports acme delivery services)
set(cli_may       common config net dns auth store protocols queue policy mailauth
                  antispam reports acme delivery services server)

function(layer_of path out)
  foreach(layer ${layers})
    foreach(prefix ${${layer}_paths})
      string(FIND "${path}" "${prefix}" at)
      if(at EQUAL 0)
        set(${out} ${layer} PARENT_SCOPE)
        return()
      endif()
    endforeach()
  endforeach()
  set(${out} "" PARENT_SCOPE)
endfunction()

file(GLOB_RECURSE files RELATIVE "${SRC}" "${SRC}/*.h" "${SRC}/*.cc")
set(problems "")
foreach(file ${files})
  layer_of("${file}" mine)
  if(mine STREQUAL "")
    string(APPEND problems "  ${file}: in no layer (add its folder to cmake/check_layers.cmake)\n")
    continue()
  endif()
  file(STRINGS "${SRC}/${file}" includes REGEX "^#include \"[^\"]+\"")
  foreach(line ${includes})
    string(REGEX REPLACE "^#include \"([^\"]+)\".*" "\\1" header "${line}")
    layer_of("${header}" theirs)
    if(theirs STREQUAL "" OR theirs STREQUAL mine)
      continue()
    endif()
    list(FIND ${mine}_may ${theirs} allowed)
    if(allowed EQUAL -1)
      string(APPEND problems "  ${file} (${mine}) includes ${header} (${theirs})\n")
    endif()
  endforeach()
endforeach()
if(NOT problems STREQUAL "")
  message(FATAL_ERROR "includes against the layer order (docs/architecture.md):\n${problems}")
endif()
