#include "samoyeds/kernel_runtime.hpp"

#include <algorithm>
#include <chrono>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "core/cuda_driver.hpp"
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
}

std::shared_ptr<KernelRuntime::Slot> KernelRuntime::slot_for(uint64_t key) {
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
  k.weight_maps = generated.weight_maps;
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

size_t KernelRuntime::loaded_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_.size();
}

KernelRuntime::StreamKScratch KernelRuntime::stream_k_scratch(void* stream, int64_t partial_floats, int64_t flags) {
  std::lock_guard<std::mutex> lock(scratch_mu_);
  Scratch& s = scratch_[stream];
  const size_t want_partials = size_t(partial_floats) * 4, want_flags = size_t(flags) * 4;
  if (s.partials.bytes() < want_partials) {
    device_.make_current();
    retired_scratch_.push_back(std::move(s.partials));  // earlier launches may still use it
    s.partials = DeviceBuffer(want_partials);
  }
  if (s.flags.bytes() < want_flags) {
    device_.make_current();
    retired_scratch_.push_back(std::move(s.flags));
    s.flags = DeviceBuffer(want_flags);
    s.flags.fill_bytes(0);
    device_.synchronize();  // the memset is on the legacy stream, which a non-blocking stream does not wait for
  }
  return {static_cast<float*>(s.partials.data()), static_cast<int*>(s.flags.data())};
}

const LoadedKernel& KernelRuntime::get(const KernelSpec& spec_in, const TileConfig& config) {
  KernelSpec spec = spec_in;
  spec.arch = device_.info().arch();
  // Everything the generated source depends on (the arch is the device's),
  // bit-packed into one integer: warm dispatch is a hash lookup with no
  // formatting. Packing is exact (fields are range-checked), so two different
  // kernels can never share a key.
  const auto& sp = spec.sparsity;
  uint64_t key = 0;
  auto pack = [&](int64_t value, int bits) {
    if (value < 0 || value >= (int64_t(1) << bits)) {
      // A field the key cannot hold is one no valid config has: say why it is invalid where the family can.
      if (auto why = kernel_family(spec.backend).invalid_reason(spec, config))
        throw Error(ErrorCode::Unsupported, fmt::format("{} config {} invalid for {}: {}", backend_name(spec.backend),
                                                        config.to_string(), spec.to_string(), *why));
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("kernel request out of range: {} {}", spec.to_string(), config.to_string()));
    }
    key = (key << bits) | uint64_t(value);
  };
  pack(int(spec.backend), 2);
  pack(int(spec.op), 2);
  pack(int(spec.dtype), 1);
  pack(int(spec.epilogue), 2);
  pack(spec.grouped ? 1 : 0, 1);
  pack(sp.V == 32 ? 0 : sp.V == 64 ? 1 : sp.V == 128 ? 2 : sp.V == 256 ? 3 : 4, 2);  // validated V values
  pack(sp.N, 4);
  pack(sp.M, 4);
  pack(config.block_m % 16 == 0 ? config.block_m / 16 : -1, 5);  // a multiple of 16 up to 496
  pack(config.block_n % 8 == 0 ? config.block_n / 8 : -1, 6);  // a multiple of 8 up to 504
  pack(config.block_k % 32 == 0 ? config.block_k / 32 : -1, 4);  // a multiple of 32 up to 480
  pack(config.warps_m, 5);
  pack(config.warps_n - 1, 4);  // 1 to 16 (at most 16 warps)
  pack(config.stages, 4);
  pack(config.split_k == 1 ? 0 : config.split_k == 2 ? 1 : config.split_k == 4 ? 2 : config.split_k == 8 ? 3 : 4,
       2);  // validated split_k values
  pack(config.persistent ? 1 : 0, 1);
  pack(config.tokens_first ? 1 : 0, 1);
  pack(config.multicast == 1 ? 0 : config.multicast == 2 ? 1 : 2, 1);  // validated values
  pack(config.tokens_tma ? 1 : 0, 1);
  pack(config.row_group == 0 ? 0 : config.row_group == 4 ? 1 : config.row_group == 8 ? 2 : config.row_group == 16 ? 3 : 4,
       2);  // validated values
  pack(config.split_operands ? 1 : 0, 1);
  pack(config.stream_k ? 1 : 0, 1);  // 56 of 64 bits used
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
