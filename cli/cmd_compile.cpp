// samoyeds compile: ahead-of-time generation and NVRTC compilation of a
// model's expert kernels into the binary cache. Needs no GPU.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <fstream>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cli/cli_options.hpp"
#include "cli/progress.hpp"
#include "backends/backend.hpp"
#include "runtime/kernel_builder.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "samoyeds/moe_layer.hpp"
#include "samoyeds/tuning_record.hpp"
#include "tuner/model_kernels.hpp"

namespace samoyeds::cli {

int cmd_compile(const std::vector<std::string>& argv) {
  CLI::App app("Generate and NVRTC-compile a model's expert kernels into the cache (no GPU needed).",
               "samoyeds compile");
  std::string model_arg = "mixtral-8x7b", arch = "sm_90a", dtype_arg = "all", rows = "1:2", which = "default";
  std::string cache_path = default_cache_path(), emit_dir;
  int segment = 128;
  int n_threads = std::max(1, int(std::thread::hardware_concurrency()));
  app.add_option("--model", model_arg, model_option_help("default mixtral-8x7b"));
  app.add_option("--arch", arch, "sm_80, sm_86, sm_89, sm_90 or sm_90a")->capture_default_str();
  app.add_option("--dtype", dtype_arg,
                 "f16, bf16, e4m3 (bf16 layer with FP8 routed experts, sm_90a; docs/fp8.md) or all (f16 and bf16, "
                 "and e4m3 for sm_90a)")
      ->capture_default_str();
  app.add_option("--rows", rows, "row pattern N:M")->capture_default_str();
  app.add_option("--segment", segment, "segment length 32|64|128|256")->capture_default_str();
  app.add_option("--configs", which,
                 "default (what untuned dispatch uses: wgmma_sp on sm_90a, else mma_sp; heuristic per token "
                 "range) or all (every backend's whole search space)")
      ->check(CLI::IsMember({"default", "all"}))
      ->capture_default_str();
  app.add_option("--cache", cache_path,
                 "cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite); none: compile only, store nothing");
  app.add_option("--jobs", n_threads, "parallel NVRTC compiles (default: hardware threads)")
      ->check(CLI::Range(1, 4096));
  app.add_option("--emit-cubins", emit_dir, "also write each binary to DIR (for cuobjdump/nvdisasm)");
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;

  const ModelPreset model = load_model(model_arg);
  const SparsityParams sp = SparsityParams::from_rows(rows, segment);
  // e4m3: the routed experts in FP8, all else (shared experts, routing,
  // combine) bf16, for a layer the FP8 path takes (sm_90a, its pattern and
  // activation); `all` adds them only where they would run.
  bool fp8 = dtype_arg == "e4m3" || (dtype_arg == "all" && arch == "sm_90a");
  if (fp8 && arch != "sm_90a")
    throw Error(ErrorCode::Unsupported, fmt::format("--dtype e4m3: FP8 experts need sm_90a, not {}", arch));
  if (fp8) {
    MoeLayerSpec fp8_layer{model.hidden_size, model.ffn_size, model.experts, model.top_k, DType::bf16, sp, {}};
    fp8_layer.fp8_experts = true;
    fp8_layer.activation = model.activation();
    try {
      fp8_layer.validate();
    } catch (const Error&) {
      if (dtype_arg == "e4m3") throw;  // its message names what FP8 experts do not take
      fp8 = false;
    }
  }
  const std::vector<DType> dtypes = dtype_arg == "all"    ? all_dtypes()
                                    : dtype_arg == "e4m3" ? std::vector<DType>{DType::bf16}
                                                          : std::vector<DType>{parse_dtype(dtype_arg)};
  const std::vector<KernelJob> jobs = model_kernel_jobs(model, arch, dtypes, sp, which == "all", dtype_arg != "e4m3");
  const std::vector<FixedKernelJob> fixed = model_fixed_kernel_jobs(dtypes, fp8);

  if (!emit_dir.empty()) check_writable_folder(emit_dir, "--emit-cubins");
  // "none" means no cache, as for the runtime (a file named none was made before).
  std::optional<SqliteStore> store;
  std::optional<BinaryCache> cache;
  if (cache_path != "none") {
    store.emplace(cache_path);
    cache.emplace(*store);
  }
  fmt::print("samoyeds compile: {} ({}), {} kernels for {} ({} expert projections, {} fixed kernels; no GPU needed), "
             "cache {}\n",
             model.display_name, model.name, jobs.size() + fixed.size(), arch, jobs.size(), fixed.size(), cache_path);
  fmt::print("{:<42} {:<26} {:>10} {:>11} {:>5} {:>6}  {}\n", "spec", "config", "compile ms", "cubin bytes", "regs",
             "spills", "source");

  // One list of builds: the expert projections by spec and config, then
  // the fixed kernels by name.
  struct Unit {
    std::string name, config, file;  // file: the --emit-cubins stem
    std::function<BuiltKernel()> build;
  };
  std::vector<Unit> units;
  BinaryCache* const cache_ptr = cache ? &*cache : nullptr;
  for (const KernelJob& job : jobs) {
    const KernelSpec& s = job.spec;
    units.push_back({fmt::format("{}{} {} {} {}x{}", s.grouped ? "grouped " : "", op_name(s.op),
                                 backend_name(s.backend), dtype_name(s.dtype), s.m, s.k),
                     job.config.to_string(),
                     fmt::format("{}{}_{}_{}_{}x{}_{}", s.grouped ? "grouped_" : "", op_name(s.op),
                                 backend_name(s.backend), dtype_name(s.dtype), s.m, s.k, job.config.to_string()),
                     [&job, cache_ptr] { return build_kernel(job.spec, job.config, cache_ptr); }});
  }
  for (const FixedKernelJob& job : fixed) {
    std::string stem = "fixed_" + job.name;
    for (char& c : stem)
      if (c == ' ') c = '_';
    units.push_back({job.name, "-", stem, [&job, &arch, cache_ptr] {
                       BuiltKernel b;
                       b.generated = job.kernel;
                       b.binary = build_binary(b.generated, arch, job.name, cache_ptr, &b.from_cache);
                       return b;
                     }});
  }

  std::atomic<int> failures{0}, compiled{0};
  Progress progress("compile", units.size());
  std::mutex print_mu;
  double total_ms = 0.0, max_ms = 0.0;
  parallel_for(units.size(), n_threads, [&](size_t i) {
    const Unit& u = units[i];
    try {
      const BuiltKernel b = u.build();
      if (!emit_dir.empty()) {
        const std::string file = fmt::format("{}/{}.cubin", emit_dir, u.file);
        std::ofstream out(file, std::ios::binary);
        out.write(b.binary.blob.data(), std::streamsize(b.binary.blob.size()));
        if (!out.flush()) throw Error(ErrorCode::IoError, "--emit-cubins: cannot write '" + file + "'");
      }
      std::lock_guard<std::mutex> lock(print_mu);
      if (!b.from_cache) {
        ++compiled;
        total_ms += b.binary.compile_ms;
        max_ms = std::max(max_ms, b.binary.compile_ms);
      }
      // A cache hit cost no compile time here (the record keeps the original figure).
      fmt::print("{:<42} {:<26} {:>10.0f} {:>11} {:>5} {:>6}  {}\n", u.name, u.config,
                 b.from_cache ? 0.0 : b.binary.compile_ms, b.binary.blob.size(), b.binary.registers, b.binary.spill_bytes,
                 b.from_cache ? "cache" : "nvrtc");
      if (b.binary.spill_bytes > 0)
        log(LogLevel::Warn, fmt::format("{} {} spills {} bytes", u.name, u.config, b.binary.spill_bytes));
    } catch (const Error& e) {
      ++failures;
      std::lock_guard<std::mutex> lock(print_mu);
      fmt::print(stderr, "FAILED {} {}: {}\n", u.name, u.config, e.what());
    }
    progress.step();
  });
  fmt::print("compiled {} new kernels ({} from cache, {} failed); compile time mean {:.0f} ms, max {:.0f} ms\n",
             compiled.load(), units.size() - size_t(compiled.load()) - size_t(failures.load()), failures.load(),
             compiled ? total_ms / compiled : 0.0, max_ms);
  return failures ? 1 : 0;
}

}  // namespace samoyeds::cli
