#include "samoyeds/kernel_runtime.hpp"

#include <chrono>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "runtime/cuda_driver.hpp"
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
  explicit DiskCache(const std::string& path) : store(path), binaries(store) {}
  SqliteStore store;
  BinaryCache binaries;
};

KernelRuntime::KernelRuntime(Device& device, const std::string& cache_path) : device_(device) {
  if (cache_path != "none") {
    const std::string path = cache_path.empty() ? default_cache_path() : cache_path;
    try {
      disk_ = std::make_unique<DiskCache>(path);
    } catch (const Error& e) {
      // A broken cache file must not stop inference: compile in memory instead.
      log(LogLevel::Warn, std::string(e.what()) + "; continuing without the disk cache");
    }
  }
}

KernelRuntime::~KernelRuntime() {
  for (auto& kv : table_)
    if (kv.second->module) driver().cuModuleUnload(kv.second->module);
}

size_t KernelRuntime::loaded_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.size();
}

const LoadedKernel& KernelRuntime::get(const KernelSpec& spec_in, const TileConfig& config) {
  KernelSpec spec = spec_in;
  spec.arch = device_.info().arch();
  // Everything the generated source depends on, nothing else.
  const std::string key = fmt::format("{}|{}|{}|{}|{}|{}|{}", int(spec.backend), spec.arch, int(spec.dtype),
                                      spec.sparsity.to_string(), int(spec.epilogue), config.to_string(), int(spec.op));
  std::shared_ptr<Slot> slot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& s = table_[key];
    if (!s) s = std::make_shared<Slot>();
    slot = s;
  }
  std::call_once(slot->once, [&] {
    const auto start = std::chrono::steady_clock::now();
    BuiltKernel built = build_kernel(spec, config, disk_ ? &disk_->binaries : nullptr);
    device_.make_current();
    const DriverApi& d = driver();
    CUmodule module;
    check(d.cuModuleLoadData(&module, built.binary.blob.data()),
          fmt::format("cuModuleLoadData({} {})", spec.to_string(), config.to_string()).c_str());
    CUfunction fn;
    check(d.cuModuleGetFunction(&fn, module, built.generated.kernel_name.c_str()), "cuModuleGetFunction");
    if (built.generated.smem_bytes > device_.info().max_smem_optin)
      throw Error(ErrorCode::Unsupported, fmt::format("{} needs {} bytes of shared memory, device allows {}",
                                                      config.to_string(), built.generated.smem_bytes,
                                                      device_.info().max_smem_optin));
    check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, built.generated.smem_bytes),
          "cuFuncSetAttribute(max dynamic shared memory)");
    LoadedKernel& k = slot->kernel;
    k.spec = spec;
    k.config = config;
    k.function = fn;
    k.threads = built.generated.threads;
    k.smem_bytes = built.generated.smem_bytes;
    k.layout_id = built.generated.layout_id;
    k.registers = built.binary.registers;
    k.spill_bytes = built.binary.spill_bytes;
    k.from_disk_cache = built.from_cache;
    slot->module = module;
    k.load_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    log(LogLevel::Info, fmt::format("loaded {} {} from {} in {:.1f} ms", spec.to_string(), config.to_string(),
                                    built.from_cache ? "cache" : "NVRTC", k.load_ms));
  });
  if (!slot->kernel.function) {
    // A failed first attempt leaves the once_flag unset (call_once rethrew);
    // reaching here means a concurrent success was not published: retry.
    throw Error(ErrorCode::CudaError, "kernel load did not complete for " + key);
  }
  return slot->kernel;
}

}  // namespace samoyeds
