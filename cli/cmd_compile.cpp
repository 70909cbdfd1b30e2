// samoyeds compile: ahead-of-time generation and NVRTC compilation of a
// model's expert kernels into the binary cache. Needs no GPU.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
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
  app.add_option("--dtype", dtype_arg, "f16, bf16 or all")->capture_default_str();
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
  std::vector<DType> dtypes = dtype_arg == "all" ? all_dtypes()
                                                 : std::vector<DType>{parse_dtype(dtype_arg)};

  const std::vector<KernelJob> jobs = model_kernel_jobs(model, arch, dtypes, sp, which == "all");

  if (!emit_dir.empty()) check_writable_folder(emit_dir, "--emit-cubins");
  // "none" means no cache, as for the runtime (a file named none was made before).
  std::optional<SqliteStore> store;
  std::optional<BinaryCache> cache;
  if (cache_path != "none") {
    store.emplace(cache_path);
    cache.emplace(*store);
  }
  fmt::print("samoyeds compile: {} ({}), {} kernels for {} (no GPU needed), cache {}\n", model.display_name,
             model.name, jobs.size(), arch, cache_path);
  fmt::print("{:<42} {:<26} {:>10} {:>11} {:>5} {:>6}  {}\n", "spec", "config", "compile ms", "cubin bytes", "regs",
             "spills", "source");

  std::atomic<int> failures{0}, compiled{0};
  Progress progress("compile", jobs.size());
  std::mutex print_mu;
  double total_ms = 0.0, max_ms = 0.0;
  parallel_for(jobs.size(), n_threads, [&](size_t i) {
    const KernelJob& job = jobs[i];
    const std::string name = fmt::format("{}{} {} {} {}x{}", job.spec.grouped ? "grouped " : "", op_name(job.spec.op),
                                         backend_name(job.spec.backend), dtype_name(job.spec.dtype), job.spec.m,
                                         job.spec.k);
    try {
      const BuiltKernel b = build_kernel(job.spec, job.config, cache ? &*cache : nullptr);
      if (!emit_dir.empty()) {
        const std::string file = fmt::format("{}/{}{}_{}_{}_{}x{}_{}.cubin", emit_dir, job.spec.grouped ? "grouped_" : "",
                                             op_name(job.spec.op), backend_name(job.spec.backend),
                                             dtype_name(job.spec.dtype), job.spec.m, job.spec.k,
                                             job.config.to_string());
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
      fmt::print("{:<42} {:<26} {:>10.0f} {:>11} {:>5} {:>6}  {}\n", name, job.config.to_string(),
                 b.from_cache ? 0.0 : b.binary.compile_ms, b.binary.blob.size(), b.binary.registers, b.binary.spill_bytes,
                 b.from_cache ? "cache" : "nvrtc");
      if (b.binary.spill_bytes > 0)
        log(LogLevel::Warn, fmt::format("{} {} spills {} bytes", name, job.config.to_string(), b.binary.spill_bytes));
    } catch (const Error& e) {
      ++failures;
      std::lock_guard<std::mutex> lock(print_mu);
      fmt::print(stderr, "FAILED {} {}: {}\n", name, job.config.to_string(), e.what());
    }
    progress.step();
  });
  fmt::print("compiled {} new kernels ({} from cache, {} failed); compile time mean {:.0f} ms, max {:.0f} ms\n",
             compiled.load(), jobs.size() - size_t(compiled.load()) - size_t(failures.load()), failures.load(),
             compiled ? total_ms / compiled : 0.0, max_ms);
  return failures ? 1 : 0;
}

}  // namespace samoyeds::cli
