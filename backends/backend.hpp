// A kernel family pairs a backend's search space and validity rules with the
// source it generates. The tuner and the CLI see only this interface.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "generator/generated_kernel.hpp"
#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

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
  // Heuristic default when nothing is tuned, for a device of `sm_count` SMs
  // (kReferenceSmCount where there is no device, e.g. `samoyeds compile`).
  virtual TileConfig default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const = 0;
  // The default for a call that gathers its token rows by id. default_config
  // may pick tiles that read the rows in order (TileConfig::tokens_tma),
  // which a gather cannot feed; this picks among the others. Families
  // without such tiles: default_config.
  virtual TileConfig gathered_default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const {
    return default_config(spec, tokens, sm_count);
  }
  // Whether timing `cfg` at `tokens` tokens on a device of `sm_count` SMs can
  // find a winner (the tuner skips the others).
  virtual bool worth_timing(const KernelSpec&, const TileConfig&, int64_t /*tokens*/, int /*sm_count*/) const {
    return true;
  }
};

// The H200's SM count, which the heuristics were fitted on: stands in for the
// device where none is at hand (compiling ahead of time).
constexpr int kReferenceSmCount = 132;

const KernelFamily& kernel_family(Backend backend);
// The backend an untuned launch of `spec` uses: wgmma_sp where the arch has
// it and its search space holds a config for the spec (sm_90a: faster than
// mma_sp on every shape measured on the H200, docs/perf-log.md), else mma_sp.
Backend default_backend(const KernelSpec& spec);

}  // namespace samoyeds
