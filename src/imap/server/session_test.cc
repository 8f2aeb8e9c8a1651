// Unit tests for the sans-I/O IMAP session: states, login rules, literal
// handling, STARTTLS injection, the BAD limit, and the selected folder's
// updates (IDLE woken by another session's change, EXPUNGE held back
// during FETCH), SORT and THREAD (RFC 5256), on a real MaildirStore in a
// temporary directory.
#include "imap/server/session.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "auth/sasl.h"
#include "store/maildir_store.h"

namespace tern::imap {
namespace {

class FakeCredentials : public auth::CredentialStore {
 public:
  auth::PasswordCheck CheckPassword(const std::string& user,
                                    const std::string& password) override {
    if (user == "u@example.test" && password == "secret") {
      return std::optional<std::string>("u@example.test");
    }
    return std::optional<std::string>();
  }
  auth::ScramAnswer Scram(const std::string&) override {
    return std::optional<std::pair<std::string, auth::ScramCredentials>>();
  }
};

class FakeHost : public SessionHost {
 public:
  explicit FakeHost(std::string dir) : dir_(std::move(dir)) {}
  std::unique_ptr<auth::SaslMechanism> MakeSaslMechanism(
      std::string_view name) override {
    return auth::MakeMechanism(name, credentials_);
  }
  std::chrono::milliseconds AuthFailed(std::string_view, std::string_view) override {
    ++failures;
    return std::chrono::milliseconds(0);
  }
  Result<std::unique_ptr<store::MailStore>> OpenStore(const std::string&) override {
    if (fail_open) return Err("disk on fire", EIO);
    auto st = store::MaildirStore::Open(dir_);
    if (!st) return tl::unexpected(st.error());
    return std::unique_ptr<store::MailStore>(std::move(*st));
  }
  void Changed(std::string_view folder) override { changed.emplace_back(folder); }
  int failures = 0;
  bool fail_open = false;
  std::vector<std::string> changed;

 private:
  std::string dir_;
  FakeCredentials credentials_;
};

class ImapSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tern-imap-session-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    host_ = std::make_unique<FakeHost>(root_ + "/Maildir");
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  std::unique_ptr<Session> Make(bool tls) {
    ClientInfo client;
    client.ip = "127.0.0.1";
    client.tls = tls;
    client.starttls_available = !tls;
    auto s = std::make_unique<Session>(config_, *host_, client);
    s->Greet();
    s->output().clear();
    return s;
  }

  // Feeds `in`, runs the work the session asks for, returns the output.
  static std::string Drive(Session& s, std::string_view in) {
    size_t used = 0;
    std::string out;
    for (int guard = 0; guard < 1000; ++guard) {
      if (s.need() == Need::kWork) {
        s.Work();
      } else if (s.need() == Need::kDelay) {
        s.DelayDone();
      } else if (s.need() == Need::kInput && used < in.size()) {
        used += s.Feed(in.substr(used));
      } else {
        break;
      }
      out += s.output();
      s.output().clear();
    }
    return out;
  }

  std::unique_ptr<Session> LoggedIn() {
    auto s = Make(true);
    std::string out = Drive(*s, "a LOGIN u@example.test secret\r\n");
    EXPECT_NE(out.find("a OK [CAPABILITY"), std::string::npos) << out;
    return s;
  }

  // APPENDs `message` (CRLF) to INBOX, with an INTERNALDATE when given.
  static void Append(Session& s, const std::string& message,
                     const std::string& date = "") {
    std::string cmd = "ap APPEND INBOX ";
    if (!date.empty()) cmd += "\"" + date + "\" ";
    cmd += "{" + std::to_string(message.size()) + "+}\r\n" + message + "\r\n";
    std::string out = Drive(s, cmd);
    EXPECT_NE(out.find("ap OK"), std::string::npos) << out;
  }

  SessionConfig config_;
  std::string root_;
  std::unique_ptr<FakeHost> host_;
};

TEST_F(ImapSessionTest, GreetingAndLoginDisabledWithoutTls) {
  ClientInfo client{"127.0.0.1", false, true, false};
  Session s(config_, *host_, client);
  s.Greet();
  EXPECT_NE(s.output().find("STARTTLS LOGINDISABLED]"), std::string::npos) << s.output();
  s.output().clear();
  EXPECT_EQ(Drive(s, "a LOGIN u@example.test secret\r\n"),
            "a NO [PRIVACYREQUIRED] LOGIN is disabled before STARTTLS\r\n");
  EXPECT_EQ(Drive(s, "b SELECT INBOX\r\n"), "b BAD Log in first\r\n");
}

TEST_F(ImapSessionTest, StartTlsDropsWhatFollows) {
  ClientInfo client{"127.0.0.1", false, true, false};
  Session s(config_, *host_, client);
  s.Greet();
  s.output().clear();
  std::string in = "a STARTTLS\r\nb LOGIN u@example.test secret\r\n";
  size_t used = s.Feed(in);
  EXPECT_EQ(used, std::string("a STARTTLS\r\n").size());  // RFC 9051 6.2.1
  EXPECT_EQ(s.need(), Need::kStartTls);
  EXPECT_EQ(s.output(), "a OK Begin TLS negotiation now\r\n");
  s.output().clear();
  s.TlsStarted();
  EXPECT_EQ(s.need(), Need::kInput);
  EXPECT_NE(Drive(s, "c CAPABILITY\r\n").find("AUTH=PLAIN"), std::string::npos);
}

TEST_F(ImapSessionTest, CompressStopsAtTheCommandAndStaysOn) {
  auto s = Make(true);
  // RFC 4978 5: command-auth, so not before login.
  EXPECT_EQ(Drive(*s, "a COMPRESS DEFLATE\r\n"), "a BAD Log in first\r\n");
  s = LoggedIn();
  EXPECT_NE(Drive(*s, "b CAPABILITY\r\n").find(" COMPRESS=DEFLATE "), std::string::npos);
  EXPECT_EQ(Drive(*s, "c COMPRESS LZW\r\n"), "c BAD Unknown compression algorithm\r\n");
  // What follows the command is compressed: the session leaves it to the
  // connection, which inflates it first (RFC 4978 3).
  std::string in = "d COMPRESS DEFLATE\r\n\x4b\x01\x00";
  EXPECT_EQ(s->Feed(in), std::string("d COMPRESS DEFLATE\r\n").size());
  EXPECT_EQ(s->need(), Need::kCompress);
  EXPECT_EQ(s->output(), "d OK DEFLATE active\r\n");
  s->output().clear();
  s->CompressionStarted();
  EXPECT_EQ(s->need(), Need::kInput);
  EXPECT_EQ(Drive(*s, "e COMPRESS DEFLATE\r\n"),
            "e NO [COMPRESSIONACTIVE] DEFLATE is already active\r\n");
  EXPECT_EQ(s->need(), Need::kInput);
  EXPECT_EQ(Drive(*s, "f NOOP\r\n"), "f OK NOOP completed\r\n");
}

TEST_F(ImapSessionTest, WrongPasswordAndStoreFailure) {
  auto s = Make(true);
  EXPECT_EQ(Drive(*s, "a LOGIN u@example.test nope\r\n"),
            "a NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
  EXPECT_EQ(host_->failures, 1);
  host_->fail_open = true;
  EXPECT_EQ(Drive(*s, "b LOGIN u@example.test secret\r\n"),
            "b NO [UNAVAILABLE] Mailbox store unavailable, try again later\r\n");
  host_->fail_open = false;
  EXPECT_NE(Drive(*s, "c LOGIN u@example.test secret\r\n").find("c OK"),
            std::string::npos);
}

TEST_F(ImapSessionTest, AppendBeforeLoginRefusesTheLiteral) {
  auto s = Make(true);
  EXPECT_EQ(Drive(*s, "a APPEND INBOX {5}\r\n"), "a BAD Log in first\r\n");
  // The client dropped the command: the next line is a command again.
  EXPECT_EQ(Drive(*s, "b NOOP\r\n"), "b OK NOOP completed\r\n");
}

TEST_F(ImapSessionTest, TooManyBadCommandsEndTheSession) {
  config_.max_errors = 3;
  auto s = Make(true);
  std::string out = Drive(*s, "a FOO\r\nb FOO\r\nc FOO\r\nd NOOP\r\n");
  EXPECT_NE(out.find("* BYE Too many invalid commands"), std::string::npos) << out;
  EXPECT_EQ(s->need(), Need::kClose);
  EXPECT_EQ(out.find("d OK"), std::string::npos);
}

TEST_F(ImapSessionTest, AppendSelectFetchStore) {
  auto s = LoggedIn();
  std::string out = Drive(*s, "a APPEND INBOX (\\Flagged) {18}\r\n");
  EXPECT_EQ(out, "+ Ready for literal data\r\n");
  out = Drive(*s, "Subject: x\r\n\r\nhi\r\n\r\n");
  EXPECT_NE(out.find("a OK [APPENDUID "), std::string::npos) << out;
  EXPECT_EQ(host_->changed, std::vector<std::string>{"INBOX"});
  out = Drive(*s, "b SELECT INBOX\r\n");
  EXPECT_NE(out.find("* 1 EXISTS\r\n"), std::string::npos) << out;
  EXPECT_NE(out.find("b OK [READ-WRITE] SELECT completed"), std::string::npos);
  out = Drive(*s, "c FETCH 1 (FLAGS RFC822.SIZE BODY[TEXT])\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (FLAGS (\\Seen \\Flagged) RFC822.SIZE 18 BODY[TEXT] {4}\r\n"
            "hi\r\n)\r\nc OK FETCH completed\r\n");
  out = Drive(*s, "d STORE 1 -FLAGS (\\Flagged)\r\ne FETCH 2 FLAGS\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (FLAGS (\\Seen))\r\nd OK STORE completed\r\n"
            "e BAD Invalid sequence number\r\n");
}

// A Maildir another program wrote is indexed without reading its files
// (store::kUnknownSize); RFC822.SIZE, LARGER/SMALLER, SORT SIZE and STATUS
// SIZE count them when asked and agree with each other.
TEST_F(ImapSessionTest, SizesOfABulkIndexedFolder) {
  const std::string md = root_ + "/Maildir";
  for (const char* sub : {"/cur", "/new", "/tmp"}) std::filesystem::create_directories(md + sub);
  const int n = 80;  // more than a reconcile counts at once
  uint64_t total = 0;
  for (int i = 0; i < n; ++i) {
    // Message i has 2 + i + 1 lines of text: sizes grow with the UID.
    std::string text = "Subject: m\n\n" + std::string(static_cast<size_t>(i), '\n');
    total += text.size() * 2;  // every octet is a LF but "Subject: m"
    total -= 10;
    std::string name = md + "/cur/" + std::to_string(1000 + i) + ".M1.h:2,S";
    std::ofstream(name, std::ios::binary) << text;
    auto when = std::filesystem::file_time_type::clock::now() - std::chrono::seconds(n - i);
    std::filesystem::last_write_time(name, when);
  }
  auto s = LoggedIn();
  std::string out = Drive(*s, "a SELECT INBOX\r\n");
  ASSERT_NE(out.find("* 80 EXISTS"), std::string::npos) << out;
  out = Drive(*s, "b FETCH 1,80 RFC822.SIZE\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (RFC822.SIZE 14)\r\n* 80 FETCH (RFC822.SIZE 172)\r\n"
            "b OK FETCH completed\r\n");
  out = Drive(*s, "c UID SEARCH LARGER 165 SMALLER 170\r\n");
  EXPECT_NE(out.find("* SEARCH 77 78\r\n"), std::string::npos) << out;
  out = Drive(*s, "d SORT (REVERSE SIZE) US-ASCII UID 1:3\r\n");
  EXPECT_NE(out.find("* SORT 3 2 1\r\n"), std::string::npos) << out;
  out = Drive(*s, "e STATUS INBOX (MESSAGES SIZE)\r\n");
  EXPECT_NE(out.find("* STATUS INBOX (MESSAGES 80 SIZE " + std::to_string(total) + ")"),
            std::string::npos)
      << out;
}

TEST_F(ImapSessionTest, IdleWokenByAnotherSession) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  Drive(*a, "a APPEND INBOX {8}\r\nx: y\r\n\r\n\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  EXPECT_EQ(Drive(*b, "c IDLE\r\n"), "+ idling\r\n");
  EXPECT_TRUE(b->idling());
  Drive(*a, "d STORE 1 +FLAGS (\\Flagged)\r\n");
  EXPECT_TRUE(b->Wake());  // in IDLE: it wants to look now
  EXPECT_EQ(b->need(), Need::kWork);
  EXPECT_EQ(Drive(*b, ""), "* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n");
  EXPECT_EQ(Drive(*b, "DONE\r\n"), "c OK IDLE terminated\r\n");
  EXPECT_FALSE(b->idling());
}

TEST_F(ImapSessionTest, ExpungeHeldBackDuringFetch) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  Drive(*a, "a APPEND INBOX {8+}\r\nx: 1\r\n\r\n {8+}\r\nx: 2\r\n\r\n\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  Drive(*a, "c STORE 1 +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n");
  EXPECT_FALSE(b->Wake());  // not in IDLE: remembered for the next command
  std::string out = Drive(*b, "e FETCH 1:2 FLAGS\r\n");
  EXPECT_EQ(out.find("EXPUNGE"), std::string::npos) << out;  // RFC 9051 7.5.1
  EXPECT_NE(out.find("* 2 FETCH"), std::string::npos) << out;
  out = Drive(*b, "f NOOP\r\n");
  EXPECT_EQ(out, "* 1 EXPUNGE\r\nf OK NOOP completed\r\n");
}

// In IDLE a session keeps only its UIDs (Hibernate): wake-ups must still
// number expunges and flag changes right, and the view that comes back
// after DONE must hold what changed in between.
TEST_F(ImapSessionTest, IdleHibernatedKeepsSequenceNumbers) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  std::string cmd = "a APPEND INBOX";
  for (int i = 1; i <= 6; ++i) cmd += " {8+}\r\nx: " + std::to_string(i) + "\r\n\r\n";
  Drive(*a, cmd + "\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  EXPECT_EQ(Drive(*b, "c IDLE\r\n"), "+ idling\r\n");
  // UIDs 1..6: expunge 2 and 4 (a hole in the runs), flag 5, deliver one.
  Drive(*a, "d STORE 2,4 +FLAGS (\\Deleted)\r\ne EXPUNGE\r\n");
  Drive(*a, "f STORE 3 +FLAGS (\\Flagged)\r\n");  // 3 is UID 5 now
  Drive(*a, "g APPEND INBOX {8+}\r\nx: 7\r\n\r\n\r\n");
  EXPECT_TRUE(b->Wake());
  EXPECT_EQ(Drive(*b, ""),
            "* 5 FETCH (UID 5 FLAGS (\\Flagged))\r\n"
            "* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n* 5 EXISTS\r\n");
  // Between the last wake-up and DONE: UID 3 expunged, UID 6 flagged.
  Drive(*a, "h STORE 2 +FLAGS (\\Deleted)\r\ni EXPUNGE\r\nj STORE 3 +FLAGS (\\Seen)\r\n");
  EXPECT_EQ(Drive(*b, "DONE\r\n"), "c OK IDLE terminated\r\n");
  // A FETCH by sequence number: the flag change is told, the expunge held
  // back (RFC 9051 7.5.1), the numbers still those the client knows.
  std::string out = Drive(*b, "k FETCH 1:5 (UID FLAGS)\r\n");
  EXPECT_EQ(out.find("EXPUNGE"), std::string::npos) << out;
  EXPECT_NE(out.find("* 4 FETCH (UID 6 FLAGS (\\Seen))"), std::string::npos) << out;
  EXPECT_NE(out.find("* 3 FETCH (UID 5 FLAGS (\\Flagged))"), std::string::npos) << out;
  EXPECT_NE(out.find("* 5 FETCH (UID 7 FLAGS ())"), std::string::npos) << out;
  EXPECT_NE(out.find("k OK"), std::string::npos) << out;
  EXPECT_EQ(Drive(*b, "l NOOP\r\n"), "* 2 EXPUNGE\r\nl OK NOOP completed\r\n");
  out = Drive(*b, "m FETCH 1:* (UID FLAGS)\r\n");
  EXPECT_EQ(out,
            "* 1 FETCH (UID 1 FLAGS ())\r\n* 2 FETCH (UID 5 FLAGS (\\Flagged))\r\n"
            "* 3 FETCH (UID 6 FLAGS (\\Seen))\r\n* 4 FETCH (UID 7 FLAGS ())\r\n"
            "m OK FETCH completed\r\n");
  // IDLE again, then a second IDLE right after DONE: the runs survive.
  EXPECT_EQ(Drive(*b, "n IDLE\r\n"), "+ idling\r\n");
  EXPECT_EQ(Drive(*b, "DONE\r\n"), "n OK IDLE terminated\r\n");
  EXPECT_EQ(Drive(*b, "o IDLE\r\n"), "+ idling\r\n");
  Drive(*a, "p STORE 1 +FLAGS (\\Answered)\r\n");
  EXPECT_TRUE(b->Wake());
  EXPECT_EQ(Drive(*b, ""), "* 1 FETCH (UID 1 FLAGS (\\Answered))\r\n");
  EXPECT_EQ(Drive(*b, "DONE\r\nq UID SEARCH ALL\r\n"),
            "o OK IDLE terminated\r\n* SEARCH 1 5 6 7\r\nq OK UID SEARCH completed\r\n");
}

// Four messages whose keys sort differently (RFC 5256 3).
class ImapSortTest : public ImapSessionTest {
 protected:
  void SetUp() override {
    ImapSessionTest::SetUp();
    s_ = LoggedIn();
    messages_ = {
        "From: \"Zed\" <bob@example.com>\r\nTo: carol@example.com\r\n"
        "Subject: Re: banana\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n"
        "one\r\n",
        "From: alice@example.com\r\nTo: \"Ann\" <zoe@example.com>\r\n"
        "Subject: apple\r\nDate: Mon, 1 Jan 2024 12:00:00 +0200\r\n\r\n"
        "two two two two\r\n",
        "From: Carl <CARL@example.com>\r\nCc: dave@example.com\r\n"
        "Subject: [list] Cherry\r\n\r\nthree\r\n",
        "From: \"adam\" <yves@example.com>\r\nSubject: Fwd: apple\r\n"
        "Date: Sun, 31 Dec 2023 23:00:00 -0200\r\n\r\nfour\r\n",
    };
    const char* arrival[] = {"05-Jan-2024 00:00:00 +0000", "03-Jan-2024 00:00:00 +0000",
                             "02-Jan-2024 00:00:00 +0000", "04-Jan-2024 00:00:00 +0000"};
    for (size_t i = 0; i < messages_.size(); ++i) Append(*s_, messages_[i], arrival[i]);
    Drive(*s_, "s SELECT INBOX\r\n");
  }
  std::string Sort(const std::string& args) {
    return Drive(*s_, "t SORT " + args + "\r\n");
  }
  std::unique_ptr<Session> s_;
  std::vector<std::string> messages_;
};

TEST_F(ImapSortTest, SortKeys) {
  EXPECT_EQ(Sort("(ARRIVAL) UTF-8 ALL"), "* SORT 3 2 4 1\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(REVERSE ARRIVAL) UTF-8 ALL"), "* SORT 1 4 2 3\r\nt OK SORT completed\r\n");
  // DATE in UTC; message 3 has none and uses its INTERNALDATE.
  EXPECT_EQ(Sort("(DATE) US-ASCII ALL"), "* SORT 4 2 1 3\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(REVERSE DATE) utf-8 ALL"), "* SORT 3 1 2 4\r\nt OK SORT completed\r\n");
  // Base subjects: apple, apple, banana, cherry; ties in mailbox order.
  EXPECT_EQ(Sort("(SUBJECT) UTF-8 ALL"), "* SORT 2 4 1 3\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(REVERSE SUBJECT) UTF-8 ALL"), "* SORT 3 1 2 4\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(SUBJECT DATE) UTF-8 ALL"), "* SORT 4 2 1 3\r\nt OK SORT completed\r\n");
  // The mailbox part, case-folded: alice, bob, CARL, yves.
  EXPECT_EQ(Sort("(FROM) UTF-8 ALL"), "* SORT 2 1 3 4\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(TO) UTF-8 ALL"), "* SORT 3 4 1 2\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(CC REVERSE FROM) UTF-8 ALL"), "* SORT 4 1 2 3\r\nt OK SORT completed\r\n");
  // RFC 5957: display names (adam, Carl, Zed), else the address.
  EXPECT_EQ(Sort("(DISPLAYFROM) UTF-8 ALL"), "* SORT 4 2 3 1\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(DISPLAYTO ARRIVAL) UTF-8 ALL"),
            "* SORT 3 4 2 1\r\nt OK SORT completed\r\n");
  std::vector<uint32_t> by_size = {1, 2, 3, 4};
  std::stable_sort(by_size.begin(), by_size.end(), [&](uint32_t a, uint32_t b) {
    return messages_[a - 1].size() < messages_[b - 1].size();
  });
  std::string want = "* SORT";
  for (uint32_t n : by_size) want += " " + std::to_string(n);
  EXPECT_EQ(Sort("(SIZE) UTF-8 ALL"), want + "\r\nt OK SORT completed\r\n");
}

TEST_F(ImapSortTest, CriteriaCharsetUidAndEsort) {
  EXPECT_EQ(Sort("(DATE) UTF-8 SUBJECT apple"), "* SORT 4 2\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(DATE) UTF-8 FROM nobody"), "* SORT\r\nt OK SORT completed\r\n");
  EXPECT_EQ(Sort("(DATE) KOI8-R ALL"),
            "t NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n");
  EXPECT_EQ(Drive(*s_, "u UID SORT (REVERSE SUBJECT) UTF-8 2:4\r\n"),
            "* SORT 3 2 4\r\nu OK UID SORT completed\r\n");
  // RFC 5267 ESORT: MIN and MAX in sort order, ALL keeps the order.
  EXPECT_EQ(Sort("RETURN (MIN MAX COUNT ALL) (REVERSE DATE) UTF-8 ALL"),
            "* ESEARCH (TAG \"t\") MIN 3 MAX 4 ALL 3,1:2,4 COUNT 4\r\n"
            "t OK SORT completed\r\n");
  EXPECT_EQ(Drive(*s_, "v UID SORT RETURN () (ARRIVAL) UTF-8 ALL\r\n"),
            "* ESEARCH (TAG \"v\") UID ALL 3,2,4,1\r\nv OK UID SORT completed\r\n");
  EXPECT_EQ(Sort("RETURN (SAVE) (DATE) UTF-8 SUBJECT apple"), "t OK SORT completed\r\n");
  EXPECT_EQ(Drive(*s_, "w SEARCH $\r\n"), "* SEARCH 2 4\r\nw OK SEARCH completed\r\n");
  std::string caps = Drive(*s_, "x CAPABILITY\r\n");
  for (const char* c : {" SORT ", " SORT=DISPLAY ", " ESORT ", " THREAD=ORDEREDSUBJECT ",
                        " THREAD=REFERENCES "}) {
    EXPECT_NE(caps.find(c), std::string::npos) << c << caps;
  }
}

TEST_F(ImapSessionTest, ThreadReferencesAndOrderedSubject) {
  auto s = LoggedIn();
  struct M {
    const char* id;
    const char* refs;  // a whole header line or ""
    const char* subject;
    const char* time;
  };
  const M ms[] = {
      {"<a@x>", "", "hello", "10:00"},
      {"<b@x>", "In-Reply-To: <a@x>\r\n", "Re: hello", "10:05"},
      {"<c@x>", "References: <a@x>\r\n <b@x>\r\n", "Re: hello", "10:10"},
      {"<d@x>", "References: <a@x>\r\n", "Re: hello", "10:07"},
      {"<e@x>", "", "other", "09:00"},
      {"<f@x>", "References: <missing@x>\r\n", "Re: lost", "11:00"},
      {"<g@x>", "References: (comment <no@x>) <missing@x>\r\n", "Re: lost", "11:30"},
      {"<h@x>", "", "Re: other", "12:00"},
  };
  for (const M& m : ms) {
    Append(*s, std::string("Message-ID: ") + m.id + "\r\n" + m.refs + "Subject: " +
                   m.subject + "\r\nDate: 1 Jan 2024 " + m.time + ":00 +0000\r\n\r\nx\r\n");
  }
  Drive(*s, "s SELECT INBOX\r\n");
  // 2 and 4 answer 1, 3 answers 2; 6 and 7 answer a message that is not
  // there (a dummy with two children stays at the root); 8 has only the
  // subject of 5 and is a reply, so it goes under 5 (RFC 5256 4 step 6).
  EXPECT_EQ(Drive(*s, "t THREAD REFERENCES UTF-8 ALL\r\n"),
            "* THREAD (5 8)(1 (2 3)(4))((6)(7))\r\nt OK THREAD completed\r\n");
  EXPECT_EQ(Drive(*s, "t THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"),
            "* THREAD (5 8)(1 (2)(4)(3))(6 7)\r\nt OK THREAD completed\r\n");
  // Only the matching messages are threaded: without 2, 3 hangs from the
  // dummy of <b@x>, which is pruned: 3 becomes a child of 1, after 4.
  EXPECT_EQ(Drive(*s, "t THREAD REFERENCES UTF-8 NOT 2\r\n"),
            "* THREAD (5 8)(1 (4)(3))((6)(7))\r\nt OK THREAD completed\r\n");
  EXPECT_EQ(Drive(*s, "u UID THREAD REFERENCES UTF-8 1:4\r\n"),
            "* THREAD (1 (2 3)(4))\r\nu OK UID THREAD completed\r\n");
  EXPECT_EQ(Drive(*s, "v THREAD REFERENCES UTF-8 SUBJECT nothing\r\n"),
            "* THREAD\r\nv OK THREAD completed\r\n");
  EXPECT_EQ(Drive(*s, "w THREAD BOGUS UTF-8 ALL\r\n"), "w BAD Unknown thread algorithm\r\n");
  EXPECT_EQ(Drive(*s, "x THREAD REFERENCES KOI8-R ALL\r\n"),
            "x NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset\r\n");
}

TEST_F(ImapSessionTest, ThreadSurvivesLoopsAndDuplicateIds) {
  auto s = LoggedIn();
  // 1 and 2 name each other as parent; 3 names itself; 4 repeats 1's id.
  Append(*s, "Message-ID: <p@x>\r\nReferences: <q@x>\r\nSubject: a\r\n"
             "Date: 1 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n");
  Append(*s, "Message-ID: <q@x>\r\nReferences: <p@x>\r\nSubject: b\r\n"
             "Date: 1 Jan 2024 10:01:00 +0000\r\n\r\nx\r\n");
  Append(*s, "Message-ID: <r@x>\r\nReferences: <r@x>\r\nSubject: c\r\n"
             "Date: 1 Jan 2024 10:02:00 +0000\r\n\r\nx\r\n");
  Append(*s, "Message-ID: <p@x>\r\nSubject: d\r\n"
             "Date: 1 Jan 2024 10:03:00 +0000\r\n\r\nx\r\n");
  Drive(*s, "s SELECT INBOX\r\n");
  // 1 becomes the child of the dummy <q@x>, then 2 fills <q@x> and would
  // be 1's child: a loop, so it stays a root with 1 under it.
  EXPECT_EQ(Drive(*s, "t THREAD REFERENCES UTF-8 ALL\r\n"),
            "* THREAD (2 1)(3)(4)\r\nt OK THREAD completed\r\n");
}

TEST_F(ImapSessionTest, ExpungeHeldBackDuringSortNotUidSort) {
  auto a = LoggedIn();
  auto b = LoggedIn();
  Drive(*a, "a APPEND INBOX {8+}\r\nx: 1\r\n\r\n {8+}\r\nx: 2\r\n\r\n\r\n");
  Drive(*a, "b SELECT INBOX\r\n");
  Drive(*b, "b SELECT INBOX\r\n");
  Drive(*a, "c STORE 1 +FLAGS (\\Deleted)\r\nd EXPUNGE\r\n");
  EXPECT_FALSE(b->Wake());
  // RFC 5256 3 / RFC 9051 7.5.1: not during SORT and THREAD.
  EXPECT_EQ(Drive(*b, "e SORT (ARRIVAL) UTF-8 ALL\r\n"),
            "* SORT 1 2\r\ne OK SORT completed\r\n");
  EXPECT_EQ(Drive(*b, "f THREAD ORDEREDSUBJECT UTF-8 ALL\r\n"),
            "* THREAD (1 2)\r\nf OK THREAD completed\r\n");
  // UID SORT may announce it, after its answer (as UID SEARCH does).
  EXPECT_EQ(Drive(*b, "g UID SORT (ARRIVAL) UTF-8 ALL\r\n"),
            "* SORT 1 2\r\n* 1 EXPUNGE\r\ng OK UID SORT completed\r\n");
}

}  // namespace
}  // namespace tern::imap
