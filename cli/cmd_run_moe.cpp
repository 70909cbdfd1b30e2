// samoyeds run-moe: a whole MoE layer with random weights: build it once,
// then for each token count run it, check sampled tokens against the float64
// reference of the pruned weights, and time it against dense cuBLAS baselines
// on the same routing (measured in the same process).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "cli/cli_options.hpp"
#include "core/cuda_driver.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "samoyeds/moe_layer.hpp"
#include "samoyeds/moe_reference.hpp"
#include "tuner/dense_moe_baseline.hpp"
#include "tuner/random_fill.hpp"
#include "tuner/timing.hpp"

namespace samoyeds::cli {
namespace {

// What the layer with FP8 routed experts may differ from the float64 bf16
// layer on the same pruned weights: its quantization alone is ~6% there
// (bench/fp8_accuracy, docs/fp8.md); a wrong kernel is off by far more.
constexpr double kFp8LayerLimit = 0.1;

// One expert's host weights: dense (what the layer and cuBLAS get) and pruned
// (decoded from the same deterministic packing: what the reference uses).
struct HostExpert {
  int64_t ffn = 0;
  std::vector<uint16_t> w[3], pruned[3];  // gate [ffn, H], up [ffn, H], down [H, ffn]
  std::vector<uint16_t> b[3];             // gpt-oss's biases: gate, up [ffn], down [H]; else empty
  DenseExpert dense() const {
    DenseExpert d{w[0].data(), w[1].data(), w[2].data(), ffn};
    if (!b[0].empty()) d.b1 = b[0].data(), d.b3 = b[1].data(), d.b2 = b[2].data();
    return d;
  }
};

// Fills and decodes every matrix on all cores (a Mixtral layer is 24 matrices
// of 59M values; serially this took about a minute).
std::vector<HostExpert> random_experts(int count, int64_t ffn, int64_t hidden, DType dt, const SparsityParams& sp,
                                       uint64_t seed, bool biases = false) {
  std::vector<HostExpert> ex(static_cast<size_t>(count));
  parallel_for(3 * size_t(count), 0, [&](size_t i) {
    HostExpert& e = ex[i / 3];
    const int which = int(i % 3);
    const int64_t rows = which == 2 ? hidden : ffn, cols = which == 2 ? ffn : hidden;
    e.ffn = ffn;
    e.w[which] = tuning::random_fill(rows * cols, dt, 0.03f, seed + i);
    e.pruned[which] = decode_weights(pack_weights(e.w[which].data(), rows, cols, dt, sp));
    if (biases) e.b[which] = tuning::random_fill(rows, dt, 0.5f, seed + 7919 + i);
  });
  return ex;
}

// One token through one expert's pruned weights (and biases), in float64.
void add_expert_row(const HostExpert& e, DType dt, int64_t hidden, const uint16_t* x, double scale,
                    const ExpertActivation& act, std::vector<double>& y) {
  const bool biased = !e.b[0].empty();
  auto bias = [&](int which, int64_t i) { return biased ? double(to_float(dt, e.b[which][size_t(i)])) : 0.0; };
  std::vector<double> h(static_cast<size_t>(e.ffn));
  for (int64_t i = 0; i < e.ffn; ++i) {
    double g = bias(0, i), u = bias(1, i);
    for (int64_t c = 0; c < hidden; ++c) {
      const double xc = to_float(dt, x[c]);
      g += to_float(dt, e.pruned[0][size_t(i * hidden + c)]) * xc;
      u += to_float(dt, e.pruned[1][size_t(i * hidden + c)]) * xc;
    }
    h[size_t(i)] = act.kind == ExpertActivation::Kind::Silu ? silu(g) * u : clamped_swiglu(g, u, act.alpha, act.limit);
  }
  for (int64_t r = 0; r < hidden; ++r) {
    double acc = bias(2, r);
    for (int64_t i = 0; i < e.ffn; ++i) acc += to_float(dt, e.pruned[2][size_t(r * e.ffn + i)]) * h[size_t(i)];
    y[size_t(r)] += scale * acc;
  }
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int cmd_run_moe(const std::vector<std::string>& argv) {
  CLI::App app(
      "Builds the model's MoE layer once with random weights; for each token count checks --check sampled tokens "
      "against the float64 reference and times the layer (GPU routing included) against dense cuBLAS on the same "
      "routing: a per-expert loop and grouped GEMM (GEMMs only).",
      "samoyeds run-moe");
  std::string model_arg, dtype_arg = "bf16", rows = "1:2", csv_path, cache_path = default_cache_path();
  std::vector<int64_t> token_counts;
  int segment = 128, checks = 4;
  app.add_option("--model", model_arg, model_option_help())->required();
  add_int_list(app, "--tokens", token_counts, "token counts T[,T...]", 1, int64_t(1) << 20)->required();
  app.add_option("--dtype", dtype_arg,
                 "bf16, f16, or e4m3: bf16 activations with FP8 routed experts (experimental, sm_90a; docs/fp8.md)")
      ->capture_default_str();
  app.add_option("--rows", rows, "row pattern N:M")->capture_default_str();
  app.add_option("--segment", segment, "segment length")->check(CLI::Range(1, 1 << 20))->capture_default_str();
  app.add_option("--check", checks, "sampled tokens checked against the reference")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  app.add_option("--csv", csv_path, "append one row per token count to FILE");
  app.add_option("--cache", cache_path, "cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)");
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;
  if (token_counts.empty()) throw Error(ErrorCode::InvalidArgument, "--tokens is empty");
  const ModelPreset model = load_model(model_arg);
  if (!model.unsupported().empty())
    throw Error(ErrorCode::Unsupported, fmt::format("{}: {}", model.name, model.unsupported()));
  // e4m3: the routed experts' weights and their inputs in FP8, all else bf16.
  const bool fp8 = dtype_arg == "e4m3";
  const DType dt = fp8 ? DType::bf16 : parse_dtype(dtype_arg);
  const std::string dtype_label = fp8 ? "e4m3" : dtype_name(dt);
  const SparsityParams sp = SparsityParams::from_rows(rows, segment);
  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "run-moe needs a GPU: " + why);

  KernelRuntime rt(Device::get(), cache_path);
  const int64_t H = model.hidden_size, I = model.ffn_size;
  const int E = model.experts, K = model.top_k;
  fmt::print("{}: hidden {}, ffn {}, {} experts, top-{}, {} shared (ffn {}{}); {} {}\n", model.display_name, H, I, E, K,
             model.shared_experts, model.shared_ffn_size, model.shared_expert_gate ? ", gated" : "",
             fp8 ? "bf16 with e4m3 routed experts" : dtype_name(dt), sp.to_string());
  // The model's routing; a choice bias and a shared gate are weights, so random too.
  MoeRouting routing = model.routing;
  std::mt19937 wgen(11);
  // Small: a bias as wide as the spread of saturated sigmoid scores would
  // send most tokens to the same experts (a skewed, light routing: the
  // 2026-12-07 DeepSeek-V3 rows drew +-0.1).
  if (model.choice_bias) {
    std::uniform_real_distribution<float> bias(-0.01f, 0.01f);
    for (int e = 0; e < E; ++e) routing.choice_bias.push_back(bias(wgen));
  }
  std::vector<uint16_t> shared_gate;
  std::vector<double> shared_gate_f64;
  if (model.shared_expert_gate) {
    shared_gate = tuning::random_fill(H, dt, 0.03f, 4242);
    for (uint16_t g : shared_gate) shared_gate_f64.push_back(to_float(dt, g));
  }
  fmt::print("routing: {}{}{}, router logits in {}\n", routing_method_name(routing.method),
             routing.renormalize ? ", renormalized" : "",
             routing.groups > 1 ? fmt::format(", best {} of {} groups", routing.topk_groups, routing.groups) : "",
             model.router_fp32 ? "f32" : dtype_name(dt));

  auto t0 = std::chrono::steady_clock::now();
  const ExpertActivation act = model.activation();  // gpt-oss: the clamped SwiGLU with biases
  const std::vector<HostExpert> experts = random_experts(E, I, H, dt, sp, 1, model.expert_bias);
  const std::vector<HostExpert> shared =
      random_experts(model.shared_experts, model.shared_ffn_size, H, dt, sp, 1000);
  std::vector<DenseExpert> dense, dense_shared;
  for (const auto& e : experts) dense.push_back(e.dense());
  for (const auto& e : shared) dense_shared.push_back(e.dense());
  if (!shared_gate.empty()) dense_shared.at(0).gate = shared_gate.data();
  fmt::print("random weights and their f64 reference: {:.1f} s\n", seconds_since(t0));
  t0 = std::chrono::steady_clock::now();
  MoeLayerSpec layer_spec{H, I, E, K, dt, sp, routing, false, act};
  layer_spec.fp8_experts = fp8;
  const MoeLayer layer(rt, layer_spec, dense, dense_shared);
  fmt::print("layer built (pack + upload): {:.1f} s; packed weights {:.1f} MB ({:.3f}x dense)\n", seconds_since(t0),
             double(layer.weight_bytes()) / 1e6,
             double(layer.weight_bytes()) /
                 (double(E) * 3.0 * double(H * I) * 2.0 +
                  double(model.shared_experts) * 3.0 * double(H * model.shared_ffn_size) * 2.0));
  tuning::DenseMoeBaseline dense_peer(dt, H, I, dense, dense_shared);

  const int64_t max_t = *std::max_element(token_counts.begin(), token_counts.end());
  const size_t ws_bytes = layer.workspace_bytes(max_t);
  DeviceBuffer ws(ws_bytes), d_x(size_t(max_t * H * 2)), d_logits(size_t(max_t * E * 4)),
      d_ids(size_t(max_t * K * 4)), d_w(size_t(max_t * K * 4)), d_y(size_t(max_t * H * 2));
  CUstream stream;
  check(driver().cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  std::ofstream csv;
  if (!csv_path.empty()) {
    const std::string& path = csv_path;
    const std::string header =
        "model,dtype,sparsity,tokens,samoyeds_ms,loop_ms,grouped_ms,best_dense_ms,speedup,rel_error,routing_us,"
        "routing_ids_as_reference,experts_hit,samoyeds_no_pdl_ms,pdl";
    std::string first_line;
    const bool fresh = !std::getline(std::ifstream(path), first_line) || first_line.empty();
    // Rows are appended (one process per model): only under the same columns.
    if (!fresh && first_line != header)
      throw Error(ErrorCode::InvalidArgument, "--csv: '" + path + "' has other columns (" + first_line +
                                                  "); write to a new file");
    csv.open(path, std::ios::app);
    if (!csv) throw Error(ErrorCode::IoError, "--csv: cannot write '" + path + "'");
    if (fresh) csv << header << "\n";
  }
  // FP8 is checked against the same float64 reference (the bf16 layer on the
  // pruned weights): its own quantization adds ~6% there (docs/fp8.md).
  const double tol = fp8 ? kFp8LayerLimit : dtype_tolerance(dt);
  bool all_ok = true;
  fmt::print("{:>6} {:>11} {:>10} {:>12} {:>12} {:>9} {:>10}  {:>10} {:>7} {:>7}  {}\n", "T", "samoyeds ms",
             "no PDL ms", "cuBLAS loop", "cuBLAS group", "vs best", "rel error", "routing us", "ids ok", "experts",
             "workspace");
  for (const int64_t T : token_counts) {
    const auto x = tuning::random_fill(T * H, dt, 1.0f, uint64_t(77 + T));
    DenseF64 logits{T, E, std::vector<double>(size_t(T * E))};
    std::mt19937 gen(uint32_t(5 + T));
    std::normal_distribution<double> nd(0.0, 2.0);
    std::vector<uint16_t> logits16(size_t(T * E));
    std::vector<float> logits32(size_t(T * E));
    for (size_t i = 0; i < logits16.size(); ++i) {
      logits16[i] = from_float(dt, float(nd(gen)));
      logits32[i] = model.router_fp32 ? float(nd(gen)) : to_float(dt, logits16[i]);
      logits.data[i] = logits32[i];
    }
    const Routing chosen = reference_route(logits, K, routing);
    d_x.upload(x.data(), x.size() * 2);
    if (model.router_fp32)
      d_logits.upload(logits32.data(), logits32.size() * 4);
    else
      d_logits.upload(logits16.data(), logits16.size() * 2);
    d_ids.upload(chosen.expert.data(), chosen.expert.size() * 4);
    d_w.upload(chosen.weight.data(), chosen.weight.size() * 4);

    // Check sampled tokens, first and last included (routing given, so near-ties cannot differ).
    layer.forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                         static_cast<const float*>(d_w.data()), d_y.data(), ws.data(), ws_bytes, stream);
    check(driver().cuStreamSynchronize(stream), "sync");
    std::vector<uint16_t> y(size_t(T * H));
    d_y.download(y.data(), y.size() * 2);
    const int n_checks = int(std::min<int64_t>(checks, T));
    std::vector<double> num(size_t(n_checks), 0.0), den(size_t(n_checks), 0.0);
    parallel_for(size_t(n_checks), 0, [&](size_t c) {
      const int64_t t = n_checks == 1 ? 0 : int64_t(c) * (T - 1) / (n_checks - 1);
      std::vector<double> ref(size_t(H), 0.0);
      for (int j = 0; j < K; ++j)
        add_expert_row(experts[size_t(chosen.expert[size_t(t * K + j)])], dt, H, &x[size_t(t * H)],
                       chosen.weight[size_t(t * K + j)], act, ref);
      double gate = 1.0;
      if (!shared_gate_f64.empty()) {
        double dot = 0.0;
        for (int64_t c = 0; c < H; ++c) dot += shared_gate_f64[size_t(c)] * to_float(dt, x[size_t(t * H + c)]);
        gate = 1.0 / (1.0 + std::exp(-dot));
      }
      for (const auto& s : shared) add_expert_row(s, dt, H, &x[size_t(t * H)], gate, ExpertActivation{}, ref);
      for (int64_t r = 0; r < H; ++r) {
        const double g = to_float(dt, y[size_t(t * H + r)]), d = g - ref[size_t(r)];
        num[c] += std::isfinite(g) ? d * d : INFINITY;
        den[c] += ref[size_t(r)] * ref[size_t(r)];
      }
    });
    double n2 = 0, d2 = 0;
    for (int c = 0; c < n_checks; ++c) n2 += num[size_t(c)], d2 += den[size_t(c)];
    const double rel = d2 > 0 ? std::sqrt(n2 / d2) : 0.0;
    const bool ok = rel <= tol;  // NaN fails too
    all_ok = all_ok && ok;

    // The layer as a user calls it: GPU routing from logits, then everything
    // else; and the same without programmatic dependent launch (what it
    // saves, measured apart: the dense peers do not use it).
    const auto time_layer = [&] {
      return tuning::median_ms(stream, [&](int) {
        layer.forward(d_x.data(), T, RouterLogits(d_logits.data(), model.router_fp32), d_y.data(), ws.data(),
                      ws_bytes, stream);
      }, 1, 7, 2);
    };
    const bool pdl = programmatic_launch_enabled();
    const double ours = time_layer();
    double ours_other;
    {
      struct Restore {  // the setting comes back even where the timing throws
        bool on;
        ~Restore() { set_programmatic_launch(on); }
      } restore{pdl};
      set_programmatic_launch(!pdl);
      ours_other = time_layer();
    }
    const double ours_no_pdl = pdl ? ours_other : ours;
    // The routing alone, and how many of its picks are the reference's
    // (random logits: a near-tie may rank the other way in float).
    const RouterLogits router(d_logits.data(), model.router_fp32);
    // Back to back in batches of 20: the kernel's own time, not a launch's latency.
    const double route_ms = tuning::median_ms(stream, [&](int) {
      layer.route(T, router, static_cast<int32_t*>(d_ids.data()), static_cast<float*>(d_w.data()), stream);
    }, 20, 7, 2, tuning::Launches::BackToBack);
    check(driver().cuStreamSynchronize(stream), "sync");
    std::vector<int32_t> gpu_ids(chosen.expert.size());
    d_ids.download(gpu_ids.data(), gpu_ids.size() * 4);
    int64_t same = 0;
    for (size_t i = 0; i < gpu_ids.size(); ++i) same += gpu_ids[i] == chosen.expert[i];
    // Experts with tokens: the weights the layer (and the dense peer) must read.
    std::vector<bool> hit(size_t(E), false);
    for (int32_t e : chosen.expert) hit[size_t(e)] = true;
    const int64_t experts_hit = std::count(hit.begin(), hit.end(), true);
    dense_peer.set_tokens(x, chosen);
    const double loop = dense_peer.loop_ms(stream);
    double grouped = -1.0;
    try {
      grouped = dense_peer.grouped_ms(stream);
    } catch (const Error& e) {
      fmt::print(stderr, "cuBLAS grouped GEMM failed at T={}: {}\n", T, e.what());
    }
    const double best = grouped > 0 ? std::min(loop, grouped) : loop;
    fmt::print("{:>6} {:>11.4f} {:>10.4f} {:>12.4f} {:>12} {:>8.2f}x {:>10.3g}{} {:>10.1f} {:>6.2f}% {:>7}  {:.1f} MB\n",
               T, ours, ours_no_pdl, loop, grouped > 0 ? fmt::format("{:.4f}", grouped) : "failed", best / ours, rel,
               ok ? " " : "!",
               route_ms * 1e3, 100.0 * double(same) / double(gpu_ids.size()), experts_hit,
               double(layer.workspace_bytes(T)) / 1e6);
    if (csv.is_open())
      csv << fmt::format("{},{},{},{},{:.5f},{:.5f},{:.5f},{:.5f},{:.3f},{:.3g},{:.2f},{:.5f},{},{:.5f},{}\n",
                         model.name, dtype_label, sp.to_string(), T, ours, loop, grouped, best, best / ours, rel,
                         route_ms * 1e3, double(same) / double(gpu_ids.size()), experts_hit, ours_no_pdl,
                         pdl ? "on" : "off");
  }
  fmt::print("check: {} sampled tokens per count against the f64 reference, limit {:.0e}: {}\n", checks, tol,
             all_ok ? "ok" : "FAILED (rows marked !)");
  fmt::print("dense figures are cuBLAS GEMMs only (no routing, activation or combine): a lower bound\n");
  if (fp8)
    fmt::print("the dense peers are bf16: the FP8 dense bound (torch._scaled_grouped_mm) is not measured here\n");
  driver().cuStreamDestroy(stream);
  return all_ok ? 0 : 1;
}

}  // namespace samoyeds::cli
