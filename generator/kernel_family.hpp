// A kernel family pairs a backend's search space and validity rules with the
// source it generates. The tuner and the CLI see only this interface.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

struct GeneratedKernel {
  std::string source;       // the small translation unit NVRTC compiles
  std::string kernel_name;  // extern "C" entry point
  int threads = 0;
  int smem_bytes = 0;       // dynamic shared memory per block
  std::string layout_id;    // physical weight layout the kernel reads
  bool weight_maps = false; // second parameter: TmaWeightMaps (templates/kernel_args.cuh)
};

class KernelFamily {
 public:
  virtual ~KernelFamily() = default;
  virtual Backend backend() const = 0;
  // Every config the backend may try for this spec, invalid ones filtered out.
  virtual std::vector<TileConfig> search_space(const KernelSpec& spec) const = 0;
  // Why a config cannot serve a spec, or nullopt if it can.
  virtual std::optional<std::string> invalid_reason(const KernelSpec& spec, const TileConfig& cfg) const = 0;
  // Throws Error(Unsupported) for an invalid config.
  virtual GeneratedKernel generate(const KernelSpec& spec, const TileConfig& cfg) const = 0;
  // Heuristic default when nothing is tuned.
  virtual TileConfig default_config(const KernelSpec& spec, int64_t tokens) const = 0;
};

const KernelFamily& kernel_family(Backend backend);
// The backend an untuned launch of `spec` uses: wgmma_sp where the arch has
// it and its search space holds a config for the spec (sm_90a: faster than
// mma_sp on every shape measured on the H200, docs/perf-log.md), else mma_sp.
Backend default_backend(const KernelSpec& spec);

}  // namespace samoyeds
