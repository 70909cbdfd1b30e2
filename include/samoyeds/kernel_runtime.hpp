// JIT on first call: in-memory table -> SQLite binary cache -> NVRTC. Many
// threads asking for the same new kernel compile it once; later calls cost a
// hash-table lookup.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "samoyeds/config_selector.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

struct GeneratedKernel;  // generator/generated_kernel.hpp

struct LoadedKernel {
  KernelSpec spec;
  TileConfig config;
  void* function = nullptr;  // CUfunction
  int threads = 0;
  int smem_bytes = 0;
  std::string layout_id;
  bool weight_maps = false;  // launched with TmaWeightMaps as its second parameter, on a 1-D grid of tiles
  bool persistent = false;   // grid: at most resident_blocks, each walking its tiles
  int cluster_blocks = 1;    // blocks per cluster: a grid is a multiple of it
  int resident_blocks = 0;   // persistent kernels: how many blocks (whole clusters) the device runs at once
  bool tile_prefix = false;  // launch adds the grouped tile prefix to smem_bytes (generator/generated_kernel.hpp)
  int registers = -1, spill_bytes = -1;
  bool from_disk_cache = false;
  double load_ms = 0.0;  // generate + cache lookup or compile + module load
};

class KernelRuntime {
 public:
  // cache_path "" = default cache file; "none" = no disk cache.
  explicit KernelRuntime(Device& device, const std::string& cache_path = "");
  ~KernelRuntime();
  KernelRuntime(const KernelRuntime&) = delete;
  KernelRuntime& operator=(const KernelRuntime&) = delete;

  // spec.arch is replaced by the device's arch.
  const LoadedKernel& get(const KernelSpec& spec, const TileConfig& config);
  // A fixed utility kernel (generator/utility_kernels.hpp, by its enum value)
  // for a dtype: the combine, MoE routing and token-list kernels.
  const LoadedKernel& get_utility(int which, DType dtype);
  // The config a launch of `tokens` tokens uses when the caller names none:
  // tuning records of this device from the cache file, else heuristics.
  ConfigChoice choose_config(const KernelSpec& spec, int64_t tokens, std::optional<Backend> only = std::nullopt);
  Device& device() { return device_; }
  size_t loaded_count() const;

  // Device scratch of the stream-K launches (TileConfig::stream_k) on
  // `stream` (a CUstream; launches on one stream run one after another, so
  // they may share it): at least `partial_floats` floats and `flags` ints,
  // the flags zero. Grown when a launch needs more; the smaller buffers it
  // replaces are kept until the runtime goes (a launch queued with them may
  // not have run yet). The kernels leave the flags zero again. Growing
  // allocates and waits for a memset: not during a CUDA graph capture.
  struct StreamKScratch {
    float* partials = nullptr;
    int* flags = nullptr;
  };
  StreamKScratch stream_k_scratch(void* stream, int64_t partial_floats, int64_t flags);

 private:
  struct Slot;
  struct DiskCache;
  std::shared_ptr<Slot> slot_for(uint64_t key);
  void load(Slot& slot, const GeneratedKernel& generated, const std::string& description);
  Device& device_;
  std::unique_ptr<DiskCache> disk_;
  std::unique_ptr<ConfigSelector> selector_;
  mutable std::mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<Slot>> table_;  // family kernels
  std::shared_ptr<Slot> utility_[8][2];                           // [which][dtype]
  struct Scratch {
    DeviceBuffer partials, flags;
  };
  std::mutex scratch_mu_;
  std::unordered_map<void*, Scratch> scratch_;  // per stream
  std::vector<DeviceBuffer> retired_scratch_;
};

}  // namespace samoyeds
