// Minimal "--flag value" parsing shared by the subcommands.
#pragma once
#include <cstdint>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "samoyeds/error.hpp"

namespace samoyeds::cli {

class Args {
 public:
  // `flags` take a value, `switches` take none; anything else is a usage error.
  Args(const std::vector<std::string>& argv, const std::set<std::string>& flags,
       const std::set<std::string>& switches) {
    for (size_t i = 0; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      if (switches.count(a)) {
        values_[a] = "1";
      } else if (flags.count(a)) {
        if (i + 1 >= argv.size()) throw Error(ErrorCode::InvalidArgument, a + " needs a value");
        values_[a] = argv[++i];
      } else {
        throw Error(ErrorCode::InvalidArgument, "unknown argument '" + a + "'");
      }
    }
  }
  bool has(const std::string& f) const { return values_.count(f) > 0; }
  std::string get(const std::string& f, const std::string& fallback) const {
    auto it = values_.find(f);
    return it == values_.end() ? fallback : it->second;
  }

 private:
  std::map<std::string, std::string> values_;
};

// Prints `help` and returns true when argv asks for it (--help or -h anywhere).
inline bool print_help_if_asked(const std::vector<std::string>& argv, const char* help) {
  for (const auto& a : argv)
    if (a == "--help" || a == "-h") {
      std::fputs(help, stdout);
      return true;
    }
  return false;
}

// "a,b,c" -> {"a", "b", "c"} (empty items kept, for the caller to reject).
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

// "1,2,64" -> {1, 2, 64}; any item that is not an integer >= min_value is a
// usage error naming `what`.
inline std::vector<int64_t> parse_int_list(const std::string& text, const std::string& what, int64_t min_value) {
  std::vector<int64_t> out;
  for (const std::string& item : split_list(text)) {
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || v < min_value)
      throw Error(ErrorCode::InvalidArgument,
                  what + ": '" + item + "' is not an integer >= " + std::to_string(min_value));
    out.push_back(v);
  }
  if (out.empty()) throw Error(ErrorCode::InvalidArgument, what + " is empty");
  return out;
}

}  // namespace samoyeds::cli
