// Property tests (RapidCheck) of the SMTP parsers' specification-level
// round trips, on generated values rather than the fuzzers' raw bytes:
//  - RFC 5321 4.1.2: a mailbox printed by Mailbox::ToString() parses back
//    to the same local part and domain;
//  - RFC 5321 4.5.2: content dot-stuffed by the outbound client and read
//    back by the server's BodyReader, in any chunking, is unchanged.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <string>
#include <vector>

#include "smtp/client/session.h"
#include "smtp/protocol/address.h"
#include "smtp/protocol/body_reader.h"

namespace tern::smtp {
namespace {

// RFC 5322 3.2.3 atext.
const std::string kAtext =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    "!#$%&'*+-/=?^_`{|}~";

rc::Gen<std::string> Atom(int max) {
  return rc::gen::resize(
      max, rc::gen::nonEmpty(rc::gen::container<std::string>(
               rc::gen::elementOf(kAtext))));
}

// Dot-atom local parts, or quoted strings of any printable ASCII
// (RFC 5321 4.1.2 qtextSMTP plus quoted-pairs for '"' and '\').
rc::Gen<std::string> LocalPart() {
  auto dot_atom = rc::gen::map(
      rc::gen::resize(4, rc::gen::nonEmpty(
                             rc::gen::container<std::vector<std::string>>(
                                 Atom(12)))),
      [](const std::vector<std::string>& atoms) {
        std::string out;
        for (const std::string& a : atoms) out += (out.empty() ? "" : ".") + a;
        return out;
      });
  auto quoted = rc::gen::resize(
      40, rc::gen::nonEmpty(rc::gen::container<std::string>(
              rc::gen::inRange<char>(0x20, 0x7f))));
  return rc::gen::oneOf(dot_atom, quoted);
}

// RFC 5321 4.1.2 Domain: LDH labels that neither start nor end with '-'.
rc::Gen<std::string> Domain() {
  const std::string alnum = "abcdefghijklmnopqrstuvwxyz0123456789";
  auto label = rc::gen::map(
      rc::gen::pair(rc::gen::elementOf(alnum),
                    rc::gen::resize(20, rc::gen::container<std::string>(
                                            rc::gen::elementOf(alnum + "-")))),
      [alnum](const std::pair<char, std::string>& p) {
        std::string l = std::string(1, p.first) + p.second;
        if (l.back() == '-') l.back() = 'x';
        return l;
      });
  return rc::gen::map(
      rc::gen::resize(4, rc::gen::nonEmpty(
                             rc::gen::container<std::vector<std::string>>(
                                 label))),
      [](const std::vector<std::string>& labels) {
        std::string out;
        for (const std::string& l : labels) out += (out.empty() ? "" : ".") + l;
        return out;
      });
}

RC_GTEST_PROP(SmtpProperties, MailboxPrintsAndParsesBack, ()) {
  Mailbox m;
  m.local = *LocalPart();
  m.domain = *Domain();
  const std::string printed = m.ToString();
  // RFC 5321 4.5.3.1.1 and 4.5.3.1.3: over-long forms are refused by the
  // parser; generated ones stay well within.
  RC_PRE(m.local.size() <= 64 && printed.size() + 2 <= 256);
  auto again = ParseMailbox(printed, false);
  RC_ASSERT(again.has_value());
  RC_ASSERT(again->local == m.local);
  RC_ASSERT(again->domain == m.domain);
  RC_ASSERT(again->ToString() == printed);
  const std::string line = "<" + printed + "> SIZE=10";
  auto path = ParsePath(line, false, false);  // views into `line`
  RC_ASSERT(path.has_value());
  RC_ASSERT(path->mailbox.local == m.local);
  RC_ASSERT(std::string(path->rest) == " SIZE=10");
}

RC_GTEST_PROP(SmtpProperties, DotStuffedDataReadsBackUnchanged, ()) {
  // Lines of any octets but CR and LF, up to 998 (RFC 5321 4.5.3.1.6; the
  // transparency dot does not count).
  const auto lines = *rc::gen::container<std::vector<std::string>>(
      rc::gen::oneOf(
          rc::gen::container<std::string>(rc::gen::elementOf(
              std::string(".\x01\x7f\x80\xff\0 aZ.", 11))),
          rc::gen::map(rc::gen::inRange<size_t>(0, 999),
                       [](size_t n) { return std::string(n, '.'); }),
          rc::gen::suchThat(rc::gen::arbitrary<std::string>(),
                            [](const std::string& s) {
                              return s.size() <= 998 &&
                                     s.find_first_of("\r\n") ==
                                         std::string::npos;
                            })));
  std::string body;
  for (const std::string& l : lines) body += l + "\r\n";
  std::string wire;
  client::DotStuffer stuffer;
  stuffer.Convert(body, wire);
  stuffer.Finish(wire);

  BodyReader reader;
  BodyReader::Limits limits;
  limits.max_size = 1u << 30;
  limits.line_limit = 1000;
  limits.max_hops = 1000;
  reader.Start(true, limits);
  const size_t chunk = *rc::gen::inRange<size_t>(1, wire.size() + 1);
  std::string out;
  bool done = false;
  size_t pos = 0;
  while (pos < wire.size() && !done) {
    std::string_view piece =
        std::string_view(wire).substr(pos, std::min(chunk, wire.size() - pos));
    size_t used = reader.Scan(piece, &out, &done);
    RC_ASSERT(used <= piece.size());
    pos += used;
    if (!done) RC_ASSERT(used == piece.size());
  }
  RC_ASSERT(done);
  RC_ASSERT(pos == wire.size());  // stops right after ".\r\n"
  RC_ASSERT(reader.fault() == BodyReader::Fault::kNone);
  RC_ASSERT(out == body);
}

}  // namespace
}  // namespace tern::smtp
