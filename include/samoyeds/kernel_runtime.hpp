// JIT on first call: in-memory table -> SQLite binary cache -> NVRTC. Many
// threads asking for the same new kernel compile it once; later calls cost a
// hash-table lookup.
#pragma once
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "samoyeds/config_selector.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/kernel_spec.hpp"
#include "samoyeds/loaded_kernel.hpp"

namespace samoyeds {

struct GeneratedKernel;  // generator/generated_kernel.hpp
class LaunchScratch;     // backends/backend.hpp

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
  // A kernel generated outside the families (the FP8 projection's, ahead of
  // its spec), loaded once per `key`: make() runs on the first call only. Its
  // binary goes through the same disk cache, keyed by its source.
  const LoadedKernel& get_generated(const std::string& key, const std::function<GeneratedKernel()>& make);
  // The config a launch of `tokens` tokens uses when the caller names none:
  // tuning records of this device from the cache file, else heuristics.
  ConfigChoice choose_config(const KernelSpec& spec, int64_t tokens, std::optional<Backend> only = std::nullopt);
  Device& device() { return device_; }
  size_t loaded_count() const;
  // Every kernel loaded so far, in load order: which kernels (backend, spec,
  // config) calls have run, and whether a load compiled or came from the cache.
  struct LoadRecord {
    std::string kernel;  // spec and config, or a utility kernel's name
    bool compiled = false;  // NVRTC (else the disk cache)
    double load_ms = 0.0;
  };
  std::vector<LoadRecord> load_log() const;

  // Device scratch the backends' launches ask for (backends/backend.hpp):
  // per stream, grown when a launch needs more; the smaller buffers it
  // replaces are kept until the runtime goes (a launch queued with them may
  // not have run yet). Growing allocates and waits for a memset: not during
  // a CUDA graph capture.
  LaunchScratch& launch_scratch();


 private:
  struct Slot;
  struct DiskCache;
  // Everything the generated source depends on, compared field by field
  // (SAMOYEDS_SPEC_SOURCE_FIELDS and the config's lists; not the shape,
  // which is a launch argument): warm dispatch is one hash lookup with no
  // formatting, and every shape shares the kernel.
  struct KernelKey {
    KernelSpec spec;
    TileConfig config;
    bool operator==(const KernelKey& o) const { return spec.same_source(o.spec) && config == o.config; }
  };
  struct KernelKeyHash {
    size_t operator()(const KernelKey& k) const { return k.spec.source_hash() * 1000003u ^ k.config.hash(); }
  };
  std::shared_ptr<Slot> slot_for(const KernelKey& key);
  void load(Slot& slot, const GeneratedKernel& generated, const std::string& description);
  Device& device_;
  std::unique_ptr<DiskCache> disk_;
  std::unique_ptr<ConfigSelector> selector_;
  mutable std::mutex mu_;
  std::unordered_map<KernelKey, std::shared_ptr<Slot>, KernelKeyHash> table_;  // family kernels
  std::shared_ptr<Slot> utility_[8][kDTypeCount];                                // [which][dtype]
  std::unordered_map<std::string, std::shared_ptr<Slot>> generated_;             // get_generated, by key
  std::vector<LoadRecord> load_log_;                                             // under mu_
  class Scratch;
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace samoyeds
