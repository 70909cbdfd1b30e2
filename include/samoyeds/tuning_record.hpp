// Tuning records: which tile config won for a (device, kernel, shape, token
// bucket), with the times measured beside it. Stored in the cache file.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

// Everything that makes a timing valid elsewhere. A record whose fingerprint
// differs from the current one is reported and ignored, never used.
struct DeviceFingerprint {
  std::string gpu_name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  int driver_version = 0;
  std::string nvrtc_version;
  std::string library_version;

  bool operator==(const DeviceFingerprint& o) const {
    return gpu_name == o.gpu_name && cc_major == o.cc_major && cc_minor == o.cc_minor && sm_count == o.sm_count &&
           driver_version == o.driver_version && nvrtc_version == o.nvrtc_version &&
           library_version == o.library_version;
  }
  bool operator!=(const DeviceFingerprint& o) const { return !(*this == o); }
  std::string to_string() const;
  // Which fields differ, e.g. "driver 13000 vs 12080, library 0.1.0 vs 0.2.0".
  std::string differences(const DeviceFingerprint& other) const;
};

std::string library_version();

// Token counts are tuned per bucket: powers of two from 1 to 8192 by default.
std::vector<int64_t> default_token_buckets();
// The bucket a token count falls into: the smallest bucket >= tokens (the
// largest bucket for anything bigger).
int64_t token_bucket(int64_t tokens, const std::vector<int64_t>& buckets);

struct TuningKey {
  DeviceFingerprint device;
  Op op = Op::Ssmm;
  DType dtype = DType::bf16;
  int64_t m = 0, k = 0;
  SparsityParams sparsity;
  int experts = 1;
  Epilogue epilogue = Epilogue::None;
  int64_t bucket = 0;
  std::string to_string() const;
  static TuningKey of(const DeviceFingerprint& device, const KernelSpec& spec, int64_t bucket);
};

struct TuningRecord {
  TuningKey key;
  Backend backend = Backend::MmaSp;
  TileConfig config;
  double time_ms = 0.0;
  std::vector<double> runner_up_ms;  // the next best candidates, fastest first
  double baseline_ms = 0.0;          // cuBLAS dense on the same tokens, same run
  int64_t created_unix = 0;
  // What the tuner checked against the float64 reference before `config`
  // could win: `verified_tokens` tokens on the key's own shape (m, k,
  // experts), through the launch path `verified_path` names. A record
  // without it (an older cache's) is never used.
  int64_t verified_tokens = 0;
  std::string verified_path;
  // A config that reads token rows in order cannot serve a call that
  // gathers them by id: the config such calls take instead, verified and
  // timed at the same bucket (absent when `config` gathers itself).
  std::optional<TileConfig> gathered;
  double gathered_ms = 0.0;

  bool verified() const { return verified_tokens > 0 && !verified_path.empty(); }
};

}  // namespace samoyeds
