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

// The running device's fingerprint (needs a GPU): the device, its driver,
// this NVRTC and this library.
DeviceFingerprint current_fingerprint(int device = 0);

struct ConfigChoice {
  enum class Source { Tuned, NearestBucket, Heuristic };
  Backend backend = Backend::MmaSp;  // the record's winner may be either backend
  TileConfig config;
  // What a call that gathers its token rows by id runs where `config` reads
  // them in order, which a gather cannot feed: the record's gathered config
  // (gathered_tuned), else the backend's untuned gathered_config. Equal to
  // `config` otherwise.
  TileConfig gathered;
  bool gathered_tuned = false;
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
  // The spec (compared through its field list; its backend field unused:
  // the restriction is `only`) and the bucket.
  struct MemoKey {
    KernelSpec spec;
    std::optional<Backend> only;
    int64_t bucket;
    bool operator==(const MemoKey& o) const { return spec == o.spec && only == o.only && bucket == o.bucket; }
  };
  struct MemoHash {
    size_t operator()(const MemoKey& k) const {
      return k.spec.hash() * 1000003u ^ std::hash<int64_t>()(k.bucket * 64 + (k.only ? int(*k.only) + 1 : 0));
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
