#include "samoyeds/config_selector.hpp"

#include <cmath>

#include <fmt/format.h>

#include "cache/record_store.hpp"
#include "backends/backend.hpp"
#include "samoyeds/environment.hpp"

namespace samoyeds {
namespace {

// The spec as backend `b` compiles it (a record's or choice's backend).
KernelSpec with_backend(KernelSpec spec, Backend b) {
  spec.backend = b;
  return spec;
}

}  // namespace

const char* choice_source_name(ConfigChoice::Source s) {
  switch (s) {
    case ConfigChoice::Source::Tuned: return "tuned";
    case ConfigChoice::Source::NearestBucket: return "nearest tuned bucket";
    case ConfigChoice::Source::Heuristic: return "heuristic";
  }
  return "?";
}

ConfigSelector::ConfigSelector(RecordStore* records, DeviceFingerprint device, std::vector<int64_t> buckets)
    : records_(records), device_(std::move(device)), buckets_(std::move(buckets)) {}

ConfigChoice ConfigSelector::choose(const KernelSpec& spec, int64_t tokens, std::optional<Backend> only) {
  const int64_t bucket = token_bucket(tokens, buckets_);
  MemoKey memo_key{spec, only, bucket};
  memo_key.spec.backend = Backend{};
  std::lock_guard<std::mutex> lock(mu_);
  auto it = memo_.find(memo_key);
  if (it != memo_.end()) return it->second;
  ConfigChoice c = lookup(spec, bucket, only);
  // The record's own gathered config was verified and timed at its bucket;
  // without one, a gathered call takes the backend's untuned default.
  if (!c.gathered_tuned)
    c.gathered = kernel_family(c.backend).gathered_config(with_backend(spec, c.backend), c.config, false, bucket,
                                                          device_.sm_count);
  memo_.emplace(memo_key, c);
  return c;
}

ConfigChoice ConfigSelector::lookup(const KernelSpec& spec, int64_t bucket, std::optional<Backend> only) {
  const TuningKey key = TuningKey::of(device_, spec, bucket);
  const std::string kernel = fmt::format("{} {} m{} k{} {}", op_name(spec.op), dtype_name(spec.dtype), spec.m, spec.k,
                                         spec.sparsity.to_string());
  if (records_) {
    const auto all = records_->same_kernel(key);
    const TuningRecord* best = nullptr;
    double best_distance = 0.0;
    int foreign = 0, invalid = 0, unverified = 0;
    std::string foreign_why, invalid_why;
    for (const auto& r : all) {
      if (r.key.device != device_) {
        if (foreign++ == 0) foreign_why = r.key.device.differences(device_);
        continue;
      }
      if (only && r.backend != *only) continue;
      // Only a config checked at its own bucket on the real shape may run there.
      if (!r.verified()) {
        ++unverified;
        continue;
      }
      // e.g. a record for another arch's limits, a backend this arch lacks, or
      // a config a later version of the library no longer runs (its search
      // space shrank: the user's tuned cache lost that bucket, so say so)
      if (auto why = kernel_family(r.backend).invalid_reason(with_backend(spec, r.backend), r.config)) {
        if (invalid++ == 0)
          invalid_why = fmt::format("{} {} at {} tokens: {}", backend_name(r.backend), r.config.to_string(),
                                    r.key.bucket, *why);
        continue;
      }
      const double d = std::fabs(std::log2(double(r.key.bucket)) - std::log2(double(bucket)));
      // A record far from the launch's token count was tuned for another
      // regime: on the H200 DeepSeek's layer at T = 8 ran 1.36x slower with
      // the T = 4096 records than with the heuristic defaults.
      if (d > kNearestBucketOctaves) continue;
      // Nearest in log2(tokens); on a tie the larger bucket (its tiles are safer for more tokens).
      if (!best || d < best_distance || (d == best_distance && r.key.bucket > best->key.bucket)) {
        best = &r;
        best_distance = d;
      }
    }
    if (invalid && warned_.insert("invalid|" + kernel).second)
      log(LogLevel::Warn, fmt::format("ignoring {} tuning record(s) for {} whose config this library does not run "
                                      "({}); run 'samoyeds tune' again to replace them",
                                      invalid, kernel, invalid_why));
    if (unverified && warned_.insert("unverified|" + kernel).second)
      log(LogLevel::Warn, fmt::format("ignoring {} tuning record(s) for {} that were not verified at their bucket "
                                      "(tuned before records said what was verified); run 'samoyeds tune' again "
                                      "to replace them",
                                      unverified, kernel));
    if (foreign && warned_.insert("foreign|" + kernel).second)
      log(LogLevel::Warn, fmt::format("ignoring {} tuning record(s) for {} from another device or version ({})",
                                      foreign, kernel, foreign_why));
    if (best) {
      ConfigChoice c;
      c.backend = best->backend;
      // A record of several experts was tuned on the grouped launch over a
      // routing at its bucket (OpRunner), schedule included.
      c.config = best->config;
      if (best->gathered && !kernel_family(best->backend).invalid_reason(with_backend(spec, best->backend),
                                                                          *best->gathered)) {
        c.gathered = *best->gathered;
        c.gathered_tuned = true;
      }
      c.bucket = best->key.bucket;
      c.source = best->key.bucket == bucket ? ConfigChoice::Source::Tuned : ConfigChoice::Source::NearestBucket;
      return c;
    }
  }
  if (warned_.insert("heuristic|" + kernel).second)
    log(LogLevel::Warn, fmt::format("no tuning record for {} on this device within a factor of 2 of {} tokens: "
                                    "using the heuristic default (run 'samoyeds tune' to tune it)",
                                    kernel, bucket));
  ConfigChoice c;
  c.backend = only.value_or(default_backend(spec));
  c.config = kernel_family(c.backend).default_config(with_backend(spec, c.backend), bucket, device_.sm_count);
  c.source = ConfigChoice::Source::Heuristic;
  return c;
}

}  // namespace samoyeds
