// A counter in a file that several processes share: next() hands each
// caller the next index, never one twice (`samoyeds tune --gpus`: one
// process per GPU takes the next projection of a shared list).
#pragma once
#include <cstdint>
#include <string>
#include <utility>

namespace samoyeds::cli {

class WorkCounter {
 public:
  // A new counter file at 0 (replacing one left by an earlier run).
  static void create(const std::string& path);
  explicit WorkCounter(std::string path) : path_(std::move(path)) {}
  // The next index: read, increment and write under an exclusive flock.
  int64_t next() const;

 private:
  std::string path_;
};

}  // namespace samoyeds::cli
