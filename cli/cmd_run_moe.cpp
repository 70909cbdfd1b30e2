// samoyeds run-moe: a whole MoE layer with random weights: build, run, check
// sampled tokens against the float64 reference of the pruned weights, and
// time it against dense cuBLAS baselines on the same routing.
#include <cstdio>
#include <random>
#include <sstream>

#include <fmt/format.h>

#include "cli/cli_args.hpp"
#include "runtime/cuda_driver.hpp"
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

// Output of one token through one expert, from the pruned weights (f64).
std::vector<double> expert_row(const std::vector<uint16_t>& w1, const std::vector<uint16_t>& w3,
                               const std::vector<uint16_t>& w2, DType dt, int64_t hidden, int64_t ffn,
                               const uint16_t* x) {
  std::vector<double> h(static_cast<size_t>(ffn)), y(static_cast<size_t>(hidden), 0.0);
  for (int64_t i = 0; i < ffn; ++i) {
    double g = 0, u = 0;
    for (int64_t c = 0; c < hidden; ++c) {
      const double xc = to_float(dt, x[c]);
      g += to_float(dt, w1[size_t(i * hidden + c)]) * xc;
      u += to_float(dt, w3[size_t(i * hidden + c)]) * xc;
    }
    h[size_t(i)] = silu(g) * u;
  }
  for (int64_t r = 0; r < hidden; ++r)
    for (int64_t i = 0; i < ffn; ++i) y[size_t(r)] += to_float(dt, w2[size_t(r * ffn + i)]) * h[size_t(i)];
  return y;
}

}  // namespace

int cmd_run_moe(const std::vector<std::string>& argv) {
  if (print_help_if_asked(argv,
                          "usage: samoyeds run-moe --model NAME|FILE --tokens T [--dtype bf16|f16] [--rows 1:2] "
                          "[--segment 128]\n"
                          "                        [--check 4] [--cache FILE]\n"
                          "Builds the model's MoE layer with random weights, checks --check sampled tokens against "
                          "the\n"
                          "float64 reference, and times it against dense cuBLAS (per-expert loop and grouped GEMM).\n"))
    return 0;
  Args args(argv, {"--model", "--tokens", "--dtype", "--rows", "--segment", "--check", "--cache"}, {});
  if (!args.has("--model") || !args.has("--tokens"))
    throw Error(ErrorCode::InvalidArgument, "run-moe needs --model and --tokens");
  const ModelPreset model = load_model(args.get("--model", ""));
  const std::vector<int64_t> token_list = parse_int_list(args.get("--tokens", ""), "--tokens", 1);
  if (token_list.size() != 1) throw Error(ErrorCode::InvalidArgument, "--tokens takes one count");
  const int64_t T = token_list[0];
  const DType dt = parse_dtype(args.get("--dtype", "bf16"));
  const SparsityParams sp = SparsityParams::from_rows(args.get("--rows", "1:2"), std::stoi(args.get("--segment", "128")));
  const int checks = std::stoi(args.get("--check", "4"));
  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "run-moe needs a GPU: " + why);

  KernelRuntime rt(Device::get(), args.get("--cache", default_cache_path()));
  const int64_t H = model.hidden_size, I = model.ffn_size;
  const int E = model.experts, K = model.top_k;
  fmt::print("{}: hidden {}, ffn {}, {} experts, top-{}, {} shared; {} tokens, {} {}\n", model.display_name, H, I, E, K,
             model.shared_experts, T, dtype_name(dt), sp.to_string());

  // Random weights (the pruned values are what the reference uses).
  std::vector<std::vector<uint16_t>> w1(static_cast<size_t>(E)), w3(static_cast<size_t>(E)), w2(static_cast<size_t>(E));
  std::vector<DenseExpert> dense;
  for (int e = 0; e < E; ++e) {
    w1[size_t(e)] = tuning::random_fill(I * H, dt, 0.03f, uint64_t(3 * e + 1));
    w3[size_t(e)] = tuning::random_fill(I * H, dt, 0.03f, uint64_t(3 * e + 2));
    w2[size_t(e)] = tuning::random_fill(H * I, dt, 0.03f, uint64_t(3 * e + 3));
    dense.push_back({w1[size_t(e)].data(), w3[size_t(e)].data(), w2[size_t(e)].data(), 0});
  }
  std::vector<std::vector<uint16_t>> s1, s3, s2;
  std::vector<DenseExpert> shared;
  for (int s = 0; s < model.shared_experts; ++s) {
    const int64_t f = model.shared_ffn_size;
    s1.push_back(tuning::random_fill(f * H, dt, 0.03f, uint64_t(1000 + 3 * s)));
    s3.push_back(tuning::random_fill(f * H, dt, 0.03f, uint64_t(1001 + 3 * s)));
    s2.push_back(tuning::random_fill(H * f, dt, 0.03f, uint64_t(1002 + 3 * s)));
  }
  for (int s = 0; s < model.shared_experts; ++s)
    shared.push_back({s1[size_t(s)].data(), s3[size_t(s)].data(), s2[size_t(s)].data(), model.shared_ffn_size});
  MoeLayerSpec spec{H, I, E, K, dt, sp, true};
  const MoeLayer layer(rt, spec, dense, shared);

  const auto x = tuning::random_fill(T * H, dt, 1.0f, 77);
  DenseF64 logits{T, E, std::vector<double>(size_t(T * E))};
  std::mt19937 gen(5);
  std::normal_distribution<double> nd(0.0, 2.0);
  std::vector<uint16_t> logits16(size_t(T * E));
  for (size_t i = 0; i < logits16.size(); ++i) {
    logits16[i] = from_float(dt, float(nd(gen)));
    logits.data[i] = to_float(dt, logits16[i]);
  }
  const Routing routing = reference_route(logits, K, true);
  DeviceBuffer d_x(x.size() * 2), d_logits(logits16.size() * 2), d_ids(routing.expert.size() * 4),
      d_w(routing.weight.size() * 4), d_y(size_t(T * H * 2));
  d_x.upload(x.data(), x.size() * 2);
  d_logits.upload(logits16.data(), logits16.size() * 2);
  d_ids.upload(routing.expert.data(), routing.expert.size() * 4);
  d_w.upload(routing.weight.data(), routing.weight.size() * 4);
  const size_t ws_bytes = layer.workspace_bytes(T);
  DeviceBuffer ws(ws_bytes);
  CUstream stream;
  check(driver().cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");

  // Check sampled tokens (routing given, so near-ties cannot differ).
  layer.forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()), static_cast<const float*>(d_w.data()),
                       d_y.data(), ws.data(), ws_bytes, stream);
  check(driver().cuStreamSynchronize(stream), "sync");
  std::vector<uint16_t> y(size_t(T * H));
  d_y.download(y.data(), y.size() * 2);
  double num = 0, den = 0;
  std::vector<std::vector<uint16_t>> pruned(static_cast<size_t>(3 * E));  // decoded on first use
  auto pruned_of = [&](int e, int which) -> const std::vector<uint16_t>& {
    auto& slot = pruned[size_t(3 * e + which)];
    if (slot.empty()) {
      const auto& src = which == 0 ? w1[size_t(e)] : which == 1 ? w3[size_t(e)] : w2[size_t(e)];
      const int64_t rows = which == 2 ? H : I, cols = which == 2 ? I : H;
      slot = decode_weights(pack_weights(src.data(), rows, cols, dt, sp));
    }
    return slot;
  };
  for (int c = 0; c < checks && c < T; ++c) {
    const int64_t t = c * (T / std::max(1, std::min<int>(checks, int(T))));
    std::vector<double> ref(size_t(H), 0.0);
    for (int j = 0; j < K; ++j) {
      const int e = routing.expert[size_t(t * K + j)];
      const auto out = expert_row(pruned_of(e, 0), pruned_of(e, 1), pruned_of(e, 2), dt, H, I, &x[size_t(t * H)]);
      for (int64_t r = 0; r < H; ++r) ref[size_t(r)] += routing.weight[size_t(t * K + j)] * out[size_t(r)];
    }
    for (int s = 0; s < model.shared_experts; ++s) {
      const int64_t f = model.shared_ffn_size;
      const auto a = decode_weights(pack_weights(s1[size_t(s)].data(), f, H, dt, sp));
      const auto b = decode_weights(pack_weights(s3[size_t(s)].data(), f, H, dt, sp));
      const auto d = decode_weights(pack_weights(s2[size_t(s)].data(), H, f, dt, sp));
      const auto out = expert_row(a, b, d, dt, H, f, &x[size_t(t * H)]);
      for (int64_t r = 0; r < H; ++r) ref[size_t(r)] += out[size_t(r)];
    }
    for (int64_t r = 0; r < H; ++r) {
      const double g = to_float(dt, y[size_t(t * H + r)]);
      num += (g - ref[size_t(r)]) * (g - ref[size_t(r)]);
      den += ref[size_t(r)] * ref[size_t(r)];
    }
  }
  const double rel = den > 0 ? std::sqrt(num / den) : 0.0;
  const double tol = dt == DType::f16 ? 1e-3 : 8e-3;
  fmt::print("check: {} sampled tokens, relative error {:.3g} (limit {:.0e}) {}\n", std::min<int64_t>(checks, T), rel,
             tol, rel <= tol ? "ok" : "FAILED");

  // Time the whole layer (GPU routing included) and the dense baselines.
  const double ours = tuning::median_ms(stream, [&](int) {
    layer.forward(d_x.data(), T, d_logits.data(), d_y.data(), ws.data(), ws_bytes, stream);
  }, 1, 7, 2);
  std::vector<std::vector<const uint16_t*>> host_experts;
  for (int e = 0; e < E; ++e) host_experts.push_back({w1[size_t(e)].data(), w3[size_t(e)].data(), w2[size_t(e)].data()});
  tuning::DenseMoeBaseline dense_peer(dt, H, I, host_experts, x, routing);
  const double loop = dense_peer.loop_ms(stream);
  double grouped = -1.0;
  std::string grouped_note;
  try {
    grouped = dense_peer.grouped_ms(stream);
  } catch (const Error& e) {
    grouped_note = e.what();
  }
  const double best = grouped > 0 ? std::min(loop, grouped) : loop;
  fmt::print("samoyeds layer {:.4f} ms | cuBLAS per-expert loop {:.4f} ms | cuBLAS grouped {} | "
             "{:.2f}x the best dense (GEMMs only{})\n",
             ours, loop, grouped > 0 ? fmt::format("{:.4f} ms", grouped) : "failed: " + grouped_note, best / ours,
             model.shared_experts ? "; shared experts not in the dense figure" : "");
  fmt::print("packed weights {:.1f} MB ({:.2f}x dense), workspace {:.1f} MB for {} tokens\n",
             double(layer.weight_bytes()) / 1e6,
             double(layer.weight_bytes()) / (double(E) * 3.0 * double(H * I) * 2.0 +
                                             double(model.shared_experts) * 3.0 * double(H * model.shared_ffn_size) * 2.0),
             double(ws_bytes) / 1e6, T);
  driver().cuStreamDestroy(stream);
  return rel <= tol ? 0 : 1;
}

}  // namespace samoyeds::cli
