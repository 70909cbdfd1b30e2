// A backend's kernel family: its search space, validity rules, heuristics,
// the source it generates and the launch of what it generated (arguments,
// tensor maps, grid, workspace). The runtime, the tuner and the CLI see only
// this interface; none reads a backend's schedule fields.
#pragma once
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "generator/generated_kernel.hpp"
#include "samoyeds/backends.hpp"
#include "samoyeds/kernel_spec.hpp"
#include "samoyeds/loaded_kernel.hpp"

namespace samoyeds {

class Device;

// One expert-op launch as the runtime hands it to the backend whose kernel
// it is: the spec and config that were loaded, the packed weights, the
// activations and the outputs (device pointers, checked by the runtime).
struct ExpertLaunch {
  KernelSpec spec;
  TileConfig config;
  const LoadedKernel* kernel = nullptr;
  struct Operand {
    const void* values = nullptr;
    const void* meta = nullptr;
    const void* sel = nullptr;
  };
  Operand operands[2];  // the gated up projection's two, else one
  int n_operands = 1;
  int64_t m = 0, k = 0;                    // the projection's shape
  int64_t rows = 0, rows_pad = 0, k_phys = 0;  // of the packed layout (per expert)
  const void* x = nullptr;  // [x_rows, ldx]
  int64_t x_rows = 0, ldx = 0;
  const int32_t* ids = nullptr;  // rows of x to read, or null: rows in order
  int64_t n = 0;                 // tokens (a bound on any expert's, grouped)
  const float* row_scale = nullptr;
  // The biased epilogues: a float bias per output row and operand (grouped:
  // expert e's at + e * bias_stride), and the clamped SwiGLU's constants.
  const float* bias[2] = {nullptr, nullptr};
  int64_t bias_stride = 0;
  float act_alpha = 0.0f, act_limit = 0.0f;
  void* y = nullptr;  // [n, m] compact
  int* error_flag = nullptr;
  void* stream = nullptr;
  // Grouped over spec.experts experts: list offsets on the device, the
  // experts' strides in the packed parts, whether x follows the list.
  const int32_t* offsets = nullptr;
  int64_t values_stride = 0, meta_stride = 0, sel_stride = 0;
  bool x_is_compact = false;
};

// What a launch may take from the runtime: device scratch per stream (a
// stream's launches run in order, so they share it), its ints zero, which
// the kernels leave zero again.
class LaunchScratch {
 public:
  struct Buffers {
    float* floats = nullptr;
    int* zeroed_ints = nullptr;
  };
  virtual ~LaunchScratch() = default;
  virtual Buffers scratch(void* stream, int64_t floats, int64_t zeroed_ints) = 0;
};

struct LaunchContext {
  const Device& device;
  LaunchScratch& scratch;
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
  // Heuristic default when nothing is tuned, for a device of `sm_count` SMs
  // (kReferenceSmCount where there is no device, e.g. `samoyeds compile`).
  virtual TileConfig default_config(const KernelSpec& spec, int64_t tokens, int sm_count) const = 0;
  // The names of the config's schedule values (TileConfig::schedule); null
  // for a backend without any.
  virtual const ScheduleFields* schedule_fields() const { return nullptr; }
  // Whether the kernel reads its token rows in order (no ids), e.g. by TMA
  // boxes: a call that gathers by id must then copy them into list order
  // first, or run gathered_config() instead.
  virtual bool reads_rows_in_order(const TileConfig&) const { return false; }
  // What a call that gathers its token rows by id runs in place of `chosen`
  // (which reads them in order): a tuned choice keeps its tile where the
  // gather allows it; otherwise the backend's default for gathered calls.
  virtual TileConfig gathered_config(const KernelSpec&, const TileConfig& chosen, bool /*tuned*/, int64_t /*tokens*/,
                                     int /*sm_count*/) const {
    return chosen;
  }
  // Arguments, grid and workspace of one launch of a kernel this family
  // generated; throws Error with the spec and config on failure.
  virtual void launch(const ExpertLaunch& launch, LaunchContext& context) const = 0;
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
