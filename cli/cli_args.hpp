// Minimal "--flag value" parsing shared by the subcommands.
#pragma once
#include <map>
#include <set>
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

}  // namespace samoyeds::cli
