// tern_spoolgen: fills a data folder's queue with N deferred messages, for
// the huge-queue bench cell (bench/bigqueue.py) and nothing else. It writes
// the spool through the queue's own encoders (queue/spool_format.h), so the
// files are exactly what the server writes after a `451` from the next hop:
// a message file and a state file saying one attempt failed.
//
//   tern_spoolgen DATA_DIR COUNT [DOMAINS] [DUE_WINDOW_SECONDS]
//
// Recipients go to DOMAINS domains (d0.bigq.test ..), senders to ten; the
// retry times are spread over the second half of DUE_WINDOW_SECONDS from
// now (0: all due now, the restart-after-an-outage case). Files are not
// synced.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "common/file_io.h"
#include "queue/crc32c.h"
#include "queue/queue_id.h"
#include "queue/spool_format.h"

using namespace tern;

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s DATA_DIR COUNT [DOMAINS] [DUE_WINDOW]\n",
                 argv[0]);
    return 2;
  }
  const std::string data = argv[1];
  const long count = std::atol(argv[2]);
  const long domains = argc > 3 ? std::max(1L, std::atol(argv[3])) : 100;
  const long window = argc > 4 ? std::atol(argv[4]) : 0;
  for (const char* sub : {"/queue/msg", "/queue/state", "/queue/incoming",
                          "/queue/free"}) {
    if (auto made = io::MkdirAll(data + sub, 0700); !made) {
      std::fprintf(stderr, "%s\n", made.error().message.c_str());
      return 1;
    }
  }
  auto msg_dir = io::OpenDir(data + "/queue/msg");
  auto state_dir = io::OpenDir(data + "/queue/state");
  if (!msg_dir || !state_dir) {
    std::fprintf(stderr, "cannot open the spool\n");
    return 1;
  }
  const int64_t now = std::time(nullptr);
  std::string filler;
  for (int i = 0; i < 12; ++i)
    filler += "The quick brown fox jumps over the lazy dog, again and again.\r\n";
  for (long i = 0; i < count; ++i) {
    queue::Envelope env;
    env.id = queue::NewQueueId();
    env.sender = "sender" + std::to_string(i % 10) + "@src.bigq.test";
    env.recipients.push_back(
        {"user" + std::to_string(i) + "@d" + std::to_string(i % domains) +
             ".bigq.test",
         "", ""});
    env.client_ip = "127.0.0.1";
    env.helo = "gen.bigq.test";
    // Ages from now back to three hours ago, so age filters have
    // something to select (and no "delayed" DSN is due yet).
    env.received_at = now - (i * 7) % (3 * 3600);
    std::string body = "From: <" + env.sender + ">\r\nTo: <" +
                       env.recipients[0].address + ">\r\nSubject: bigq " +
                       std::to_string(i) + "\r\nMessage-ID: <" + env.id +
                       "@gen.bigq.test>\r\n\r\n" + filler;
    std::string encoded = queue::EncodeEnvelope(env);
    auto header = queue::EncodeMessageHeader(encoded, body.size(),
                                             Crc32c(0, body));
    int fd = ::openat(msg_dir->get(), env.id.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::perror("create");
      return 1;
    }
    struct iovec iov[3] = {{header.data(), header.size()},
                           {body.data(), body.size()},
                           {encoded.data(), encoded.size()}};
    if (io::WritevAll(fd, iov, 3) != 0) {
      std::perror("write");
      return 1;
    }
    ::close(fd);
    queue::MessageState state = queue::InitialState(env);
    state.attempts = 1;
    state.next_attempt =
        window > 0 ? now + window / 2 + (i * 7919) % (window / 2 + 1) : now;
    state.last_error = "451 4.3.0 try again later";
    state.recipients[0].error = state.last_error;
    state.log.push_back({env.received_at, "127.0.0.1[127.0.0.1]:25",
                         state.last_error});
    std::string st = queue::EncodeState(state);
    int sfd = ::openat(state_dir->get(), env.id.c_str(),
                       O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (sfd < 0 || io::WriteAll(sfd, st.data(), st.size()) != 0) {
      std::perror("state");
      return 1;
    }
    ::close(sfd);
  }
  std::printf("%ld\n", count);
  return 0;
}
