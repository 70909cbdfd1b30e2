// Which tile config a launch uses when the caller names none: the tuning
// record of its token bucket, else the nearest tuned bucket at most
// kNearestBucketOctaves away (a factor of 2 in tokens), else the
// backend's heuristic default (with one warning per kernel). Records of
// another device or version are reported once and never used. Lookups are
// memoized, so every process with the same records picks the same config
// without re-timing anything (pinned).
#pragma once
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "samoyeds/tuning_record.hpp"

namespace samoyeds {

class RecordStore;

struct ConfigChoice {
  enum class Source { Tuned, NearestBucket, Heuristic };
  Backend backend = Backend::MmaSp;  // the record's winner may be either backend
  TileConfig config;
  // What a call that gathers its token rows by id runs where `config` reads
  // them in order (TileConfig::tokens_tma), which a gather cannot feed: a
  // tuned tile with the gather where the tile allows it, else the backend's
  // gathered default at the same bucket. Equal to `config` otherwise.
  TileConfig gathered;
  Source source = Source::Heuristic;
  int64_t bucket = 0;  // the bucket whose record was used (0 for heuristic)
};
const char* choice_source_name(ConfigChoice::Source s);
constexpr double kNearestBucketOctaves = 1.0;

class ConfigSelector {
 public:
  // records may be null (heuristics only).
  ConfigSelector(RecordStore* records, DeviceFingerprint device,
                 std::vector<int64_t> buckets = default_token_buckets());
  // Any backend the records chose (spec.backend is ignored), or only `only`.
  // Without a usable record: the heuristic default of `only`, else mma_sp.
  ConfigChoice choose(const KernelSpec& spec, int64_t tokens, std::optional<Backend> only = std::nullopt);
  const DeviceFingerprint& device() const { return device_; }
  const std::vector<int64_t>& buckets() const { return buckets_; }

 private:
  ConfigChoice lookup(const KernelSpec& spec, int64_t bucket, std::optional<Backend> only);
  // Every spec field a record is keyed by, whether the launch is grouped
  // (its schedule differs), the bucket, the backend restriction (-1: any).
  struct MemoKey {
    int op, dtype, epilogue, backend, V, N, M, experts, arch;  // arch: 2 * number + 1 for an "a" target
    bool grouped;
    int64_t m, k, bucket;
    bool operator==(const MemoKey& o) const {
      return op == o.op && dtype == o.dtype && epilogue == o.epilogue && backend == o.backend && V == o.V &&
             N == o.N && M == o.M && experts == o.experts && arch == o.arch && grouped == o.grouped && m == o.m &&
             k == o.k && bucket == o.bucket;
    }
  };
  struct MemoHash {
    size_t operator()(const MemoKey& k) const {
      size_t h = 0;
      for (int64_t v : {int64_t(k.op), int64_t(k.dtype), int64_t(k.epilogue), int64_t(k.backend), int64_t(k.V),
                        int64_t(k.N), int64_t(k.M), int64_t(k.experts), int64_t(k.arch), int64_t(k.grouped), k.m,
                        k.k, k.bucket})
        h = h * 1000003u ^ std::hash<int64_t>()(v);
      return h;
    }
  };
  RecordStore* records_;
  DeviceFingerprint device_;
  std::vector<int64_t> buckets_;
  std::mutex mu_;
  std::unordered_map<MemoKey, ConfigChoice, MemoHash> memo_;  // launches ask here: no formatting
  std::unordered_set<std::string> warned_;
};

}  // namespace samoyeds
