// samoyeds tune: tune a model's expert kernels (or a YAML sweep) on this GPU
// and write the winners into the cache file.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>

#include <fmt/format.h>

#include "cache/record_store.hpp"
#include "core/cli_args.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/op_runner.hpp"

namespace samoyeds::cli {
namespace {

const char* kHelp =
    "usage: samoyeds tune (--model NAME|FILE | --sweep FILE.yaml) [options]\n"
    "  --model NAME|FILE   preset, preset-style YAML or Hugging Face config.json\n"
    "  --sweep FILE.yaml   models, dtypes, ops, buckets, rows, segment, max_configs\n"
    "  --dtype T           f16, bf16 or all (default bf16; with --model)\n"
    "  --buckets LIST      token buckets, e.g. 1,2,4,8 (default 1,2,4,...,8192)\n"
    "  --rows N:M          row pattern (default 1:2)   --segment V (default 128)\n"
    "  --max-configs N     tune only the first N configs of the search space\n"
    "  --jobs N            parallel compiles (default: hardware threads)\n"
    "  --timings-csv FILE  every candidate's time per bucket (what the winners beat)\n"
    "  --cache FILE        cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)\n";

// A bar on a terminal, a line per quarter elsewhere (logs stay short).
TuneLog progress_log(const std::string& label) {
  TuneLog log;
  const bool tty = isatty(fileno(stderr));
  auto start = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto last_phase = std::make_shared<std::string>();
  log.line = [tty](const std::string& l) { std::fprintf(stderr, "%s%s\n", tty ? "\r\033[K" : "", l.c_str()); };
  log.progress = [=](const std::string& phase, int done, int total) {
    if (phase != *last_phase) {
      *last_phase = phase;
      *start = std::chrono::steady_clock::now();
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - *start).count();
    const double eta = done > 0 ? secs / done * (total - done) : 0.0;
    if (tty) {
      const int width = 30, fill = total ? done * width / total : width;
      std::fprintf(stderr, "\r\033[K%s %-7s [%s%s] %d/%d ETA %.0fs", label.c_str(), phase.c_str(),
                   std::string(size_t(fill), '#').c_str(), std::string(size_t(width - fill), '.').c_str(), done,
                   total, eta);
      if (done == total) std::fputc('\n', stderr);
    } else if (done == total || (total >= 4 && done % (total / 4) == 0)) {
      std::fprintf(stderr, "%s %s %d/%d (ETA %.0fs)\n", label.c_str(), phase.c_str(), done, total, eta);
    }
  };
  return log;
}

}  // namespace

int cmd_tune(const std::vector<std::string>& argv) {
  if (print_help_if_asked(argv, kHelp)) return 0;
  Args args(argv, {"--model", "--sweep", "--dtype", "--buckets", "--rows", "--segment", "--max-configs", "--jobs",
                   "--cache", "--timings-csv"},
            {});
  if (args.has("--model") == args.has("--sweep"))
    throw Error(ErrorCode::InvalidArgument, "give exactly one of --model and --sweep");
  TuningSweep sweep;
  if (args.has("--sweep")) {
    sweep = load_sweep(args.get("--sweep", ""));
  } else {
    sweep.models = {load_model(args.get("--model", ""))};
    const std::string dt = args.get("--dtype", "bf16");
    sweep.dtypes = dt == "all" ? std::vector<DType>{DType::f16, DType::bf16} : std::vector<DType>{parse_dtype(dt)};
    sweep.sparsity = SparsityParams::from_rows(args.get("--rows", "1:2"), std::stoi(args.get("--segment", "128")));
  }
  if (args.has("--buckets")) sweep.buckets = parse_int_list(args.get("--buckets", ""), "--buckets", 1);
  if (sweep.buckets.empty()) sweep.buckets = default_token_buckets();
  if (args.has("--max-configs")) sweep.max_configs = std::stoi(args.get("--max-configs", "0"));

  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "tuning needs a GPU: " + why);
  const std::string cache_path = args.get("--cache", default_cache_path());
  KernelRuntime rt(Device::get(), cache_path);
  SqliteStore db(cache_path);
  if (db.read_only()) throw Error(ErrorCode::CacheError, "cache file '" + cache_path + "' is read-only");
  RecordStore records(db);
  TuneOptions opt;
  opt.buckets = sweep.buckets;
  opt.max_configs = sweep.max_configs;
  if (args.has("--jobs")) opt.jobs = std::stoi(args.get("--jobs", "0"));

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> timings(nullptr, &std::fclose);
  if (args.has("--timings-csv")) {
    const std::string path = args.get("--timings-csv", "");
    timings.reset(std::fopen(path.c_str(), "w"));
    if (!timings) throw Error(ErrorCode::InvalidArgument, "cannot write --timings-csv file '" + path + "'");
    std::fprintf(timings.get(), "model,op,dtype,m,k,grouped,bucket,backend,config,ms\n");
  }
  const auto start = std::chrono::steady_clock::now();
  fmt::print("tuning on {} into {}\n", current_fingerprint(rt.device().info().ordinal).to_string(), cache_path);
  int tuned = 0;
  for (const auto& model : sweep.models) {
    // The routed experts are tuned grouped, on routings of the model's top-k.
    OpRunner runner(rt, sweep.buckets.back(), model.top_k);
    for (DType dt : sweep.dtypes)
      for (const KernelSpec& spec0 : model_expert_specs(model, rt.device().info().arch(), dt, sweep.sparsity)) {
        // The shared experts' single launches (experts = 1, after the routed
        // ones) belong to the projection they stand in: "down" covers their
        // plain ssmm down-projection.
        const bool shared = !spec0.grouped && model.shared_experts > 0;
        bool wanted = false;
        for (Op op : sweep.ops) wanted |= op == spec0.op || (op == Op::Down && spec0.op == Op::Ssmm);
        if (!wanted) continue;
        const std::string label = fmt::format("{} {}{} {} {}x{}", model.name, shared ? "shared " : "",
                                              op_name(spec0.op), dtype_name(dt), spec0.m, spec0.k);
        TuneLog log = progress_log(label);
        if (timings)
          log.timed = [&](const KernelSpec& s, const TileConfig& c, int64_t bucket, double ms) {
            std::fprintf(timings.get(), "%s,%s,%s,%lld,%lld,%d,%lld,%s,%s,%.5f\n", model.name.c_str(), op_name(s.op),
                         dtype_name(s.dtype), (long long)s.m, (long long)s.k, s.grouped ? 1 : 0, (long long)bucket,
                         backend_name(s.backend), c.to_string().c_str(), ms);
          };
        const TuneReport rep = tune_spec(spec0, runner, &records, opt, log);
        fmt::print("{}: {} candidates, {} failed to compile, {} wrong; {} buckets in {:.1f} s\n", label,
                   rep.candidates, rep.compile_failures, rep.wrong_answers, rep.records.size(), rep.seconds);
        for (const auto& r : rep.records)
          fmt::print("  bucket {:>5}: {:<35} {:>9.4f} ms  {:.2f}x cuBLAS\n", r.key.bucket, fmt::format("{}/{}", backend_name(r.backend), r.config.to_string()),
                     r.time_ms, r.baseline_ms / r.time_ms);
        ++tuned;
      }
  }
  fmt::print("tuned {} kernels in {:.1f} s\n", tuned,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace samoyeds::cli
