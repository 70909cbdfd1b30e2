// The one way we spread independent jobs over CPU cores (compiling kernels,
// packing experts, filling benchmark data): fn(i) for every i in [0, count)
// on up to `threads` threads (0 = all cores), each index exactly once. The
// first exception thrown by any job is rethrown here after all threads stop;
// jobs not yet started are skipped once one has failed.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace samoyeds {

template <typename Fn>
void parallel_for(size_t count, int threads, Fn&& fn) {
  const size_t n_threads =
      std::min(count, size_t(threads > 0 ? unsigned(threads) : std::max(1u, std::thread::hardware_concurrency())));
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr first;
  std::mutex mu;
  auto worker = [&] {
    for (size_t i; !failed && (i = next++) < count;) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu);
        if (!first) first = std::current_exception();
        failed = true;
      }
    }
  };
  if (n_threads <= 1) {
    worker();
  } else {
    std::vector<std::thread> pool;
    for (size_t t = 0; t < n_threads; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace samoyeds
