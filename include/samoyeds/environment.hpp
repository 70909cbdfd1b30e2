// Environment knobs, read in one place (documented in README.md):
//   SAMOYEDS_CACHE_DIR  folder of the cache file (default $XDG_CACHE_HOME/samoyeds
//                       or ~/.cache/samoyeds)
//   SAMOYEDS_LOG        error | warn (default) | info | debug
//   SAMOYEDS_PDL        0 launches without programmatic dependent launch
//                       (default on, sm_90 and later)
//   SAMOYEDS_LINEINFO   1 compiles kernels with line tables (for profilers)
#pragma once
#include <string>

namespace samoyeds {

enum class LogLevel { Error = 0, Warn = 1, Info = 2, Debug = 3 };

std::string default_cache_dir();
std::string default_cache_path();  // <dir>/samoyeds.sqlite
LogLevel log_level();
// False when SAMOYEDS_PDL is "0" (read once), unless set_programmatic_launch
// said otherwise.
bool programmatic_launch_enabled();
// For benchmarks that time the same launches with and without programmatic
// dependent launch in one process: applies to launches enqueued after it.
void set_programmatic_launch(bool on);
// True when SAMOYEDS_LINEINFO is "1" (read once): NVRTC's -lineinfo, which
// enters the binaries' keys with the other options.
bool kernel_line_info();

// Printed to stderr when `level` is enabled.
void log(LogLevel level, const std::string& message);

}  // namespace samoyeds
