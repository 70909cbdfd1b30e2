// Compiled kernels by content key. Every load re-checks the blob's SHA-256:
// a corrupt or truncated blob is reported, deleted and reported as a miss, so
// the caller rebuilds it. Thread-safe; processes share the file through
// SQLite locking.
#pragma once
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cache/sqlite_store.hpp"

namespace samoyeds {

struct BinaryRecord {
  std::string key;          // sha256 of source, templates, NVRTC version, arch, options
  std::string arch, nvrtc, library, kernel_name, description;
  int registers = -1, spill_bytes = -1;
  double compile_ms = 0.0;
  std::vector<char> blob;
};

class BinaryCache {
 public:
  explicit BinaryCache(SqliteStore& store) : store_(store) {}
  std::optional<BinaryRecord> get(const std::string& key);
  // First writer of a key wins; the same key always means the same content.
  // Releases this process's claim on the key.
  void put(const BinaryRecord& record);

  // Compile each key once across the processes sharing the file: a claim row
  // per key being compiled. Present: the binary is stored now. Compile: the
  // caller holds the claim (or the store is read-only) and compiles, then
  // put()s or release()s. Wait: a live process holds it; ask again shortly.
  // A claim whose process is gone (crashed, killed) or older than
  // stale_after_s is taken over, so a dead holder never blocks.
  enum class Claim { Present, Compile, Wait };
  Claim claim(const std::string& key, int stale_after_s = 300);
  void release(const std::string& key);
  std::vector<BinaryRecord> list(bool with_blobs = false);
  // Keys whose stored blob no longer matches its size and checksum (read-only scan).
  std::vector<std::string> corrupt_keys();
  // Deletes these keys; returns how many were removed.
  int remove(const std::vector<std::string>& keys);

 private:
  SqliteStore& store_;
  std::mutex mu_;  // one connection, many compiling threads
};

}  // namespace samoyeds
