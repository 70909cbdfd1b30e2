// samoyeds compile: ahead-of-time generation and NVRTC compilation of a
// model's expert kernels into the binary cache. Needs no GPU.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <cstdio>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "core/cli_args.hpp"
#include "backends/backend.hpp"
#include "runtime/kernel_builder.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "samoyeds/tuning_record.hpp"
#include "tuner/model_kernels.hpp"

namespace samoyeds::cli {

namespace {
const char* kHelp =
    "usage: samoyeds compile [options]\n"
    "  --model NAME|FILE   model preset or YAML file (default mixtral-8x7b)\n"
    "  --arch ARCH         sm_80, sm_86, sm_89, sm_90 or sm_90a (default sm_90a)\n"
    "  --dtype T           f16, bf16 or all (default all)\n"
    "  --rows N:M          row pattern (default 1:2)\n"
    "  --segment V         segment length 32|64|128|256 (default 128)\n"
    "  --configs WHICH     default (what untuned dispatch uses: wgmma_sp on sm_90a, else mma_sp;\n"
    "                      heuristic per token range) or all (every backend's whole search space)\n"
    "  --cache FILE        cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)\n"
    "  --jobs N            parallel NVRTC compiles (default: hardware threads)\n"
    "  --emit-cubins DIR   also write each binary to DIR (for cuobjdump/nvdisasm)\n";

}  // namespace

int cmd_compile(const std::vector<std::string>& argv) {
  if (print_help_if_asked(argv, kHelp)) return 0;
  Args args(argv, {"--model", "--arch", "--dtype", "--rows", "--segment", "--configs", "--cache", "--jobs", "--emit-cubins"}, {});
  const ModelPreset model = load_model(args.get("--model", "mixtral-8x7b"));
  const std::string arch = args.get("--arch", "sm_90a");
  const SparsityParams sp = SparsityParams::from_rows(args.get("--rows", "1:2"), std::stoi(args.get("--segment", "128")));
  const std::string dtype_arg = args.get("--dtype", "all");
  std::vector<DType> dtypes = dtype_arg == "all" ? all_dtypes()
                                                 : std::vector<DType>{parse_dtype(dtype_arg)};
  const std::string which = args.get("--configs", "default");
  if (which != "default" && which != "all")
    throw Error(ErrorCode::InvalidArgument, "--configs expects default or all");

  const std::vector<KernelJob> jobs = model_kernel_jobs(model, arch, dtypes, sp, which == "all");

  const std::string emit_dir = args.get("--emit-cubins", "");
  if (!emit_dir.empty()) std::filesystem::create_directories(emit_dir);
  const std::string cache_path = args.get("--cache", default_cache_path());
  SqliteStore store(cache_path);
  BinaryCache cache(store);
  fmt::print("samoyeds compile: {} ({}), {} kernels for {} (no GPU needed), cache {}\n", model.display_name,
             model.name, jobs.size(), arch, cache_path);
  fmt::print("{:<42} {:<26} {:>10} {:>11} {:>5} {:>6}  {}\n", "spec", "config", "compile ms", "cubin bytes", "regs",
             "spills", "source");

  const int n_threads =
      std::max(1, args.has("--jobs") ? std::stoi(args.get("--jobs", "1")) : int(std::thread::hardware_concurrency()));
  std::atomic<int> failures{0}, compiled{0};
  std::mutex print_mu;
  double total_ms = 0.0, max_ms = 0.0;
  parallel_for(jobs.size(), n_threads, [&](size_t i) {
    const KernelJob& job = jobs[i];
    const std::string name = fmt::format("{}{} {} {} {}x{}", job.spec.grouped ? "grouped " : "", op_name(job.spec.op),
                                         backend_name(job.spec.backend), dtype_name(job.spec.dtype), job.spec.m,
                                         job.spec.k);
    try {
      const BuiltKernel b = build_kernel(job.spec, job.config, &cache);
      if (!emit_dir.empty()) {
        const std::string file = fmt::format("{}/{}{}_{}_{}_{}x{}_{}.cubin", emit_dir, job.spec.grouped ? "grouped_" : "",
                                             op_name(job.spec.op), backend_name(job.spec.backend),
                                             dtype_name(job.spec.dtype), job.spec.m, job.spec.k,
                                             job.config.to_string());
        std::ofstream(file, std::ios::binary).write(b.binary.blob.data(), std::streamsize(b.binary.blob.size()));
      }
      std::lock_guard<std::mutex> lock(print_mu);
      if (!b.from_cache) {
        ++compiled;
        total_ms += b.binary.compile_ms;
        max_ms = std::max(max_ms, b.binary.compile_ms);
      }
      fmt::print("{:<42} {:<26} {:>10.0f} {:>11} {:>5} {:>6}  {}\n", name, job.config.to_string(),
                 b.binary.compile_ms, b.binary.blob.size(), b.binary.registers, b.binary.spill_bytes,
                 b.from_cache ? "cache" : "nvrtc");
      if (b.binary.spill_bytes > 0)
        log(LogLevel::Warn, fmt::format("{} {} spills {} bytes", name, job.config.to_string(), b.binary.spill_bytes));
    } catch (const Error& e) {
      ++failures;
      std::lock_guard<std::mutex> lock(print_mu);
      fmt::print(stderr, "FAILED {} {}: {}\n", name, job.config.to_string(), e.what());
    }
  });
  fmt::print("compiled {} new kernels ({} from cache, {} failed); compile time mean {:.0f} ms, max {:.0f} ms\n",
             compiled.load(), jobs.size() - size_t(compiled.load()) - size_t(failures.load()), failures.load(),
             compiled ? total_ms / compiled : 0.0, max_ms);
  return failures ? 1 : 0;
}

}  // namespace samoyeds::cli
