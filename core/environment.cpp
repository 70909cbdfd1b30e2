#include "samoyeds/environment.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

namespace samoyeds {

namespace {
std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}
}  // namespace

std::string default_cache_dir() {
  if (auto d = env("SAMOYEDS_CACHE_DIR"); !d.empty()) return d;
  if (auto x = env("XDG_CACHE_HOME"); !x.empty()) return x + "/samoyeds";
  if (auto h = env("HOME"); !h.empty()) return h + "/.cache/samoyeds";
  return ".samoyeds-cache";
}

std::string default_cache_path() { return default_cache_dir() + "/samoyeds.sqlite"; }

LogLevel log_level() {
  static const LogLevel level = [] {
    const std::string v = env("SAMOYEDS_LOG");
    if (v == "error") return LogLevel::Error;
    if (v == "info") return LogLevel::Info;
    if (v == "debug") return LogLevel::Debug;
    return LogLevel::Warn;
  }();
  return level;
}

namespace {
std::atomic<int>& programmatic_launch_override() {  // -1: as SAMOYEDS_PDL says
  static std::atomic<int> v{-1};
  return v;
}
}  // namespace

bool programmatic_launch_enabled() {
  static const bool from_env = env("SAMOYEDS_PDL") != "0";
  const int o = programmatic_launch_override().load(std::memory_order_relaxed);
  return o < 0 ? from_env : o == 1;
}

void set_programmatic_launch(bool on) { programmatic_launch_override().store(on ? 1 : 0); }

bool kernel_line_info() {
  static const bool on = env("SAMOYEDS_LINEINFO") == "1";
  return on;
}

void log(LogLevel level, const std::string& message) {
  if (int(level) > int(log_level())) return;
  static std::mutex mu;
  static const char* names[] = {"error", "warning", "info", "debug"};
  std::lock_guard<std::mutex> lock(mu);
  std::fprintf(stderr, "samoyeds %s: %s\n", names[int(level)], message.c_str());
}

}  // namespace samoyeds
