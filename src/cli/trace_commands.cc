// `tern trace`: reads the trace files, picks the events of the messages
// asked for and prints them per message (or as JSON).
#include "cli/trace_commands.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include "common/file_io.h"
#include "common/strings.h"
#include "common/trace.h"
#include "queue/queue_id.h"

namespace tern::cli {
namespace {

using nlohmann::json;

std::string Str(const json& e, const char* key) {
  auto it = e.find(key);
  return it != e.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> List(const json& e, const char* key) {
  std::vector<std::string> out;
  auto it = e.find(key);
  if (it == e.end() || !it->is_array()) return out;
  for (const json& v : *it) {
    if (v.is_string()) out.push_back(v.get<std::string>());
  }
  return out;
}

// "<a@b>" and "a@b" name the same address or Message-ID.
std::string_view Unbracket(std::string_view s) {
  s = Trim(s);
  if (s.size() >= 2 && s.front() == '<' && s.back() == '>') s = s.substr(1, s.size() - 2);
  return s;
}

bool SameAddress(std::string_view a, std::string_view b) {
  return !a.empty() && IEquals(Unbracket(a), Unbracket(b));
}

bool NamesAddress(const json& e, const std::string& address) {
  std::string type = Str(e, "event");
  if (type == "received" || type == "discarded" || type == "refused") {
    if (SameAddress(Str(e, "from"), address)) return true;
    for (const std::string& r : List(e, "rcpts")) {
      if (SameAddress(r, address)) return true;
    }
  } else if (type == "delivery") {
    return SameAddress(Str(e, "rcpt"), address);
  }
  return false;
}

bool HasMessageId(const json& e, const std::string& message_id) {
  std::string m = Str(e, "message_id");
  return !m.empty() && Unbracket(m) == Unbracket(message_id);
}

// Adds the DSNs of the messages in `ids`, and the messages the DSNs in it
// report on, until nothing more comes in.
void FollowBounces(const std::vector<json>& events, std::set<std::string>* ids) {
  for (bool grew = true; grew;) {
    grew = false;
    for (const json& e : events) {
      if (Str(e, "event") != "bounce") continue;
      std::string id = Str(e, "id"), dsn = Str(e, "dsn");
      if (id.empty() || dsn.empty()) continue;
      if (ids->count(id) && !ids->count(dsn)) grew = ids->insert(dsn).second;
      if (ids->count(dsn) && !ids->count(id)) grew = ids->insert(id).second;
    }
  }
}

std::string Angle(const std::string& address) { return "<" + address + ">"; }

std::string Join(const std::vector<std::string>& items, bool angle) {
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += ", ";
    out += angle ? Angle(s) : s;
  }
  return out;
}

// One event as a line (or a few) of a story, after its time.
std::string Describe(const json& e) {
  std::string type = Str(e, "event");
  std::string out;
  if (type == "received" || type == "discarded") {
    out = (type == "received" ? "received from " : "discarded by a mail filter, from ") +
          Angle(Str(e, "from")) + " for " + Join(List(e, "rcpts"), true);
    if (e.contains("size") && e["size"].is_number()) {
      out += " (" + std::to_string(e["size"].get<uint64_t>()) + " bytes)";
    }
    std::string client = "client " + Str(e, "client");
    if (!Str(e, "helo").empty()) client += " (" + Str(e, "helo") + ")";
    client += " on " + Str(e, "listener");
    if (!Str(e, "tls").empty()) client += ", " + Str(e, "tls");
    if (!Str(e, "user").empty()) client += ", AUTH as " + Str(e, "user");
    out += "\n    " + client;
    if (!Str(e, "mailauth").empty()) out += "\n    " + Str(e, "mailauth");
    if (!Str(e, "quarantine").empty()) out += "\n    quarantined: " + Str(e, "quarantine");
  } else if (type == "refused") {
    std::string stage = Str(e, "stage");
    out = "refused at " + (stage == "data" ? std::string("end of data") : stage);
    if (stage != "connect") out += ", from " + Angle(Str(e, "from"));
    if (!List(e, "rcpts").empty()) out += " to " + Join(List(e, "rcpts"), true);
    out += ": " + Str(e, "reply");
    std::string client = "client " + Str(e, "client");
    if (!Str(e, "helo").empty()) client += " (" + Str(e, "helo") + ")";
    client += " on " + Str(e, "listener");
    if (!Str(e, "user").empty()) client += ", AUTH as " + Str(e, "user");
    out += "\n    " + client;
    if (!Str(e, "mailauth").empty()) out += "\n    " + Str(e, "mailauth");
  } else if (type == "delivery") {
    std::string result = Str(e, "result");
    out = result + " " + Angle(Str(e, "rcpt"));
    std::string where = Str(e, "destination");
    if (where == "local") {
      std::string mailbox = Str(e, "mailbox");
      out += " (local";
      if (!mailbox.empty() && !SameAddress(mailbox, Str(e, "rcpt"))) out += ", to " + mailbox;
      if (!Str(e, "folder").empty()) out += ", folder " + Str(e, "folder");
      out += ")";
    } else if (where == "remote") {
      out += " (remote";
      if (!Str(e, "host").empty()) out += " via " + Str(e, "host");
      if (!Str(e, "tls").empty()) out += ", " + Str(e, "tls");
      out += ")";
    } else {
      out += " (by the queue)";
    }
    if (!Str(e, "reply").empty()) out += ": " + Str(e, "reply");
  } else if (type == "bounce") {
    out = (Str(e, "kind") == "double bounce" ? "double bounce " : "DSN ") + Str(e, "dsn") +
          " to " + Angle(Str(e, "to")) + ": " + Join(List(e, "actions"), false);
  } else if (type == "done") {
    out = "left the queue";
    if (!Str(e, "deleted").empty()) out += ", deleted " + Str(e, "deleted");
    std::vector<std::string> parts;
    if (!List(e, "delivered").empty()) parts.push_back("delivered to " + Join(List(e, "delivered"), true));
    if (!List(e, "failed").empty()) parts.push_back("failed for " + Join(List(e, "failed"), true));
    if (!parts.empty()) out += ": " + parts[0] + (parts.size() > 1 ? "; " + parts[1] : "");
  } else {
    out = type;
  }
  return out;
}

}  // namespace

std::vector<json> LoadTrace(const std::string& dir, int days, std::time_t now) {
  std::vector<json> events;
  auto fd = io::OpenDir(dir);
  if (!fd) return events;
  auto names = io::ListDir(fd->get());
  if (!names) return events;
  std::string oldest = trace::DayOf(now - static_cast<std::time_t>(std::max(days, 1) - 1) * 86400);
  std::vector<std::string> files;
  for (const std::string& name : *names) {
    if (name.size() == 16 && name.compare(10, 6, ".jsonl") == 0 && name.substr(0, 10) >= oldest) {
      files.push_back(name);
    }
  }
  std::sort(files.begin(), files.end());
  for (const std::string& name : files) {
    std::ifstream in(dir + "/" + name);
    std::string line;
    while (std::getline(in, line)) {
      json e = json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (e.is_object() && e.contains("event")) events.push_back(std::move(e));
    }
  }
  return events;
}

std::vector<json> SelectTrace(const std::vector<json>& events, const std::string& query) {
  std::set<std::string> ids;
  std::set<size_t> direct;  // events picked for themselves (refusals)
  auto by_message_id = [&](const std::string& message_id) {
    for (size_t i = 0; i < events.size(); ++i) {
      if (!HasMessageId(events[i], message_id)) continue;
      if (!Str(events[i], "id").empty()) ids.insert(Str(events[i], "id"));
      direct.insert(i);
    }
  };
  std::string q(Trim(query));
  if (queue::IsValidQueueId(q)) {
    ids.insert(q);
  } else if (q.size() > 2 && q.front() == '<' && q.back() == '>' &&
             q.find('@') == std::string::npos) {
    by_message_id(q);
  } else if (q.size() > 2 && q.front() == '<' && q.back() == '>') {
    // "<x@y>": a Message-ID first, an address when none has it.
    by_message_id(q);
    if (ids.empty() && direct.empty()) {
      for (size_t i = 0; i < events.size(); ++i) {
        if (!NamesAddress(events[i], q)) continue;
        if (Str(events[i], "id").empty()) direct.insert(i);
        else ids.insert(Str(events[i], "id"));
      }
    }
  } else {
    for (size_t i = 0; i < events.size(); ++i) {
      if (!NamesAddress(events[i], q)) continue;
      if (Str(events[i], "id").empty()) direct.insert(i);
      else ids.insert(Str(events[i], "id"));
    }
    if (ids.empty() && direct.empty()) by_message_id(q);
  }
  FollowBounces(events, &ids);
  std::vector<json> out;
  for (size_t i = 0; i < events.size(); ++i) {
    std::string id = Str(events[i], "id");
    if (direct.count(i) || (!id.empty() && ids.count(id)) ||
        (Str(events[i], "event") == "bounce" && ids.count(Str(events[i], "dsn")))) {
      out.push_back(events[i]);
    }
  }
  return out;
}

std::string FormatTrace(const std::vector<json>& events) {
  // Stories in the order of their first event: messages by queue id,
  // refusals without one alone.
  std::vector<std::string> order;
  std::map<std::string, std::vector<const json*>> stories;
  std::map<std::string, std::string> dsn_of;  // DSN id -> the message it reports on
  for (size_t i = 0; i < events.size(); ++i) {
    const json& e = events[i];
    std::string key = Str(e, "id");
    if (key.empty()) key = "#" + std::to_string(i);
    if (Str(e, "event") == "bounce" && !Str(e, "dsn").empty()) dsn_of[Str(e, "dsn")] = key;
    if (!stories.count(key)) order.push_back(key);
    stories[key].push_back(&e);
  }
  std::string out;
  for (const std::string& key : order) {
    const std::vector<const json*>& story = stories[key];
    if (!out.empty()) out += "\n";
    bool message = key[0] != '#';
    std::string message_id;
    bool received = false, done = false;
    for (const json* e : story) {
      if (message_id.empty()) message_id = Str(*e, "message_id");
      std::string type = Str(*e, "event");
      received = received || type == "received";
      done = done || type == "done" || type == "discarded" || type == "refused";
    }
    if (message) {
      out += "message " + key;
      if (!message_id.empty()) out += " " + message_id;
      if (dsn_of.count(key)) out += " (delivery status notification for " + dsn_of[key] + ")";
      out += "\n";
    } else {
      out += "refusal\n";
    }
    for (const json* e : story) {
      std::string text = Describe(*e);
      std::string indent(2 + Str(*e, "time").size() + 2, ' ');
      // Continuation lines line up under the event's text.
      std::string shown;
      for (size_t pos = 0; pos <= text.size();) {
        size_t nl = text.find('\n', pos);
        std::string part = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
        shown += pos == 0 ? part : "\n" + indent + std::string(Trim(part));
        if (nl == std::string::npos) break;
        pos = nl + 1;
      }
      out += "  " + Str(*e, "time") + "  " + shown + "\n";
    }
    if (message && !done) {
      out += received || dsn_of.count(key)
                 ? "  (still in the queue, or its removal is not in the trace read)\n"
                 : "  (its reception is older than the trace read)\n";
    }
  }
  return out;
}

void RegisterTraceCommand(CLI::App& app, std::function<Result<config::Config>()> load_config,
                          std::function<int()>* action) {
  struct Args {
    std::string query;
    bool json = false;
    int days = 7;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand(
      "trace",
      "the story of a message (queue id or <Message-ID>) or of recent mail from or to "
      "an address, from the message trace");
  cmd->add_option("what", args->query, "queue id, <Message-ID> or address")->required();
  cmd->add_flag("--json", args->json, "print the matching events as a JSON array");
  cmd->add_option("--days", args->days, "how many days of trace to read (default 7)")
      ->check(CLI::Range(1, 3650));
  cmd->callback([args, load_config, action] {
    *action = [args, load_config] {
      auto cfg = load_config();
      if (!cfg) {
        std::cerr << "tern: " << cfg.error().message << "\n";
        return 1;
      }
      std::string dir = cfg->data_dir + "/trace";
      std::vector<json> events = LoadTrace(dir, args->days, std::time(nullptr));
      std::vector<json> picked = SelectTrace(events, args->query);
      if (picked.empty()) {
        std::cerr << "tern: nothing in the trace for " << args->query << " (last "
                  << args->days << " days of " << dir << ")";
        if (cfg->trace.keep_days == 0) std::cerr << "; the trace is off ([trace] keep_days = 0)";
        std::cerr << "\n";
        return 1;
      }
      if (args->json) {
        std::cout << "[\n";
        for (size_t i = 0; i < picked.size(); ++i) {
          std::cout << "  " << picked[i].dump() << (i + 1 < picked.size() ? ",\n" : "\n");
        }
        std::cout << "]\n";
      } else {
        std::cout << FormatTrace(picked);
      }
      return 0;
    };
  });
}

}  // namespace tern::cli
