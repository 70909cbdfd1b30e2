#include "samoyeds/kernel_runtime.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "core/cuda_driver.hpp"
#include "backends/backend.hpp"
#include "generator/utility_kernels.hpp"
#include "runtime/kernel_builder.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

struct KernelRuntime::Slot {
  std::once_flag once;
  LoadedKernel kernel;
  CUmodule module = nullptr;
};

struct KernelRuntime::DiskCache {
  explicit DiskCache(const std::string& path) : store(path), binaries(store), records(store) {}
  SqliteStore store;
  BinaryCache binaries;
  RecordStore records;
};

KernelRuntime::KernelRuntime(Device& device, const std::string& cache_path)
    : device_(device), scratch_(std::make_unique<Scratch>(device)) {
  if (cache_path != "none") {
    const std::string path = cache_path.empty() ? default_cache_path() : cache_path;
    try {
      disk_ = std::make_unique<DiskCache>(path);
    } catch (const Error& e) {
      // A broken cache file must not stop inference: compile in memory instead.
      log(LogLevel::Warn, std::string(e.what()) + "; continuing without the disk cache");
    }
  }
  selector_ = std::make_unique<ConfigSelector>(disk_ ? &disk_->records : nullptr, current_fingerprint(device.info().ordinal));
}

ConfigChoice KernelRuntime::choose_config(const KernelSpec& spec, int64_t tokens, std::optional<Backend> only) {
  return selector_->choose(spec, tokens, only);
}

KernelRuntime::~KernelRuntime() {
  for (auto& kv : table_)
    if (kv.second->module) driver().cuModuleUnload(kv.second->module);
  for (auto& per_dtype : utility_)
    for (auto& s : per_dtype)
      if (s && s->module) driver().cuModuleUnload(s->module);
  for (auto& kv : generated_)
    if (kv.second->module) driver().cuModuleUnload(kv.second->module);
}

std::shared_ptr<KernelRuntime::Slot> KernelRuntime::slot_for(const KernelKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = table_[key];
  if (!s) s = std::make_shared<Slot>();
  return s;
}

// Binary (memory miss -> disk cache -> NVRTC), module load, launch attributes.
void KernelRuntime::load(Slot& slot, const GeneratedKernel& generated, const std::string& description) {
  const auto start = std::chrono::steady_clock::now();
  bool from_cache = false;
  BinaryRecord binary =
      build_binary(generated, device_.info().arch(), description, disk_ ? &disk_->binaries : nullptr, &from_cache);
  device_.make_current();
  const DriverApi& d = driver();
  if (generated.smem_bytes > device_.info().max_smem_optin)
    throw Error(ErrorCode::Unsupported, fmt::format("{} needs {} bytes of shared memory, device allows {}",
                                                    description, generated.smem_bytes,
                                                    device_.info().max_smem_optin));
  CUmodule module;
  check(d.cuModuleLoadData(&module, binary.blob.data()), ("cuModuleLoadData(" + description + ")").c_str());
  CUfunction fn;
  check(d.cuModuleGetFunction(&fn, module, generated.kernel_name.c_str()), "cuModuleGetFunction");
  // A kernel with a tile prefix takes more at launch, by the expert count.
  const int smem_cap = generated.tile_prefix ? device_.info().max_smem_optin : generated.smem_bytes;
  check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem_cap),
        "cuFuncSetAttribute(max dynamic shared memory)");
  LoadedKernel& k = slot.kernel;
  k.function = fn;
  k.threads = generated.threads;
  k.smem_bytes = generated.smem_bytes;
  k.layout_id = generated.layout_id;
  k.persistent = generated.persistent;
  k.tile_prefix = generated.tile_prefix;
  k.cluster_blocks = generated.cluster_blocks;
  k.resident_blocks = 0;
  if (k.persistent) {
    // A persistent grid must fit the device at once: a block (cluster) that
    // waits for a second wave doubles the kernel's time. Clusters are placed
    // GPC by GPC, so they are counted as clusters, not as blocks per SM.
    const int sms = device_.info().sm_count;
    int blocks = 1;
    if (d.cuOccupancyMaxActiveBlocksPerMultiprocessor) {
      check(d.cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, fn, generated.threads, size_t(generated.smem_bytes)),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor");
      blocks = std::max(blocks, 1);
    }
    k.resident_blocks = sms * blocks / k.cluster_blocks * k.cluster_blocks;
    if (k.cluster_blocks > 1 && d.cuOccupancyMaxActiveClusters) {
      CUlaunchConfig lc{};
      lc.gridDimX = unsigned(k.resident_blocks);
      lc.gridDimY = lc.gridDimZ = 1;
      lc.blockDimX = unsigned(generated.threads);
      lc.blockDimY = lc.blockDimZ = 1;
      lc.sharedMemBytes = unsigned(generated.smem_bytes);
      int clusters = 0;
      check(d.cuOccupancyMaxActiveClusters(&clusters, fn, &lc), "cuOccupancyMaxActiveClusters");
      if (clusters > 0) k.resident_blocks = std::min(k.resident_blocks, clusters * k.cluster_blocks);
    }
  }
  k.registers = binary.registers;
  k.spill_bytes = binary.spill_bytes;
  k.from_disk_cache = from_cache;
  slot.module = module;
  k.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  log(LogLevel::Info, fmt::format("loaded {} from {} in {:.1f} ms", description, from_cache ? "cache" : "NVRTC",
                                  k.load_ms));
  std::lock_guard<std::mutex> lock(mu_);
  load_log_.push_back({description, !from_cache, k.load_ms});
}

static_assert(kUtilityKernelCount <= 8, "KernelRuntime::utility_ has 8 rows");

const LoadedKernel& KernelRuntime::get_utility(int which, DType dtype) {
  if (which < 0 || which >= kUtilityKernelCount)
    throw Error(ErrorCode::InvalidArgument, fmt::format("no utility kernel {}", which));
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& s = utility_[which][int(dtype)];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::call_once(slot->once, [&] {
    const auto kind = UtilityKernel(which);
    load(*slot, generate_utility_kernel(kind, dtype), utility_kernel_name(kind) + " " + dtype_name(dtype));
  });
  return slot->kernel;
}

const LoadedKernel& KernelRuntime::get_generated(const std::string& key, const std::function<GeneratedKernel()>& make) {
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& s = generated_[key];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::call_once(slot->once, [&] { load(*slot, make(), key); });
  if (!slot->kernel.function) throw Error(ErrorCode::CudaError, "kernel load did not complete for " + key);
  return slot->kernel;
}

size_t KernelRuntime::loaded_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.size();
}

std::vector<KernelRuntime::LoadRecord> KernelRuntime::load_log() const {
  std::lock_guard<std::mutex> lock(mu_);
  return load_log_;
}

// Per-stream device scratch for the backends' launches (backends/backend.hpp).
// A stream's first launch that needs it may come inside a CUDA graph capture
// (a warm-up on another stream filled another stream's): so no host
// synchronization and no legacy-stream memset, and the allocation in relaxed
// capture mode, which a global-mode capture on any thread otherwise refuses
// (DeepSeek-V3's shared expert at T = 8192 took stream-K first there).
class KernelRuntime::Scratch final : public LaunchScratch {
 public:
  explicit Scratch(Device& device) : device_(device) {}
  Buffers scratch(void* stream, int64_t floats, int64_t zeroed_ints) override {
    std::lock_guard<std::mutex> lock(mu_);
    PerStream& s = streams_[stream];
    const size_t want_floats = size_t(floats) * 4, want_ints = size_t(zeroed_ints) * 4;
    if (s.floats.bytes() < want_floats) {
      device_.make_current();
      retired_.push_back(std::move(s.floats));  // earlier launches may still use it
      s.floats = allocate(want_floats);
    }
    if (s.ints.bytes() < want_ints) {
      device_.make_current();
      retired_.push_back(std::move(s.ints));
      s.ints = allocate(want_ints);
      // On the launch's stream, before the launch: a memset node under capture.
      check(driver().cuMemsetD8Async(CUdeviceptr(s.ints.data()), 0, want_ints, static_cast<CUstream>(stream)),
            "cuMemsetD8Async");
    }
    return {static_cast<float*>(s.floats.data()), static_cast<int*>(s.ints.data())};
  }

 private:
  static DeviceBuffer allocate(size_t bytes) {
    CUstreamCaptureMode mode = CU_STREAM_CAPTURE_MODE_RELAXED;
    check(driver().cuThreadExchangeStreamCaptureMode(&mode), "cuThreadExchangeStreamCaptureMode");
    try {
      DeviceBuffer b(bytes);
      check(driver().cuThreadExchangeStreamCaptureMode(&mode), "cuThreadExchangeStreamCaptureMode");
      return b;
    } catch (...) {
      driver().cuThreadExchangeStreamCaptureMode(&mode);
      throw;
    }
  }

 private:
  struct PerStream {
    DeviceBuffer floats, ints;
  };
  Device& device_;
  std::mutex mu_;
  std::unordered_map<void*, PerStream> streams_;
  std::vector<DeviceBuffer> retired_;
};

LaunchScratch& KernelRuntime::launch_scratch() { return *scratch_; }

const LoadedKernel& KernelRuntime::get(const KernelSpec& spec_in, const TileConfig& config) {
  KernelSpec spec = spec_in;
  spec.arch = device_.info().arch();
  const KernelKey key{spec, config};
  std::shared_ptr<Slot> slot = slot_for(key);
  std::call_once(slot->once, [&] {
    const GeneratedKernel generated = kernel_family(spec.backend).generate(spec, config);
    load(*slot, generated, spec.to_string() + " " + config.to_string());
    slot->kernel.spec = spec;
    slot->kernel.config = config;
  });
  if (!slot->kernel.function) {
    // A failed first attempt leaves the once_flag unset (call_once rethrew);
    // reaching here means a concurrent success was not published: retry.
    throw Error(ErrorCode::CudaError, "kernel load did not complete for " + spec.to_string());
  }
  return slot->kernel;
}

}  // namespace samoyeds
