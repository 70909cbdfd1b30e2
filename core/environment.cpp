#include "samoyeds/environment.hpp"

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

bool programmatic_launch_enabled() {
  static const bool on = env("SAMOYEDS_PDL") != "0";
  return on;
}

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
