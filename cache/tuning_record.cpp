#include "samoyeds/tuning_record.hpp"

#include <algorithm>

#include <fmt/format.h>


namespace samoyeds {

std::string library_version() { return SAMOYEDS_VERSION; }

std::string DeviceFingerprint::to_string() const {
  return fmt::format("{} (sm_{}{}, {} SMs), driver {}, NVRTC {}, samoyeds {}", gpu_name, cc_major, cc_minor, sm_count,
                     driver_version, nvrtc_version, library_version);
}

std::string DeviceFingerprint::differences(const DeviceFingerprint& o) const {
  std::string out;
  auto add = [&](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  if (gpu_name != o.gpu_name) add(fmt::format("GPU '{}' vs '{}'", gpu_name, o.gpu_name));
  if (cc_major != o.cc_major || cc_minor != o.cc_minor)
    add(fmt::format("compute capability {}.{} vs {}.{}", cc_major, cc_minor, o.cc_major, o.cc_minor));
  if (sm_count != o.sm_count) add(fmt::format("{} SMs vs {}", sm_count, o.sm_count));
  if (driver_version != o.driver_version) add(fmt::format("driver {} vs {}", driver_version, o.driver_version));
  if (nvrtc_version != o.nvrtc_version) add(fmt::format("NVRTC {} vs {}", nvrtc_version, o.nvrtc_version));
  if (library_version != o.library_version)
    add(fmt::format("samoyeds {} vs {}", library_version, o.library_version));
  return out;
}

std::vector<int64_t> default_token_buckets() {
  std::vector<int64_t> b;
  for (int64_t v = 1; v <= 8192; v *= 2) b.push_back(v);
  return b;
}

int64_t token_bucket(int64_t tokens, const std::vector<int64_t>& buckets) {
  for (int64_t b : buckets)
    if (b >= tokens) return b;
  return buckets.empty() ? tokens : buckets.back();
}

TuningKey TuningKey::of(const DeviceFingerprint& device, const KernelSpec& spec, int64_t bucket) {
  TuningKey k;
  k.device = device;
  k.op = spec.op;
  k.dtype = spec.dtype;
  k.m = spec.m;
  k.k = spec.k;
  k.sparsity = spec.sparsity;
  k.experts = spec.experts;
  k.epilogue = spec.epilogue;
  k.bucket = bucket;
  return k;
}

std::string TuningKey::to_string() const {
  return fmt::format("{} {} m{} k{} {} E{} {} bucket {} on {}", op_name(op), dtype_name(dtype), m, k,
                     sparsity.to_string(), experts, epilogue_name(epilogue), bucket, device.to_string());
}

}  // namespace samoyeds
