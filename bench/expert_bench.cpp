// Expert projection benchmark: ours (best config of the mma_sp search space
// per shape and token count) against cuBLAS dense and cuSPARSELt 2:4, all in
// the same run, CUDA-event medians over rotated inputs larger than L2.
// Writes CSV and prints a summary table; timing never decides pass/fail.
#include <algorithm>
#include <filesystem>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>

#include <fmt/format.h>

#include "tuner/cublas_baseline.hpp"
#include "tuner/cusparselt_baseline.hpp"
#include "tuner/random_fill.hpp"
#include "tuner/timing.hpp"
#include "core/cli_args.hpp"
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

struct Shape {
  const char* model;
  int64_t m, k;
  double seed_tflops_1024;  // ANCHORS.md seed kernel at n = 1024 (0 = shape unsupported there)
};
const Shape kShapes[] = {{"Mixtral-8x7B", 14336, 4096, 353},   {"Mixtral-8x22B", 16384, 6144, 406},
                         {"OpenMoE-34B", 12288, 3072, 387},    {"OpenMoE-8B", 8192, 2048, 323},
                         {"MiniCPM-MoE", 5760, 2304, 0},       {"DeepSeek/Qwen-MoE", 1408, 2048, 0}};

double tflops(int64_t m, int64_t n, int64_t k, double ms) { return 2.0 * m * n * k / (ms * 1e-3) / 1e12; }

struct Args {
  std::vector<int64_t> tokens = {64, 256, 1024, 4096};
  std::vector<DType> dtypes = {DType::f16, DType::bf16};
  std::vector<int> shapes = {0, 1, 2, 3, 4, 5};
  std::string csv = "expert_bench.csv";
  int max_configs = 1000;
  // Time only these configs, comma-separated (e.g. for ncu, or to compare a
  // few); "default": at each --tokens count, each backend's untuned default
  // for that count only (what a user gets without tuning), re-timed as the
  // best are.
  std::string config;
  SparsityParams sparsity{128, 1, 2};
  std::string cubin_dir;  // write the winners' binaries here (for cuobjdump)
  std::string configs_csv;  // every config's quick-pass time, for heuristics and the perf log
  std::vector<Backend> backends = {Backend::MmaSp, Backend::WgmmaSp};  // those the device supports
  // ssmm: the shape's up projection on gathered tokens (ids); down: its down
  // projection (m and k swapped) on compact rows with routing weights, as
  // MoeLayer runs it.
  Op op = Op::Ssmm;
  // back-to-back (default): each timed batch is enqueued behind a gate and
  // runs on the GPU back to back, so every library is timed by its kernels
  // alone; enqueued: as the host enqueues it (the times of kernels shorter
  // than a dispatch are then the host's).
  tuning::Launches launches = tuning::Launches::BackToBack;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw Error(ErrorCode::InvalidArgument, f + " needs a value");
      return argv[++i];
    };
    if (f == "--tokens") a.tokens = cli::parse_int_list(next(), "--tokens", 1);
    else if (f == "--shapes") {
      a.shapes.clear();
      for (int64_t s : cli::parse_int_list(next(), "--shapes", 0)) {
        if (s >= int64_t(std::size(kShapes)))
          throw Error(ErrorCode::InvalidArgument, fmt::format("--shapes: no shape {} (0 to {})", s, std::size(kShapes) - 1));
        a.shapes.push_back(int(s));
      }
    }
    else if (f == "--dtype") a.dtypes = {parse_dtype(next())};
    else if (f == "--csv") a.csv = next();
    else if (f == "--max-configs") a.max_configs = int(std::stoll(next()));
    else if (f == "--config") a.config = next();
    else if (f == "--dump-cubins") a.cubin_dir = next();
    else if (f == "--configs-csv") a.configs_csv = next();
    else if (f == "--rows") a.sparsity = SparsityParams::from_rows(next(), a.sparsity.V);
    else if (f == "--backend") a.backends = {parse_backend(next())};
    else if (f == "--timing") {
      const std::string t = next();
      if (t == "back-to-back") a.launches = tuning::Launches::BackToBack;
      else if (t == "enqueued") a.launches = tuning::Launches::AsEnqueued;
      else throw Error(ErrorCode::InvalidArgument, "--timing: back-to-back or enqueued, not " + t);
    }
    else if (f == "--op") {
      a.op = parse_op(next());
      if (a.op == Op::GatedUp) throw Error(ErrorCode::InvalidArgument, "--op: ssmm or down");
    }
    else throw Error(ErrorCode::InvalidArgument, "unknown argument " + f +
                     " (--tokens a,b --shapes i,j --dtype T --csv F --max-configs N --config CFG[,CFG]|default --rows N:M"
                     " --backend B --op ssmm|down --dump-cubins DIR --configs-csv F --timing back-to-back|enqueued)");
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  std::string why;
  if (!gpu_available(&why)) {
    std::fprintf(stderr, "expert_bench needs a GPU: %s\n", why.c_str());
    return 1;
  }
  Device& dev = Device::get();
  KernelRuntime rt(dev);
  CUstream stream;
  check(driver().cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  CublasBaseline cublas;
  std::string lt_why;
  auto lt = CusparseLtBaseline::create(&lt_why);
  fmt::print("device {} ({} SMs, driver {}), arch {}; cuSPARSELt: {}\n", dev.info().name, dev.info().sm_count,
             dev.info().driver_version, dev.info().arch(), lt ? "found" : "absent: " + lt_why);
  const bool back_to_back = args.launches == Launches::BackToBack && can_hold_stream();
  fmt::print("timing: {}\n", back_to_back ? "each batch back to back on the GPU (held until enqueued)"
                                           : "batches as the host enqueues them");

  std::ofstream csv(args.csv);
  csv << "model,m,k,n,dtype,ours_ms,ours_tflops,cublas_ms,cublas_tflops,cusparselt_ms,cusparselt_tflops,"
         "x_cublas,x_cusparselt,best_config,second_ms,third_ms,registers,spill_bytes,rows,instruction_tflops,"
         "backend,mma_sp_ms,wgmma_sp_ms,mma_sp_config,wgmma_sp_config,timing\n";
  std::vector<std::string> table;
  const SparsityParams sp = args.sparsity;
  std::ofstream configs_csv;
  if (!args.configs_csv.empty()) {
    configs_csv.open(args.configs_csv);
    configs_csv << "model,m,k,n,dtype,backend,config,quick_ms,x_cublas\n";
  }

  for (DType dt : args.dtypes)
    for (int si : args.shapes) {
      const Shape& sh = kShapes[si];
      const bool down = args.op == Op::Down;
      const int64_t m = down ? sh.k : sh.m, k = down ? sh.m : sh.k;
      const std::string model = fmt::format("{}{}", sh.model, down ? " down" : "");
      auto dense = random_fill(m * k, dt, 0.05f, uint64_t(m * 31 + k));
      PackedWeights packed = pack_weights(dense.data(), m, k, dt, sp);
      const int copies_sparse = rotation_copies(size_t(packed.payload_bytes()));
      std::vector<PackedExpertWeights> ws;
      for (int c = 0; c < copies_sparse; ++c) ws.push_back(PackedExpertWeights::upload(packed));
      const int copies_dense = rotation_copies(size_t(m * k * 2));
      std::vector<DeviceBuffer> wd;
      for (int c = 0; c < copies_dense; ++c) {
        wd.emplace_back(size_t(m * k * 2));
        wd.back().upload(dense.data(), size_t(m * k * 2));
      }
      KernelSpec spec;
      spec.op = args.op;
      spec.arch = dev.info().arch();
      spec.dtype = dt;
      spec.m = m;
      spec.k = k;
      spec.sparsity = sp;
      // Every backend the device supports, each with its whole search space.
      struct Candidate {
        KernelSpec spec;
        TileConfig config;
        std::vector<int64_t> default_for;  // --config default: the token counts it is the default of
      };
      std::vector<Candidate> configs;
      for (Backend b : args.backends) {
        KernelSpec bs = spec;
        bs.backend = b;
        if (args.config == "default") {
          for (int64_t n : args.tokens) {
            const TileConfig d = kernel_family(b).default_config(bs, n, dev.info().sm_count);
            auto same = std::find_if(configs.begin(), configs.end(),
                                     [&](const Candidate& c) { return c.spec.backend == b && c.config == d; });
            if (same == configs.end()) configs.push_back({bs, d, {n}});
            else same->default_for.push_back(n);
          }
          continue;
        }
        std::vector<TileConfig> cs = kernel_family(b).search_space(bs);
        if (!args.config.empty()) {
          cs.clear();
          for (const std::string& one : cli::split_list(args.config)) {
            const TileConfig only = TileConfig::parse(one);
            if (!kernel_family(b).invalid_reason(bs, only)) cs.push_back(only);
          }
        }
        if (int(cs.size()) > args.max_configs) cs.resize(size_t(args.max_configs));
        for (const auto& c : cs) configs.push_back({bs, c, {}});
      }
      if (configs.empty()) throw Error(ErrorCode::InvalidArgument, "no config to time for " + spec.to_string());
      // Compile every candidate in parallel before timing anything.
      parallel_for(configs.size(), 0, [&](size_t i) {
        dev.make_current();  // each worker thread needs the context current
        rt.get(configs[i].spec, configs[i].config);
      });
      for (int64_t n : args.tokens) {
        const int64_t batch_rows = 4 * n;
        auto x = random_fill(batch_rows * k, dt, 1.0f, uint64_t(n * 7 + k));
        std::vector<int32_t> perm(static_cast<size_t>(batch_rows));
        for (int64_t i = 0; i < batch_rows; ++i) perm[size_t(i)] = int32_t(i);
        std::shuffle(perm.begin(), perm.end(), std::mt19937(uint32_t(n)));
        std::vector<int32_t> ids(perm.begin(), perm.begin() + n);
        const std::vector<uint16_t> xg = take_rows(x.data(), k, ids);
        DeviceBuffer d_x(x.size() * 2), d_ids(ids.size() * 4), d_xg(xg.size() * 2), d_y(size_t(n * m * 2));
        d_x.upload(x.data(), x.size() * 2);
        d_ids.upload(ids.data(), ids.size() * 4);
        d_xg.upload(xg.data(), xg.size() * 2);
        std::vector<float> probs(size_t(n), 0.5f);  // the down projection's routing weights
        DeviceBuffer d_p(probs.size() * 4);
        d_p.upload(probs.data(), probs.size() * 4);

        const double cublas_ms = median_ms(stream, [&](int i) {
          cublas.gemm(stream, dt, m, n, k, wd[size_t(i % copies_dense)].data(), d_xg.data(), d_y.data());
        }, copies_dense, 7, 3, args.launches);
        double lt_ms = 0.0;
        if (lt) {
          auto plan = lt->prepare(stream, dt, m, n, k, wd[0].data(), d_xg.data(), d_y.data());
          const size_t cbytes = lt->compressed_bytes(*plan);
          const int copies_lt = rotation_copies(cbytes);
          std::vector<DeviceBuffer> cws;
          for (int c = 0; c < copies_lt; ++c) cws.emplace_back(cbytes);
          std::vector<char> host(cbytes);
          copy_to_host(host.data(), lt->compressed(*plan), cbytes);
          for (auto& c : cws) c.upload(host.data(), cbytes);
          lt_ms = median_ms(stream, [&](int i) {
            lt->matmul(stream, *plan, cws[size_t(i % copies_lt)].data(), d_xg.data(), d_y.data());
          }, copies_lt, 7, 3, args.launches);
        }
        // Ours: quick pass over every config, then the best three of each backend re-timed.
        auto time_ours = [&](const Candidate& c, int batches, int warmup) {
          LaunchOptions opt;
          opt.stream = stream;
          opt.backend = c.spec.backend;
          opt.config = c.config;
          return median_ms(stream, [&](int i) {
            if (down)  // compact rows: the gathered tokens, in order
              down_scaled(rt, ws[size_t(i % copies_sparse)], d_xg.data(), n, static_cast<const float*>(d_p.data()),
                          d_y.data(), opt);
            else if (c.config.tokens_tma)  // rows in order (as cuBLAS gets them; the copy is not timed)
              ssmm(rt, ws[size_t(i % copies_sparse)], d_xg.data(), n, nullptr, n, d_y.data(), Epilogue::None, opt);
            else
              ssmm(rt, ws[size_t(i % copies_sparse)], d_x.data(), batch_rows,
                   static_cast<const int32_t*>(d_ids.data()), n, d_y.data(), Epilogue::None, opt);
          }, copies_sparse, batches, warmup, args.launches);
        };
        std::vector<std::pair<double, Candidate>> timed;
        for (const auto& c : configs) {
          const bool defaults_only = args.config == "default";
          if (defaults_only && std::find(c.default_for.begin(), c.default_for.end(), n) == c.default_for.end())
            continue;
          if (defaults_only || c.config.block_n <= 2 * std::max<int64_t>(n, 32))
            timed.push_back({time_ours(c, 3, 2), c});
        }
        std::stable_sort(timed.begin(), timed.end(), [](auto& a, auto& b) { return a.first < b.first; });
        if (configs_csv.is_open())
          for (const auto& t : timed)
            configs_csv << fmt::format("{},{},{},{},{},{},{},{:.4f},{:.3f}\n", model, m, k, n, dtype_name(dt),
                                       backend_name(t.second.spec.backend), t.second.config.to_string(), t.first,
                                       cublas_ms / t.first);
        std::map<Backend, double> best_of;
        std::map<Backend, std::string> best_config_of;
        std::map<Backend, int> retimed;
        for (auto& t : timed) {
          const Backend b = t.second.spec.backend;
          if (retimed[b]++ >= 3) continue;
          t.first = time_ours(t.second, 9, 3);
          if (!best_of.count(b) || t.first < best_of[b]) {
            best_of[b] = t.first;
            best_config_of[b] = t.second.config.to_string();
          }
        }
        std::stable_sort(timed.begin(), timed.end(), [](auto& a, auto& b) { return a.first < b.first; });
        const size_t top = std::min<size_t>(3, timed.size());
        const double ours_ms = timed[0].first;
        const TileConfig best = timed[0].second.config;
        const KernelSpec best_spec = timed[0].second.spec;
        const LoadedKernel& bk = rt.get(best_spec, best);
        const double x_cublas = cublas_ms / ours_ms, x_lt = lt_ms > 0 ? lt_ms / ours_ms : 0.0;
        csv << fmt::format("{},{},{},{},{},{:.4f},{:.1f},{:.4f},{:.1f},{:.4f},{:.1f},{:.3f},{:.3f},{},{:.4f},{:.4f},{},{},{},{:.1f},"
                           "{},{:.4f},{:.4f},{},{},{}\n",
                           model, m, k, n, dtype_name(dt), ours_ms, tflops(m, n, k, ours_ms), cublas_ms,
                           tflops(m, n, k, cublas_ms), lt_ms, lt_ms > 0 ? tflops(m, n, k, lt_ms) : 0.0, x_cublas, x_lt,
                           best.to_string(), top > 1 ? timed[1].first : 0.0, top > 2 ? timed[2].first : 0.0,
                           bk.registers, bk.spill_bytes, fmt::format("{}:{}", sp.N, sp.M),
                           tflops(m, n, k, ours_ms) * sp.N / sp.M, backend_name(best_spec.backend),
                           best_of.count(Backend::MmaSp) ? best_of[Backend::MmaSp] : 0.0,
                           best_of.count(Backend::WgmmaSp) ? best_of[Backend::WgmmaSp] : 0.0,
                           best_config_of[Backend::MmaSp], best_config_of[Backend::WgmmaSp],
                           back_to_back ? "back-to-back" : "enqueued");
        csv.flush();
        const auto backend_x = [&](Backend b) {
          return best_of.count(b) ? fmt::format("{:.2f}x", cublas_ms / best_of[b]) : std::string("-");
        };
        table.push_back(fmt::format(
            "{:<18} {:>5}x{:<5} {:>5} {:<4} {:>7.1f} {:>7.1f} {:>7.1f} {:>6.2f}x {:>6.2f}x | mma_sp {} wgmma_sp {} | {} {}",
            model, m, k, n, dtype_name(dt), tflops(m, n, k, ours_ms), tflops(m, n, k, cublas_ms),
            lt_ms > 0 ? tflops(m, n, k, lt_ms) : 0.0, x_cublas, x_lt, backend_x(Backend::MmaSp),
            backend_x(Backend::WgmmaSp), backend_name(best_spec.backend), best.to_string()));
        fmt::print("{}\n", table.back());
        std::fflush(stdout);
        if (!args.cubin_dir.empty()) {
          // The winner's binary, from the cache the runtime just filled.
          SqliteStore store(default_cache_path());
          BinaryCache cache(store);
          const BuiltKernel built = build_kernel(best_spec, best, &cache);
          std::filesystem::create_directories(args.cubin_dir);
          const std::string file =
              fmt::format("{}/{}_{}_{}_{}.cubin", args.cubin_dir, op_name(args.op), backend_name(best_spec.backend),
                          dtype_name(dt), best.to_string());
          std::ofstream(file, std::ios::binary)
              .write(built.binary.blob.data(), std::streamsize(built.binary.blob.size()));
        }
      }
    }

  // Warm dispatch: host time of one ssmm() call once its kernel is loaded.
  {
    const Shape& sh = kShapes[5];
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
