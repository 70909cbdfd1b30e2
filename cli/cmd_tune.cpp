// samoyeds tune: tune a model's expert kernels (or a YAML sweep) on this GPU
// and write the winners into the cache file.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include <fmt/format.h>

#include "cache/record_store.hpp"
#include "cli/cli_options.hpp"
#include "cli/progress.hpp"
#include "cli/tune_fleet.hpp"
#include "cli/work_counter.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/op_runner.hpp"

namespace samoyeds::cli {
namespace {

// A bar on a terminal, a line per tenth elsewhere (logs stay short).
// bars false: lines only (workers of --gpus share the terminal).
TuneLog progress_log(const std::string& label, bool bars) {
  TuneLog log;
  const bool tty = bars && isatty(fileno(stderr));
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
    } else if (at_a_tenth(done, total)) {
      std::fprintf(stderr, "%s %s %d/%d (%d%%), %s\n", label.c_str(), phase.c_str(), done, total, done * 100 / total,
                   eta_text(secs, done, total).c_str());
    }
  };
  return log;
}

}  // namespace

int cmd_tune(const std::vector<std::string>& argv) {
  CLI::App app("Tune a model's (or a YAML sweep's) expert kernels on this GPU into the cache.", "samoyeds tune");
  std::string model_arg, sweep_path, dtype_arg = "bf16", rows = "1:2", cache_path = default_cache_path(), csv_path;
  int segment = 128, max_configs = 0, jobs = 0;
  std::vector<int64_t> buckets;
  auto* model_opt = app.add_option("--model", model_arg, model_option_help());
  auto* sweep_opt = app.add_option("--sweep", sweep_path,
                                   "a YAML sweep: models, dtypes, ops, buckets, rows, segment, max_configs "
                                   "(model paths relative to the sweep's folder)");
  model_opt->excludes(sweep_opt);
  auto* dtype_opt = app.add_option("--dtype", dtype_arg, "f16, bf16 or all (with --model)")->capture_default_str();
  auto* buckets_opt = add_int_list(app, "--buckets", buckets, "token buckets, e.g. 1,2,4,8 (default 1,2,4,...,8192)",
                                   1, int64_t(1) << 20);
  auto* rows_opt = app.add_option("--rows", rows, "row pattern N:M (with --model)")->capture_default_str();
  auto* segment_opt = app.add_option("--segment", segment, "segment length (with --model)")->capture_default_str();
  auto* max_opt = app.add_option("--max-configs", max_configs, "tune only the first N configs of the search space")
                      ->check(CLI::Range(1, 1 << 30));
  auto* jobs_opt = app.add_option("--jobs", jobs, "parallel compiles (default: hardware threads)")
                       ->check(CLI::Range(1, 4096));
  app.add_option("--timings-csv", csv_path, "every candidate's time per bucket (what the winners beat)");
  std::string gpus_arg, worker_queue;
  auto* gpus_opt = app.add_option("--gpus", gpus_arg,
                                  "all or ordinals 0,1,...: one worker process per GPU, each taking the next "
                                  "projection, all into one cache (GPUs of one type)");
  // A worker of --gpus: takes projections from the counter in FILE (cli/tune_fleet.hpp).
  app.add_option("--worker-queue", worker_queue)->group("");
  app.add_option("--cache", cache_path, "cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)");
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;
  if (model_opt->count() == sweep_opt->count())
    throw Error(ErrorCode::InvalidArgument, "give exactly one of --model and --sweep");
  if (sweep_opt->count())
    for (const CLI::Option* o : {dtype_opt, rows_opt, segment_opt})
      if (o->count())
        throw Error(ErrorCode::InvalidArgument, o->get_name() + " goes with --model; a sweep names its own");
  if (buckets_opt->count() && buckets.empty()) throw Error(ErrorCode::InvalidArgument, "--buckets is empty");

  TuningSweep sweep;
  if (sweep_opt->count()) {
    sweep = load_sweep(sweep_path);
  } else {
    sweep.models = {load_model(model_arg)};
    sweep.dtypes = dtype_arg == "all" ? std::vector<DType>{DType::f16, DType::bf16}
                                      : std::vector<DType>{parse_dtype(dtype_arg)};
    sweep.sparsity = SparsityParams::from_rows(rows, segment);
  }
  if (buckets_opt->count()) {
    std::sort(buckets.begin(), buckets.end());
    buckets.erase(std::unique(buckets.begin(), buckets.end()), buckets.end());
    sweep.buckets = buckets;
  }
  if (sweep.buckets.empty()) sweep.buckets = default_token_buckets();
  if (max_opt->count()) sweep.max_configs = max_configs;

  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "tuning needs a GPU: " + why);
  if (!worker_queue.empty()) become_worker();
  SqliteStore db(cache_path);
  if (db.read_only()) throw Error(ErrorCode::CacheError, "cache file '" + cache_path + "' is read-only");
  if (gpus_opt->count() && worker_queue.empty()) {
    if (!csv_path.empty())
      throw Error(ErrorCode::InvalidArgument, "--timings-csv goes without --gpus (the workers would share the file)");
    const std::vector<int> gpus = parse_gpu_list(gpus_arg);
    // The machine's compile threads shared out, unless --jobs says otherwise.
    const int hw = std::max(1, int(std::thread::hardware_concurrency()));
    return run_tune_fleet(argv, gpus, cache_path, jobs_opt->count() ? jobs : std::max(1, hw / int(gpus.size())));
  }
  KernelRuntime rt(Device::get(), cache_path);
  RecordStore records(db);
  TuneOptions opt;
  opt.buckets = sweep.buckets;
  opt.max_configs = sweep.max_configs;
  if (jobs_opt->count()) opt.jobs = jobs;

  std::unique_ptr<std::FILE, int (*)(std::FILE*)> timings(nullptr, &std::fclose);
  if (!csv_path.empty()) {
    timings.reset(std::fopen(csv_path.c_str(), "w"));
    if (!timings) throw Error(ErrorCode::IoError, "--timings-csv: cannot write '" + csv_path + "'");
    std::fprintf(timings.get(), "model,op,dtype,m,k,grouped,bucket,backend,config,ms\n");
  }
  const auto start = std::chrono::steady_clock::now();
  fmt::print("tuning on {} into {}\n", current_fingerprint(rt.device().info().ordinal).to_string(), cache_path);
  // The projections to tune, in order: each model's, per dtype. A worker
  // of --gpus takes the next from the shared counter; others take them all.
  struct Projection {
    size_t model;
    KernelSpec spec;
  };
  std::vector<Projection> units;
  for (size_t m = 0; m < sweep.models.size(); ++m)
    for (DType dt : sweep.dtypes)
      for (const KernelSpec& spec0 : model_expert_specs(sweep.models[m], rt.device().info().arch(), dt, sweep.sparsity)) {
        // The shared experts' single launches (experts = 1, after the routed
        // ones) belong to the projection they stand in: "down" covers their
        // plain ssmm down-projection.
        bool wanted = false;
        for (Op op : sweep.ops) wanted |= op == spec0.op || (op == Op::Down && spec0.op == Op::Ssmm);
        if (wanted) units.push_back({m, spec0});
      }
  std::optional<WorkCounter> counter;
  if (!worker_queue.empty()) counter.emplace(worker_queue);
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string worker_name = fmt::format("[gpu {}] ", visible ? visible : "0");
  int tuned = 0;
  std::unique_ptr<OpRunner> runner;
  size_t runner_model = SIZE_MAX;
  size_t in_order = 0;
  auto next_unit = [&] { return counter ? size_t(counter->next()) : in_order++; };
  for (size_t u = next_unit(); u < units.size(); u = next_unit()) {
    const ModelPreset& model = sweep.models[units[u].model];
    const KernelSpec& spec0 = units[u].spec;
    // The routed experts are tuned grouped, on routings of the model's top-k.
    if (runner_model != units[u].model) {
      runner = std::make_unique<OpRunner>(rt, sweep.buckets.back(), model.top_k);
      runner_model = units[u].model;
    }
    const bool shared = !spec0.grouped && model.shared_experts > 0;
    const std::string label = fmt::format("{}{} {}{} {} {}x{}", counter ? worker_name : "", model.name,
                                          shared ? "shared " : "", op_name(spec0.op), dtype_name(spec0.dtype), spec0.m,
                                          spec0.k);
    TuneLog log = progress_log(label, !counter);
    if (timings)
      log.timed = [&](const KernelSpec& s, const TileConfig& c, int64_t bucket, double ms) {
        std::fprintf(timings.get(), "%s,%s,%s,%lld,%lld,%d,%lld,%s,%s,%.5f\n", model.name.c_str(), op_name(s.op),
                     dtype_name(s.dtype), (long long)s.m, (long long)s.k, s.grouped ? 1 : 0, (long long)bucket,
                     backend_name(s.backend), c.to_string().c_str(), ms);
      };
    const TuneReport rep = tune_spec(spec0, *runner, &records, opt, log);
    fmt::print("{}: {} candidates, {} failed to compile, {} wrong; {} buckets in {:.1f} s\n", label, rep.candidates,
               rep.compile_failures, rep.wrong_answers, rep.records.size(), rep.seconds);
    for (const auto& r : rep.records)
      fmt::print("  bucket {:>5}: {:<35} {:>9.4f} ms  {:.2f}x cuBLAS\n", r.key.bucket,
                 fmt::format("{}/{}", backend_name(r.backend), r.config.to_string()), r.time_ms,
                 r.baseline_ms / r.time_ms);
    ++tuned;
  }
  fmt::print("tuned {} kernels in {:.1f} s\n", tuned,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return 0;
}

}  // namespace samoyeds::cli
