// What every subcommand's parser shares: CLI11 with usage errors on stderr
// and exit 2, the --model option's help (presets listed), the version line.
#pragma once
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"

namespace samoyeds::cli {

// Exit codes of the samoyeds command (main.cpp says the same).
constexpr int kExitFailed = 1, kExitUsage = 2;

// "library 0.x, NVRTC 13.0, driver 13000 (or: no driver), cache schema 2".
std::string version_text();

// Parses `argv` (the words after the command) into `app`. Returns -1 when the
// command should go on, else the exit code: 0 after --help or --version (on
// stdout), 2 after a usage error (on stderr, naming the option).
inline int parse_args(CLI::App& app, const std::vector<std::string>& argv) {
  app.set_version_flag("--version", [] { return version_text(); });
  std::vector<std::string> reversed(argv.rbegin(), argv.rend());  // CLI11 takes them last first
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::fputs(app.help("", CLI::AppFormatMode::All).c_str(), stdout);
    return 0;
  } catch (const CLI::CallForVersion& v) {
    std::printf("%s\n", v.what());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s\nRun '%s --help' for its options.\n", app.get_name().c_str(), e.what(),
                 app.get_name().c_str());
    return kExitUsage;
  }
  return -1;
}

// The --model option's description: what it takes, and the presets by name.
inline std::string model_option_help(const std::string& default_note = "") {
  std::string names;
  for (const auto& n : model_preset_names()) names += (names.empty() ? "" : ", ") + n;
  return "a preset name, a preset .yaml file or a Hugging Face config.json" +
         (default_note.empty() ? std::string() : " (" + default_note + ")") + "; presets: " + names;
}

// A comma-separated list of integers, each in [lo, hi]: "--buckets 1,2,64".
// An empty list or item ("", "1,,2", "1,") and anything not an integer is a
// usage error naming the option; nothing is dropped or truncated.
inline CLI::Option* add_int_list(CLI::App& app, const std::string& name, std::vector<int64_t>& out,
                                 const std::string& help, int64_t lo, int64_t hi) {
  auto parse = [&out, name, lo, hi](const std::string& text) {
    std::vector<int64_t> values;
    size_t begin = 0;
    while (true) {
      const size_t end = std::min(text.find(',', begin), text.size());
      const std::string item = text.substr(begin, end - begin);
      errno = 0;
      char* stop = nullptr;
      const long long v = item.empty() ? 0 : std::strtoll(item.c_str(), &stop, 10);
      if (item.empty() || *stop != '\0' || errno == ERANGE || v < lo || v > hi)
        throw CLI::ValidationError(name, "'" + item + "' in '" + text + "' is not an integer from " +
                                             std::to_string(lo) + " to " + std::to_string(hi));
      values.push_back(v);
      if (end == text.size()) break;
      begin = end + 1;
    }
    out = values;
  };
  return app.add_option_function<std::string>(name, parse, help)->type_name("N[,N...]");
}

// Creates `dir` if needed and checks that files can be written into it, so a
// command fails (exit 1, naming `option` and the folder) before its work.
inline void check_writable_folder(const std::string& dir, const std::string& option) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw Error(ErrorCode::IoError, option + ": '" + dir + "' is a file, not a folder");
  fs::create_directories(dir, ec);
  if (ec) throw Error(ErrorCode::IoError, option + ": cannot create folder '" + dir + "': " + ec.message());
  const fs::path probe = fs::path(dir) / ".samoyeds_write_probe";
  const bool ok = bool(std::ofstream(probe) << "");
  fs::remove(probe, ec);
  if (!ok) throw Error(ErrorCode::IoError, option + ": cannot write into folder '" + dir + "'");
}

}  // namespace samoyeds::cli
