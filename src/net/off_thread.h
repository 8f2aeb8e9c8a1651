// Runs blocking work (Argon2id checks, directory syncs) on a thread pool and
// resumes the calling coroutine on its own executor, so io threads never
// wait on the CPU or the disk for one client.
#pragma once

#include <memory>

#include <asio.hpp>

namespace tern::net {

// Runs job->Run() on `pool`. The job lives in the caller's coroutine frame;
// only pointers are captured (g++ 12 mishandles lambdas with non-trivial
// captures made inside coroutines, see DESIGN.md).
template <class Job>
asio::awaitable<void> OffThread(asio::thread_pool& pool, Job* job) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
      [&pool, job](auto handler) {
        using Handler = decltype(handler);
        auto h = std::make_shared<Handler>(std::move(handler));
        asio::post(pool, [job, h] {
          job->Run();
          auto ex = asio::get_associated_executor(*h);
          asio::post(ex, [h] { (*h)(); });
        });
      },
      asio::use_awaitable);
}

}  // namespace tern::net
