// Tuning records in the cache file, next to the binaries. Writes are single
// upserts in their own transaction, so several tuning processes sharing one
// file lose nothing.
#pragma once
#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "cache/sqlite_store.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds {

class RecordStore {
 public:
  explicit RecordStore(SqliteStore& store) : store_(store) {}

  enum class PutPolicy { Replace, KeepFaster };
  // Returns true when the record was written (KeepFaster: when it is new or faster).
  bool put(const TuningRecord& record, PutPolicy policy = PutPolicy::Replace);
  std::optional<TuningRecord> get(const TuningKey& key);
  // Every record of this shape and kernel, any device and bucket.
  std::vector<TuningRecord> same_kernel(const TuningKey& key);
  std::vector<TuningRecord> list();
  // Deletes records whose device fingerprint fails `keep`; returns how many.
  int prune(const std::function<bool(const TuningRecord&)>& keep);

 private:
  SqliteStore& store_;
  std::mutex mu_;
};

}  // namespace samoyeds
