// Progress of a long command (compile, tune) for logs: when stderr is not a
// terminal, a line at every tenth of the work with done/total and the ETA.
#pragma once
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>

namespace samoyeds::cli {

// True when `done` (1..total) is the first count of a new tenth, or the last.
inline bool at_a_tenth(long done, long total) {
  if (total <= 0 || done <= 0) return false;
  return done == total || done * 10 / total != (done - 1) * 10 / total;
}

inline std::string eta_text(double elapsed_s, long done, long total) {
  const double eta = done > 0 ? elapsed_s / double(done) * double(total - done) : 0.0;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0fs elapsed, ETA %.0fs", elapsed_s, eta);
  return buf;
}

// Counts finished items from any thread; prints only where stderr is not a
// terminal (on one, the command's own rows already show it).
class Progress {
 public:
  Progress(std::string label, size_t total)
      : label_(std::move(label)), total_(long(total)), quiet_(isatty(fileno(stderr)) != 0) {}
  void step() {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_;
    if (quiet_ || !at_a_tenth(done_, total_)) return;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::fprintf(stderr, "%s: %ld/%ld done (%ld%%), %s\n", label_.c_str(), done_, total_, done_ * 100 / total_,
                 eta_text(secs, done_, total_).c_str());
  }

 private:
  std::string label_;
  long total_, done_ = 0;
  bool quiet_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

}  // namespace samoyeds::cli
