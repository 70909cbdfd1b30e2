// Expert projection benchmark: ours (the best verified config of each
// backend's search space per model shape and token count, found by the
// tuner's loop) against cuBLAS dense and cuSPARSELt 2:4, all in the same run
// on the same data (tuner/op_runner.hpp). Shapes come from the model
// presets. Writes CSV and prints a summary table; timing never decides
// pass/fail.
#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include <fmt/format.h>

#include "tuner/autotuner.hpp"
#include "tuner/op_runner.hpp"
#include "tuner/random_fill.hpp"
#include "tuner/timing.hpp"
#include "samoyeds/model_preset.hpp"
#include <CLI/CLI.hpp>
#include <sstream>
#include "backends/backend.hpp"
#include "core/cuda_driver.hpp"
#include "runtime/kernel_builder.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "samoyeds/reference.hpp"
#include "templates/kernel_args.cuh"

using namespace samoyeds;
using namespace samoyeds::tuning;

namespace {


double tflops(int64_t m, int64_t n, int64_t k, double ms) { return 2.0 * m * n * k / (ms * 1e-3) / 1e12; }

struct Args {
  std::vector<int64_t> tokens = {64, 256, 1024, 4096};
  std::vector<DType> dtypes = {DType::f16, DType::bf16};
  // The six model shapes of ANCHORS.md (their up projections), from the presets.
  std::vector<std::string> models = {"mixtral-8x7b", "mixtral-8x22b",    "openmoe-34b",
                                     "openmoe-8b",   "minicpm-moe-8x2b", "deepseek-moe-16b"};
  std::string csv = "expert_bench.csv";
  int max_configs = 1000;
  // Time only these configs, comma-separated (e.g. for ncu, or to compare a
  // few); "default": at each --tokens count, each backend's untuned default
  // for that count only (what a user gets without tuning).
  std::string config;
  SparsityParams sparsity{128, 1, 2};
  std::string cubin_dir;  // write the winners' binaries here (for cuobjdump)
  std::string configs_csv;  // every config's quick-pass time, for heuristics and the perf log
  std::vector<Backend> backends = all_backends();  // those the device supports
  // ssmm: the model's up projection on gathered tokens (ids); down: its down
  // projection (m and k swapped) on compact rows with routing weights, as
  // MoeLayer runs it.
  Op op = Op::Ssmm;
};

// Returns the exit code when the run should stop here (help, usage error).
int parse(int argc, char** argv, Args& a) {
  CLI::App app("Times every candidate config of each model's expert shape against cuBLAS.", "expert_bench");
  std::string dtype, rows, backend, op;
  app.add_option("--tokens", a.tokens, "token counts a,b,...")->delimiter(',')->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  app.add_option("--model", a.models, "preset names or files NAME[,NAME]")->delimiter(',');
  app.add_option("--dtype", dtype, "f16 or bf16 (default both)");
  app.add_option("--csv", a.csv, "results file")->capture_default_str();
  app.add_option("--max-configs", a.max_configs, "configs per shape")->check(CLI::Range(1, 1 << 30))->capture_default_str();
  app.add_option("--config", a.config, "time only CFG[,CFG] or 'default'");
  app.add_option("--dump-cubins", a.cubin_dir, "write the winners' binaries to DIR");
  app.add_option("--configs-csv", a.configs_csv, "every config's quick-pass time");
  app.add_option("--rows", rows, "row pattern N:M (default 1:2)");
  app.add_option("--backend", backend, "one backend only");
  app.add_option("--op", op, "ssmm or down (default ssmm)")->check(CLI::IsMember({"ssmm", "down"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // help on stdout, errors on stderr
  }
  if (a.tokens.empty() || a.models.empty()) throw Error(ErrorCode::InvalidArgument, "--tokens and --model need values");
  if (!dtype.empty()) a.dtypes = {parse_dtype(dtype)};
  if (!rows.empty()) a.sparsity = SparsityParams::from_rows(rows, a.sparsity.V);
  if (!backend.empty()) a.backends = {parse_backend(backend)};
  if (!op.empty()) a.op = parse_op(op);
  return -1;
}

}  // namespace

int main(int argc, char** argv) try {
  Args parsed;
  if (const int rc = parse(argc, argv, parsed); rc >= 0) return rc;
  const Args& args = parsed;
  std::string why;
  if (!gpu_available(&why)) {
    std::fprintf(stderr, "expert_bench needs a GPU: %s\n", why.c_str());
    return 1;
  }
  Device& dev = Device::get();
  KernelRuntime rt(dev);
  CUstream stream;
  check(driver().cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  int64_t max_tokens = 1;
  for (int64_t n : args.tokens) max_tokens = std::max(max_tokens, n);
  // The op runner the tuner uses: candidates verified against the float64
  // reference, then timed with cuBLAS and cuSPARSELt on the same data.
  OpRunner runner(rt, max_tokens);
  fmt::print("device {} ({} SMs, driver {}), arch {}\n", dev.info().name, dev.info().sm_count,
             dev.info().driver_version, dev.info().arch());
  // The runner holds each timed batch until it is enqueued where the driver
  // allows it (tuner/timing.hpp); otherwise batches run as enqueued.
  const char* timing = can_hold_stream() ? "back-to-back" : "enqueued";
  fmt::print("timing: {} (weights rotated past L2)\n", timing);

  std::ofstream csv(args.csv);
  csv << "model,m,k,n,dtype,ours_ms,ours_tflops,cublas_ms,cublas_tflops,cusparselt_ms,cusparselt_tflops,"
         "x_cublas,x_cusparselt,best_config,second_ms,third_ms,registers,spill_bytes,rows,instruction_tflops,"
         "backend";
  for (Backend b : all_backends()) csv << "," << backend_name(b) << "_ms";
  for (Backend b : all_backends()) csv << "," << backend_name(b) << "_config";
  csv << ",timing\n";
  std::vector<std::string> table;
  const SparsityParams sp = args.sparsity;
  std::ofstream configs_csv;
  if (!args.configs_csv.empty()) {
    configs_csv.open(args.configs_csv);
    configs_csv << "model,m,k,n,dtype,backend,config,quick_ms,x_cublas\n";
  }
  std::string lt_absent;

  for (DType dt : args.dtypes)
    for (const std::string& name : args.models) {
      const ModelPreset preset = load_model(name);
      const bool down = args.op == Op::Down;
      const int64_t m = down ? preset.hidden_size : preset.ffn_size, k = down ? preset.ffn_size : preset.hidden_size;
      const std::string model = fmt::format("{}{}", preset.display_name, down ? " down" : "");
      KernelSpec spec;
      spec.op = args.op;
      spec.arch = dev.info().arch();
      spec.dtype = dt;
      spec.m = m;
      spec.k = k;
      spec.sparsity = sp;
      TuneOptions opt;
      opt.buckets = args.tokens;
      opt.backends = args.backends;
      opt.max_configs = args.max_configs;
      if (args.config == "default") opt.candidates = TuneOptions::Candidates::Defaults;
      else if (!args.config.empty()) {
        opt.candidates = TuneOptions::Candidates::Named;
        std::stringstream names(args.config);
        for (std::string name; std::getline(names, name, ',');) opt.named.push_back(name);
      }
      TuneLog log;
      std::map<std::pair<std::string, int64_t>, double> quick;  // (backend/config, n) -> quick-pass ms
      log.timed = [&](const KernelSpec& c, const TileConfig& cfg, int64_t n, double ms) {
        quick[{fmt::format("{},{}", backend_name(c.backend), cfg.to_string()), n}] = ms;
      };
      log.line = [](const std::string& l) {
        if (l.rfind("skip", 0) == 0) fmt::print("  {}\n", l);
      };
      // The tuner's one loop: compile, verify, time, re-time the best of each backend.
      TuneReport rep;
      try {
        rep = tune_spec(spec, runner, nullptr, opt, log);
      } catch (const Error& e) {  // one shape without a usable candidate does not end the run
        fmt::print("{} {}: {}\n", model, dtype_name(dt), e.what());
        runner.release(spec);
        continue;
      }
      for (size_t bi = 0; bi < rep.records.size(); ++bi) {
        const int64_t n = rep.records[bi].key.bucket;
        const std::vector<TimedCandidate>& timed = rep.timed[bi];
        const double cublas_ms = rep.records[bi].baseline_ms;
        const double lt_ms = std::max(0.0, runner.cusparselt_ms(spec, n, &lt_absent));
        if (configs_csv.is_open())
          for (const auto& [key, ms] : quick)
            if (key.second == n)
              configs_csv << fmt::format("{},{},{},{},{},{},{:.4f},{:.3f}\n", model, m, k, n, dtype_name(dt),
                                         key.first, ms, cublas_ms / ms);
        // Each backend's best is reported: its output is checked at this
        // token count on this shape (the winner's was, by the tuner) and it
        // is timed once more after the choice, so that its figure is one
        // median like cuBLAS's, not the least of several candidates' medians.
        std::map<Backend, TimedCandidate> best_of;
        for (const auto& t : timed) {
          if (best_of.count(t.spec.backend)) continue;
          std::string path, why;
          if (&t != &timed[0] && !runner.verify_at_bucket(t.spec, t.config, n, &path, &why)) {
            fmt::print("  {} {} at {} tokens: wrong output on this shape, not reported: {}\n",
                       backend_name(t.spec.backend), t.config.to_string(), n, why);
            continue;
          }
          best_of[t.spec.backend] = {t.spec, t.config, runner.time_ms(t.spec, t.config, n)};
        }
        const TimedCandidate& best = best_of.at(timed[0].spec.backend);
        const double ours_ms = best.ms;
        const LoadedKernel& bk = rt.get(best.spec, best.config);
        const double x_cublas = cublas_ms / ours_ms, x_lt = lt_ms > 0 ? lt_ms / ours_ms : 0.0;
        const auto ms_of = [&](Backend b) { return best_of.count(b) ? best_of[b].ms : 0.0; };
        const auto config_of = [&](Backend b) { return best_of.count(b) ? best_of[b].config.to_string() : ""; };
        csv << fmt::format("{},{},{},{},{},{:.4f},{:.1f},{:.4f},{:.1f},{:.4f},{:.1f},{:.3f},{:.3f},{},{:.4f},{:.4f},{},{},{},{:.1f},"
                           "{}",
                           model, m, k, n, dtype_name(dt), ours_ms, tflops(m, n, k, ours_ms), cublas_ms,
                           tflops(m, n, k, cublas_ms), lt_ms, lt_ms > 0 ? tflops(m, n, k, lt_ms) : 0.0, x_cublas, x_lt,
                           best.config.to_string(), timed.size() > 1 ? timed[1].ms : 0.0,
                           timed.size() > 2 ? timed[2].ms : 0.0, bk.registers, bk.spill_bytes,
                           fmt::format("{}:{}", sp.N, sp.M), tflops(m, n, k, ours_ms) * sp.N / sp.M,
                           backend_name(best.spec.backend));
        for (Backend b : all_backends()) csv << fmt::format(",{:.4f}", ms_of(b));
        for (Backend b : all_backends()) csv << "," << config_of(b);
        csv << "," << timing << "\n";
        csv.flush();
        const auto backend_x = [&](Backend b) {
          return best_of.count(b) ? fmt::format("{:.2f}x", cublas_ms / best_of[b].ms) : std::string("-");
        };
        std::string per_backend;
        for (Backend b : all_backends()) per_backend += fmt::format(" {} {}", backend_name(b), backend_x(b));
        table.push_back(fmt::format("{:<18} {:>5}x{:<5} {:>5} {:<4} {:>7.1f} {:>7.1f} {:>7.1f} {:>6.2f}x {:>6.2f}x |{} | {} {}",
                                    model, m, k, n, dtype_name(dt), tflops(m, n, k, ours_ms), tflops(m, n, k, cublas_ms),
                                    lt_ms > 0 ? tflops(m, n, k, lt_ms) : 0.0, x_cublas, x_lt, per_backend,
                                    backend_name(best.spec.backend), best.config.to_string()));
        fmt::print("{}\n", table.back());
        std::fflush(stdout);
        if (!args.cubin_dir.empty()) {
          // The winner's binary, from the cache the runtime just filled.
          SqliteStore store(default_cache_path());
          BinaryCache cache(store);
          const BuiltKernel built = build_kernel(best.spec, best.config, &cache);
          std::filesystem::create_directories(args.cubin_dir);
          const std::string file =
              fmt::format("{}/{}_{}_{}_{}.cubin", args.cubin_dir, op_name(args.op), backend_name(best.spec.backend),
                          dtype_name(dt), best.config.to_string());
          std::ofstream(file, std::ios::binary)
              .write(built.binary.blob.data(), std::streamsize(built.binary.blob.size()));
        }
      }
      runner.release(spec);
    }
  if (!lt_absent.empty()) fmt::print("cuSPARSELt not measured where 0: {}\n", lt_absent);

  // Warm dispatch: host time of one ssmm() call once its kernel is loaded.
  {
    const ModelPreset small = load_model("deepseek-moe-16b");
    const struct {
      int64_t m, k;
    } sh{small.ffn_size, small.hidden_size};
    auto dense = random_fill(sh.m * sh.k, DType::bf16, 0.05f, 3);
    auto w = PackedExpertWeights::pack(dense.data(), sh.m, sh.k, DType::bf16, sp);
    DeviceBuffer d_x(size_t(64 * sh.k * 2)), d_y(size_t(64 * sh.m * 2));
    LaunchOptions opt;
    opt.stream = stream;
    ssmm(rt, w, d_x.data(), 64, nullptr, 64, d_y.data(), Epilogue::None, opt);
    check(driver().cuStreamSynchronize(stream), "sync");
    // Host time per call in bursts of 100 launches from an idle stream: a
    // burst stays below the launch queue's depth, so the host never waits
    // for the GPU (2000 back-to-back launches measured the kernel instead).
    const int calls = 100, bursts = 15;
    auto burst_median_us = [&](const std::function<void()>& one) {
      std::vector<double> us;
      for (int b = 0; b < bursts; ++b) {
        check(driver().cuStreamSynchronize(stream), "sync");
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < calls; ++i) one();
        const auto t1 = std::chrono::steady_clock::now();
        us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / calls);
      }
      check(driver().cuStreamSynchronize(stream), "sync");
      std::sort(us.begin(), us.end());
      return us[us.size() / 2];
    };
    const double op_us = burst_median_us(
        [&] { ssmm(rt, w, d_x.data(), 64, nullptr, 64, d_y.data(), Epilogue::None, opt); });
    // The same kernel through cuLaunchKernel alone: what the driver costs.
    KernelSpec ks;
    ks.op = Op::Ssmm;
    ks.dtype = DType::bf16;
    ks.m = sh.m;
    ks.k = sh.k;
    ks.sparsity = sp;
    const TileConfig kc = kernel_family(Backend::MmaSp).default_config(ks, 64, kReferenceSmCount);
    const LoadedKernel& lk = rt.get(ks, kc);
    SsmmArgs a{};
    a.values[0] = a.values[1] = static_cast<const unsigned short*>(w.values());
    a.meta[0] = a.meta[1] = static_cast<const unsigned int*>(w.meta());
    a.sel[0] = a.sel[1] = static_cast<const unsigned char*>(w.sel());
    a.x = static_cast<const unsigned short*>(d_x.data());
    a.y = static_cast<unsigned short*>(d_y.data());
    a.m = int(sh.m), a.k = int(sh.k), a.n = 64, a.x_rows = 64, a.ldx = int(sh.k), a.ldy = int(sh.m);
    a.rows_pad = int(w.rows_pad()), a.k_phys = int(w.k_phys());
    void* params[] = {&a};
    const unsigned gx = unsigned((w.rows() + kc.block_m - 1) / kc.block_m), gy = unsigned((64 + kc.block_n - 1) / kc.block_n);
    const double raw_us = burst_median_us([&] {
      check(driver().cuLaunchKernel(static_cast<CUfunction>(lk.function), gx, gy, 1, unsigned(lk.threads), 1, 1,
                                    unsigned(lk.smem_bytes), stream, params, nullptr),
            "launch");
    });
    fmt::print("warm dispatch: {:.2f} us host time per ssmm() call, cuLaunchKernel alone {:.2f} us "
               "(medians of {} bursts of {} calls)\n",
               op_us, raw_us, bursts, calls);
  }
  fmt::print("\n{:<18} {:>11} {:>5} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7} {}\n", "model", "m x k", "n", "type", "ours",
             "cuBLAS", "cuSPLt", "/cuBLAS", "/cuSPLt",
             "| best of each backend /cuBLAS | winner (effective TFLOP/s)");
  for (const auto& t : table) fmt::print("{}\n", t);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "expert_bench: %s\n", e.what());
  return 1;
}
