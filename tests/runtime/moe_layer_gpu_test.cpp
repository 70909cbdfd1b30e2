// The whole MoE layer on the GPU against the float64 layer reference of the
// decoded (pruned) weights: random routings, empty experts, every token to
// one expert, bit-identical reruns, CUDA-graph capture.
#include <gtest/gtest.h>

#include <cstdio>
#include <numeric>

#include <fmt/format.h>

#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"
#include "samoyeds/moe_layer.hpp"
#include "samoyeds/moe_reference.hpp"
#include "samoyeds/samoyeds.h"
#include "templates/kernel_args.cuh"
#include "test_util/gpu_check.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds::test {
namespace {

KernelRuntime& runtime() { return shared_runtime(); }

struct HostExpert {
  std::vector<uint16_t> w1, w3, w2;
  std::vector<uint16_t> b1, b3, b2;  // gpt-oss's biases, else empty
};

// The layer's pruned weights as the reference sees them (same deterministic packing).
ExpertWeightsF64 decoded(const HostExpert& e, const MoeLayerSpec& s, int64_t ffn) {
  auto dec = [&](const std::vector<uint16_t>& w, int64_t rows, int64_t cols) {
    return DenseF64{rows, cols, decode_weights_f64(pack_weights(w.data(), rows, cols, s.dtype, s.sparsity))};
  };
  return {dec(e.w1, ffn, s.hidden), dec(e.w3, ffn, s.hidden), dec(e.w2, s.hidden, ffn)};
}

struct Fixture {
  MoeLayerSpec spec;
  std::vector<HostExpert> experts, shared;
  std::unique_ptr<MoeLayer> layer;
  std::vector<ExpertWeightsF64> ref_experts, ref_shared;
};

// With `shared` shared experts of ffn I each (true: one).
Fixture make_layer(DType dt, int E, int K, int64_t H, int64_t I, int shared, const MoeRouting& routing = {},
                   const std::vector<uint16_t>* shared_gate = nullptr, const ExpertActivation& act = {}) {
  Fixture f;
  f.spec = {H, I, E, K, dt, {128, 1, 2}, routing};
  f.spec.activation = act;
  const bool biased = act.kind == ExpertActivation::Kind::ClampedSwiglu;  // gpt-oss: random biases too
  std::vector<DenseExpert> dense, dense_shared;
  for (int e = 0; e < E + shared; ++e) {
    HostExpert h{random_matrix(I, H, dt, 0.08f), random_matrix(I, H, dt, 0.08f), random_matrix(H, I, dt, 0.08f)};
    if (biased && e < E)
      h.b1 = random_matrix(1, I, dt, 2.0f), h.b3 = random_matrix(1, I, dt, 2.0f), h.b2 = random_matrix(1, H, dt, 0.5f);
    (e < E ? f.experts : f.shared).push_back(std::move(h));
  }
  for (auto& e : f.experts) {
    dense.push_back({e.w1.data(), e.w3.data(), e.w2.data(), 0});
    if (biased) dense.back().b1 = e.b1.data(), dense.back().b3 = e.b3.data(), dense.back().b2 = e.b2.data();
  }
  for (auto& e : f.shared) dense_shared.push_back({e.w1.data(), e.w3.data(), e.w2.data(), 0});
  if (shared_gate) dense_shared.at(0).gate = shared_gate->data();
  f.layer = std::make_unique<MoeLayer>(runtime(), f.spec, dense, dense_shared);
  for (auto& e : f.experts) {
    f.ref_experts.push_back(decoded(e, f.spec, I));
    if (!biased) continue;
    ExpertWeightsF64& r = f.ref_experts.back();
    r.b1 = to_f64(e.b1.data(), 1, I, dt).data, r.b3 = to_f64(e.b3.data(), 1, I, dt).data;
    r.b2 = to_f64(e.b2.data(), 1, H, dt).data;
    r.activation = act;
  }
  for (auto& e : f.shared) f.ref_shared.push_back(decoded(e, f.spec, I));
  return f;
}

std::vector<uint16_t> run_routed(const Fixture& f, const std::vector<uint16_t>& x, const Routing& r) {
  const int64_t T = r.tokens;
  DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight);
  DeviceBuffer ws(f.layer->workspace_bytes(T) + 256);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 255) / 256 * 256);
  PoisonedOutput y(T * f.spec.hidden);
  f.layer->forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                          static_cast<const float*>(d_w.data()), y.data(), aligned, f.layer->workspace_bytes(T));
  Device::get().synchronize();
  return y.read();
}

class MoeLayerGpu : public ::testing::Test {
 protected:
  void SetUp() override { SAMOYEDS_REQUIRE_GPU(); }
};

TEST_F(MoeLayerGpu, MatchesTheReferenceOverRoutingsTokenCountsAndExpertCounts) {
  struct Case {
    int64_t T;
    int E, K;
    DType dt;
    bool shared;
  };
  const Case cases[] = {{1, 8, 2, DType::bf16, false}, {7, 8, 1, DType::f16, true}, {64, 32, 6, DType::bf16, false},
                        {1000, 8, 2, DType::f16, false}, {300, 64, 8, DType::bf16, true},
                        {4096, 128, 8, DType::bf16, true}, {4096, 8, 2, DType::f16, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("T={} E={} top_k={} {} shared={}", c.T, c.E, c.K, dtype_name(c.dt), c.shared));
    const Fixture f = make_layer(c.dt, c.E, c.K, 256, 384, c.shared);
    const auto x = random_matrix(c.T, 256, c.dt);
    DenseF64 logits{c.T, c.E, std::vector<double>(size_t(c.T * c.E))};
    for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
    const Routing r = reference_route(logits, c.K);
    const auto got = run_routed(f, x, r);
    const DenseF64 ref = reference_moe_layer(to_f64(x.data(), c.T, 256, c.dt), r, f.ref_experts, f.ref_shared);
    const Comparison cmp = compare(got, c.dt, ref);
    EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
    EXPECT_LE(cmp.rel_error, tolerance(c.dt));
  }
}

TEST_F(MoeLayerGpu, EveryTokenToOneExpertLeavesTheOthersEmpty) {
  const Fixture f = make_layer(DType::bf16, 8, 1, 256, 384, false);
  const int64_t T = 64;
  const auto x = random_matrix(T, 256, DType::bf16);
  Routing r{T, 1, std::vector<int32_t>(size_t(T), 5), std::vector<float>(size_t(T), 1.0f)};
  const auto got = run_routed(f, x, r);
  const DenseF64 ref = reference_moe_layer(to_f64(x.data(), T, 256, DType::bf16), r, f.ref_experts);
  EXPECT_LE(compare(got, DType::bf16, ref).rel_error, tolerance(DType::bf16));
}

TEST_F(MoeLayerGpu, OutOfRangeExpertIdsAddNothingAndRaiseTheFlag) {
  const int E = 8, K = 2;
  const Fixture f = make_layer(DType::bf16, E, K, 256, 384, true);
  const int64_t T = 300;
  const auto x = random_matrix(T, 256, DType::bf16);
  DenseF64 logits{T, E, std::vector<double>(size_t(T * E))};
  for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
  Routing r = reference_route(logits, K);
  Routing kept = r;  // what the reference sees: a bad entry is expert 0 with weight 0
  const int bad_ids[] = {-1, E, 1 << 30};
  for (size_t i = 0; i < r.expert.size(); i += 7) {
    r.expert[i] = bad_ids[(i / 7) % 3];
    kept.expert[i] = 0;
    kept.weight[i] = 0.0f;
  }
  DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight), flag(4);
  flag.fill_bytes(0);
  const size_t bytes = f.layer->workspace_bytes(T);
  DeviceBuffer ws(bytes);
  PoisonedOutput y(T * 256);
  f.layer->forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                          static_cast<const float*>(d_w.data()), y.data(), ws.data(), bytes, nullptr,
                          static_cast<int*>(flag.data()));
  Device::get().synchronize();
  EXPECT_EQ(from_device<int>(flag, 1)[0], int(kErrorBadTokenId));
  const DenseF64 ref = reference_moe_layer(to_f64(x.data(), T, 256, DType::bf16), kept, f.ref_experts, f.ref_shared);
  const std::vector<uint16_t> flagged = y.read();
  const Comparison cmp = compare(flagged, DType::bf16, ref);
  EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
  EXPECT_LE(cmp.rel_error, tolerance(DType::bf16));

  // Expert-parallel: the same ids name other ranks' experts; the same sums, no flag.
  MoeLayerSpec ep = f.spec;
  ep.expert_parallel = true;
  std::vector<DenseExpert> dense, dense_shared;
  for (const auto& e : f.experts) dense.push_back({e.w1.data(), e.w3.data(), e.w2.data(), 0});
  for (const auto& e : f.shared) dense_shared.push_back({e.w1.data(), e.w3.data(), e.w2.data(), 0});
  const MoeLayer ep_layer(runtime(), ep, dense, dense_shared);
  flag.fill_bytes(0);
  PoisonedOutput y_ep(T * 256);
  ep_layer.forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                          static_cast<const float*>(d_w.data()), y_ep.data(), ws.data(), bytes, nullptr,
                          static_cast<int*>(flag.data()));
  Device::get().synchronize();
  EXPECT_EQ(from_device<int>(flag, 1)[0], 0);
  EXPECT_EQ(y_ep.read(), flagged);
}

TEST_F(MoeLayerGpu, WeightsInDeviceMemoryBuildTheSameLayer) {
  const Fixture f = make_layer(DType::f16, 8, 2, 256, 384, true);
  std::vector<DeviceBuffer> copies;
  auto dev = [&](const std::vector<uint16_t>& w) {
    copies.push_back(to_device(w));
    return static_cast<const uint16_t*>(copies.back().data());
  };
  copies.reserve(3 * (f.experts.size() + f.shared.size()));
  std::vector<DenseExpert> experts, shared;
  for (const auto& e : f.experts) experts.push_back({dev(e.w1), dev(e.w3), dev(e.w2), 0, true});
  for (const auto& e : f.shared) shared.push_back({dev(e.w1), dev(e.w3), dev(e.w2), 0, true});
  Fixture g;
  g.spec = f.spec;
  g.layer = std::make_unique<MoeLayer>(runtime(), f.spec, experts, shared);
  const int64_t T = 50;
  const auto x = random_matrix(T, 256, DType::f16);
  DenseF64 logits{T, 8, std::vector<double>(size_t(T * 8))};
  for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
  const Routing r = reference_route(logits, 2);
  EXPECT_EQ(run_routed(f, x, r), run_routed(g, x, r));
}

TEST_F(MoeLayerGpu, GpuRoutingMatchesTheReferenceAndRerunsAreBitIdentical) {
  const int64_t T = 100;
  const int E = 32, K = 4;
  const Fixture f = make_layer(DType::bf16, E, K, 256, 384, false);
  const auto x = random_matrix(T, 256, DType::bf16);
  // Well-separated logits (a shuffled ladder per token) so the top-k is unambiguous in bf16.
  std::vector<uint16_t> logits(size_t(T * E));
  DenseF64 logits_f64{T, E, std::vector<double>(size_t(T * E))};
  for (int64_t t = 0; t < T; ++t) {
    std::vector<int> perm(static_cast<size_t>(E));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng());
    for (int e = 0; e < E; ++e) {
      const uint16_t b = float_to_bf16_bits(0.25f * float(perm[size_t(e)]));
      logits[size_t(t * E + e)] = b;
      logits_f64.data[size_t(t * E + e)] = bf16_bits_to_float(b);
    }
  }
  DeviceBuffer d_x = to_device(x), d_logits = to_device(logits);
  const size_t bytes = f.layer->workspace_bytes(T);
  DeviceBuffer ws(bytes + 256);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 255) / 256 * 256);
  PoisonedOutput y1(T * 256), y2(T * 256);
  f.layer->forward(d_x.data(), T, RouterLogits(d_logits.data(), false), y1.data(), aligned, bytes);
  f.layer->forward(d_x.data(), T, RouterLogits(d_logits.data(), false), y2.data(), aligned, bytes);
  Device::get().synchronize();
  const auto got = y1.read();
  EXPECT_EQ(got, y2.read()) << "two runs differ";
  const Routing r = reference_route(logits_f64, K);
  const DenseF64 ref = reference_moe_layer(to_f64(x.data(), T, 256, DType::bf16), r, f.ref_experts);
  EXPECT_LE(compare(got, DType::bf16, ref).rel_error, tolerance(DType::bf16));
}

// Logits without near-ties (the routing tests cover ties) for routing `m`:
// a shuffled ladder per token (2^-5 rungs within +-2, exact in every dtype),
// or for the sigmoid a ladder of scores 0.9 / E apart. Group sums of such
// scores can tie, so a group-limited sigmoid needs group_bias(): whole
// steps plus (group + 1) / (groups + 1) of one per group, which keeps any
// two experts and any two groups a step / (groups + 1) apart.
std::vector<float> group_bias(int E, int groups) {
  const double d = 0.9 / E;
  const int size = E / groups;
  std::vector<float> bias;
  for (int e = 0; e < E; ++e) bias.push_back(float(d * (2 * ((e / size) % 3) + double(e / size + 1) / (groups + 1))));
  return bias;
}
struct LayerLogits {
  std::vector<uint16_t> narrow;
  std::vector<float> wide;
  DenseF64 ref;
};
LayerLogits no_tie_logits(int64_t T, int E, DType dt, bool fp32, const MoeRouting& m) {
  const bool sigmoid = m.method == RoutingMethod::SigmoidGroupTopK;
  const double d = 0.9 / E;
  EXPECT_TRUE(!sigmoid || m.groups == 1 || m.choice_bias == group_bias(E, m.groups)) << "groups need group_bias()";
  LayerLogits l;
  l.narrow.resize(size_t(T * E));
  l.wide.resize(l.narrow.size());
  l.ref = {T, E, std::vector<double>(l.narrow.size())};
  std::vector<int> ladder(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(ladder.begin(), ladder.end(), 0);
    std::shuffle(ladder.begin(), ladder.end(), rng());
    for (int e = 0; e < E; ++e) {
      const size_t i = size_t(t * E + e);
      const double score = 0.05 + d * ladder[size_t(e)];
      const int rung = ladder[size_t(e)];
      const float v = sigmoid ? float(std::log(score / (1.0 - score)))
                              : float(rung % 128) / 32.0f - 2.0f + float(rung / 128) / 64.0f;
      l.narrow[i] = from_float(dt, v);
      l.wide[i] = fp32 ? v : to_float(dt, l.narrow[i]);
      l.ref.data[i] = l.wide[i];
    }
  }
  return l;
}

// forward() of `f` at T tokens against the reference of its layer, and
// route() alone against the reference's routing; with a gate, the gate must
// matter.
void expect_layer_matches(const Fixture& f, int64_t T, bool fp32, const std::vector<uint16_t>* gate) {
  const MoeLayerSpec& spec = f.spec;
  const int64_t H = spec.hidden;
  const MoeRouting& m = spec.routing;
  const LayerLogits l = no_tie_logits(T, spec.experts, spec.dtype, fp32, m);
  const auto x = random_matrix(T, H, spec.dtype);
  DeviceBuffer d_x = to_device(x), d_logits = fp32 ? to_device(l.wide) : to_device(l.narrow);
  const size_t bytes = f.layer->workspace_bytes(T);
  DeviceBuffer ws(bytes);
  PoisonedOutput y(T * H);
  f.layer->forward(d_x.data(), T, RouterLogits(d_logits.data(), fp32), y.data(), ws.data(), bytes);
  Device::get().synchronize();
  const Routing r = reference_route(l.ref, spec.top_k, m);
  DeviceBuffer ids(r.expert.size() * 4), weights(r.weight.size() * 4);
  ids.fill_bytes(0x5a);
  weights.fill_bytes(0x5a);
  f.layer->route(T, RouterLogits(d_logits.data(), fp32), static_cast<int32_t*>(ids.data()),
                 static_cast<float*>(weights.data()));
  Device::get().synchronize();
  EXPECT_EQ(from_device<int32_t>(ids, r.expert.size()), r.expert);
  const std::vector<float> got_w = from_device<float>(weights, r.weight.size());
  for (size_t i = 0; i < got_w.size(); ++i)
    ASSERT_NEAR(got_w[i], r.weight[i], 1e-5 + 1e-5 * std::fabs(r.weight[i])) << "entry " << i;
  // The router on its own (expert-parallel callers hold one) routes as the layer does, bit for bit.
  const MoeRouter router(runtime(), spec.experts, spec.top_k, spec.dtype, spec.routing);
  DeviceBuffer ids2(r.expert.size() * 4), weights2(r.weight.size() * 4);
  ids2.fill_bytes(0x5a);
  weights2.fill_bytes(0x5a);
  router.route(T, RouterLogits(d_logits.data(), fp32), static_cast<int32_t*>(ids2.data()),
               static_cast<float*>(weights2.data()));
  Device::get().synchronize();
  EXPECT_EQ(from_device<int32_t>(ids2, r.expert.size()), r.expert);
  EXPECT_EQ(from_device<float>(weights2, r.weight.size()), got_w);
  std::vector<double> ref_gate;
  if (gate)
    for (uint16_t g : *gate) ref_gate.push_back(to_float(spec.dtype, g));
  const DenseF64 x64 = to_f64(x.data(), T, H, spec.dtype);
  const Comparison cmp = compare(y.read(), spec.dtype, reference_moe_layer(x64, r, f.ref_experts, f.ref_shared, ref_gate));
  EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
  EXPECT_LE(cmp.rel_error, tolerance(spec.dtype));
  if (gate && T >= 64)  // the ungated sum is far off (a token or a few may sit near sigmoid = 1)
    EXPECT_GT(compare(y.read(), spec.dtype, reference_moe_layer(x64, r, f.ref_experts, f.ref_shared)).rel_error,
              10 * tolerance(spec.dtype));
}

// forward() with each model family's routing, float logits, a choice bias and
// a gated shared expert.
TEST_F(MoeLayerGpu, EachRoutingMethodAndASharedGateMatchTheReference) {
  struct Case {
    const char* name;
    int64_t T;
    int E, K;
    DType dt;
    RoutingMethod method;
    bool renormalize, fp32_logits, shared, gated;
  };
  const Case cases[] = {
      {"qwen1.5-like", 7, 60, 4, DType::bf16, RoutingMethod::SoftmaxTopK, false, false, true, true},
      {"qwen3-like", 64, 128, 8, DType::bf16, RoutingMethod::SoftmaxTopK, true, true, false, false},
      {"deepseek-like", 64, 64, 6, DType::bf16, RoutingMethod::SigmoidGroupTopK, true, true, true, false},
      {"deepseek-like", 1000, 64, 6, DType::f16, RoutingMethod::SigmoidGroupTopK, true, true, true, false},
      {"gpt-oss-like", 1, 32, 4, DType::bf16, RoutingMethod::TopKSoftmax, false, false, false, false},
      {"gpt-oss-like", 1000, 32, 4, DType::f16, RoutingMethod::TopKSoftmax, false, true, false, false},
      {"gated shared", 1000, 8, 2, DType::f16, RoutingMethod::SoftmaxTopK, true, false, true, true}};
  const int64_t H = 256, I = 384;
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{}: T={} E={} top_k={} {} {} logits in {} shared={} gated={}", c.name, c.T, c.E, c.K,
                             dtype_name(c.dt), routing_method_name(c.method), c.fp32_logits ? "f32" : "the dtype",
                             c.shared, c.gated));
    MoeRouting m;
    m.method = c.method;
    m.renormalize = c.renormalize;
    if (c.method == RoutingMethod::SigmoidGroupTopK) {
      m.groups = 8;
      m.topk_groups = 3;
      m.scale = 2.5;
      m.choice_bias = group_bias(c.E, m.groups);
    }
    const std::vector<uint16_t> gate = random_matrix(1, H, c.dt, 0.1f);
    const Fixture f = make_layer(c.dt, c.E, c.K, H, I, c.shared, m, c.gated ? &gate : nullptr);
    expect_layer_matches(f, c.T, c.fp32_logits, c.gated ? &gate : nullptr);
  }
}

// Every preset's layer as its model computes it (routing, groups, scaling,
// choice bias, float logits, shared experts and their gate), its expert
// count and top-k kept, at hidden 256 and ffn 384 (the full sizes run in
// `samoyeds run-moe`), at T = 1, 7, 64 and 1000.
TEST_F(MoeLayerGpu, EveryPresetsLayerMatchesItsReference) {
  const int64_t H = 256, I = 384;
  for (const std::string& name : model_preset_names()) {
    const ModelPreset p = load_model(name);
    if (!p.unsupported().empty()) {
      std::printf("not run: %s: %s\n", name.c_str(), p.unsupported().c_str());
      continue;
    }
    MoeRouting m = p.routing;
    if (p.choice_bias || m.groups > 1) m.choice_bias = group_bias(p.experts, m.groups);
    const std::vector<uint16_t> gate = random_matrix(1, H, DType::bf16, 0.1f);
    // gpt-oss: the clamped SwiGLU, with random biases
    const Fixture f = make_layer(DType::bf16, p.experts, p.top_k, H, I, p.shared_experts, m,
                                 p.shared_expert_gate ? &gate : nullptr, p.activation());
    for (int64_t T : {1, 7, 64, 1000}) {
      SCOPED_TRACE(fmt::format("{} T={}", name, T));
      expect_layer_matches(f, T, p.router_fp32, p.shared_expert_gate ? &gate : nullptr);
    }
  }
}

TEST_F(MoeLayerGpu, ForwardCanBeCapturedInACudaGraph) {
  const DriverApi& d = driver();
  ASSERT_TRUE(d.cuStreamBeginCapture && d.cuStreamEndCapture && d.cuGraphInstantiateWithFlags && d.cuGraphLaunch)
      << "the driver resolved no CUDA graph entry points";
  const int64_t T = 64;
  const Fixture f = make_layer(DType::f16, 8, 2, 256, 384, true);
  const auto x = random_matrix(T, 256, DType::f16);
  DenseF64 logits{T, 8, std::vector<double>(size_t(T * 8))};
  for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
  const Routing r = reference_route(logits, 2);
  DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight);
  const size_t bytes = f.layer->workspace_bytes(T);
  DeviceBuffer ws(bytes + 256);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 255) / 256 * 256);
  PoisonedOutput eager(T * 256), graphed(T * 256);
  CUstream s;
  check(d.cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  auto fwd = [&](void* y) {
    f.layer->forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                            static_cast<const float*>(d_w.data()), y, aligned, bytes, s);
  };
  fwd(eager.data());  // also loads every kernel: nothing is compiled during capture
  check(d.cuStreamSynchronize(s), "sync");
  check(d.cuStreamBeginCapture(s, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL), "cuStreamBeginCapture");
  fwd(graphed.data());
  CUgraph graph;
  check(d.cuStreamEndCapture(s, &graph), "cuStreamEndCapture");
  CUgraphExec exec;
  check(d.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
  check(d.cuGraphLaunch(exec, s), "cuGraphLaunch");
  check(d.cuStreamSynchronize(s), "sync");
  EXPECT_EQ(eager.read(), graphed.read());
  d.cuGraphExecDestroy(exec);
  d.cuGraphDestroy(graph);
  d.cuStreamDestroy(s);
}

TEST_F(MoeLayerGpu, CApiGivesTheSameBitsAsTheCppApi) {
  const int64_t T = 40;
  const Fixture f = make_layer(DType::bf16, 8, 2, 256, 384, true);
  std::vector<const uint16_t*> w1, w3, w2;
  for (const auto& e : f.experts) {
    w1.push_back(e.w1.data());
    w3.push_back(e.w3.data());
    w2.push_back(e.w2.data());
  }
  const uint16_t* s1[] = {f.shared[0].w1.data()};
  const uint16_t* s3[] = {f.shared[0].w3.data()};
  const uint16_t* s2[] = {f.shared[0].w2.data()};
  samoyeds_runtime* crt = nullptr;
  ASSERT_EQ(samoyeds_runtime_create(0, nullptr, &crt), SAMOYEDS_OK) << samoyeds_last_error();
  samoyeds_moe_spec spec{256, 384, 8, 2, SAMOYEDS_BF16, 128, 1, 2, 1, 1, 384, 0};
  samoyeds_moe_layer* layer = nullptr;
  ASSERT_EQ(samoyeds_moe_layer_create(crt, &spec, w1.data(), w3.data(), w2.data(), s1, s3, s2, &layer), SAMOYEDS_OK)
      << samoyeds_last_error();
  EXPECT_EQ(samoyeds_moe_layer_device_bytes(layer), f.layer->weight_bytes());
  // The layer keeps its runtime: destroying the handle first is safe.
  samoyeds_runtime_destroy(crt);
  const auto x = random_matrix(T, 256, DType::bf16);
  DenseF64 logits{T, 8, std::vector<double>(size_t(T * 8))};
  for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
  const Routing r = reference_route(logits, 2);
  DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight);
  const size_t bytes = samoyeds_moe_workspace_bytes(layer, T);
  ASSERT_EQ(bytes, f.layer->workspace_bytes(T));
  // The affine bound covers every T, and closely (a few rounded regions).
  int64_t per_token = 0, fixed = 0;
  ASSERT_EQ(samoyeds_moe_workspace_bound(layer, &per_token, &fixed), SAMOYEDS_OK) << samoyeds_last_error();
  for (int64_t t : {1, 2, 3, 40, 1000, 65535}) {
    const int64_t exact = int64_t(samoyeds_moe_workspace_bytes(layer, t)), bound = per_token * t + fixed;
    EXPECT_LE(exact, bound) << t;
    EXPECT_LT(bound - exact, 4096) << t;
  }
  DeviceBuffer ws(bytes);
  PoisonedOutput y(T * 256);
  ASSERT_EQ(samoyeds_moe_forward_routed(layer, d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                                        static_cast<const float*>(d_w.data()), y.data(), ws.data(), bytes, nullptr,
                                        nullptr),
            SAMOYEDS_OK)
      << samoyeds_last_error();
  Device::get().synchronize();
  EXPECT_EQ(y.read(), run_routed(f, x, r));
  EXPECT_EQ(samoyeds_moe_forward_routed(layer, d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                                        static_cast<const float*>(d_w.data()), y.data(), ws.data(), bytes - 1,
                                        nullptr, nullptr),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("workspace"), std::string::npos);
  samoyeds_moe_layer_destroy(layer);
}

// A layer from packed experts (as a packed checkpoint holds them), through
// the C++ API and the C ABI, gives the bits of the layer that packed the same
// dense weights itself.
TEST_F(MoeLayerGpu, PackedExpertsBuildTheSameLayer) {
  const int64_t T = 50, H = 256, I = 384;
  const Fixture f = make_layer(DType::bf16, 8, 2, H, I, 1);
  auto pack = [&](const std::vector<uint16_t>& w, int64_t m, int64_t k) {
    return pack_weights(w.data(), m, k, DType::bf16, f.spec.sparsity);
  };
  std::vector<PackedExpert> packed;
  for (const auto& e : f.experts) packed.push_back({pack(e.w1, I, H), pack(e.w3, I, H), pack(e.w2, H, I)});
  const HostExpert& s = f.shared[0];
  const PackedExpert shared{pack(s.w1, I, H), pack(s.w3, I, H), pack(s.w2, H, I)};
  const MoeLayer layer(runtime(), f.spec, packed, &shared);
  EXPECT_EQ(layer.weight_bytes(), f.layer->weight_bytes());

  const auto x = random_matrix(T, H, DType::bf16);
  DenseF64 logits{T, 8, std::vector<double>(size_t(T * 8))};
  for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
  const Routing r = reference_route(logits, 2);
  DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight);
  DeviceBuffer ws(layer.workspace_bytes(T));
  PoisonedOutput y(T * H);
  layer.forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()), static_cast<const float*>(d_w.data()),
                       y.data(), ws.data(), ws.bytes());
  Device::get().synchronize();
  const std::vector<uint16_t> want = run_routed(f, x, r);
  EXPECT_EQ(y.read(), want);

  // The C ABI from the same host buffers.
  auto c_matrix = [](const PackedWeights& p) {
    return samoyeds_packed_matrix{p.m,          p.k,          SAMOYEDS_BF16,        p.values.data(),
                                  int64_t(p.values.size()), p.sel.data(), int64_t(p.sel.size()), p.meta.data(),
                                  int64_t(p.meta.size())};
  };
  std::vector<samoyeds_packed_matrix> c1, c3, c2;
  for (const auto& e : packed) {
    c1.push_back(c_matrix(e.w1));
    c3.push_back(c_matrix(e.w3));
    c2.push_back(c_matrix(e.w2));
  }
  const samoyeds_packed_matrix cs[3] = {c_matrix(shared.w1), c_matrix(shared.w3), c_matrix(shared.w2)};
  samoyeds_runtime* crt = nullptr;
  ASSERT_EQ(samoyeds_runtime_create(0, nullptr, &crt), SAMOYEDS_OK) << samoyeds_last_error();
  samoyeds_moe_spec spec{};
  spec.hidden = H, spec.ffn = I, spec.experts = 8, spec.top_k = 2, spec.dtype = SAMOYEDS_BF16;
  spec.V = 128, spec.N = 1, spec.M = 2, spec.n_shared = 1, spec.shared_ffn = I;
  samoyeds_moe_layer* clayer = nullptr;
  ASSERT_EQ(samoyeds_moe_layer_create_packed(crt, &spec, c1.data(), c3.data(), c2.data(), cs, &clayer), SAMOYEDS_OK)
      << samoyeds_last_error();
  PoisonedOutput yc(T * H);
  ASSERT_EQ(samoyeds_moe_forward_routed(clayer, d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                                        static_cast<const float*>(d_w.data()), yc.data(), ws.data(), ws.bytes(),
                                        nullptr, nullptr),
            SAMOYEDS_OK)
      << samoyeds_last_error();
  Device::get().synchronize();
  EXPECT_EQ(yc.read(), want);
  samoyeds_moe_layer_destroy(clayer);

  // Matrices of another shape than the spec's are refused, naming one.
  spec.hidden = 512;
  EXPECT_EQ(samoyeds_moe_layer_create_packed(crt, &spec, c1.data(), c3.data(), c2.data(), cs, &clayer),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("expert 0's w1 is [384, 256]"), std::string::npos)
      << samoyeds_last_error();
  spec.hidden = H;
  c2[5].meta_bytes -= 1;  // a buffer shorter than its shape needs is refused before it is read
  EXPECT_EQ(samoyeds_moe_layer_create_packed(crt, &spec, c1.data(), c3.data(), c2.data(), cs, &clayer),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("expert 5's w2"), std::string::npos) << samoyeds_last_error();
  c2[5].meta_bytes += 1;
  c2[5].dtype = SAMOYEDS_F16;  // bf16 values called f16 would be read as garbage
  EXPECT_EQ(samoyeds_moe_layer_create_packed(crt, &spec, c1.data(), c3.data(), c2.data(), cs, &clayer),
            SAMOYEDS_INVALID_ARGUMENT);
  samoyeds_runtime_destroy(crt);
  std::vector<PackedExpert> wrong = packed;
  wrong[3].w2 = pack(f.experts[3].w1, I, H);  // [ffn, hidden] where [hidden, ffn] belongs
  try {
    MoeLayer bad(runtime(), f.spec, wrong);
    ADD_FAILURE() << "a transposed matrix was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expert 3's w2"), std::string::npos) << e.what();
  }
}

TEST_F(MoeLayerGpu, BadArgumentsAreRejected) {
  const Fixture f = make_layer(DType::bf16, 8, 2, 256, 384, false);
  const MoeLayer::WorkspaceBound bound = f.layer->workspace_bound();  // without shared experts
  for (int64_t t : {1, 5, 64, 4096}) EXPECT_LE(int64_t(f.layer->workspace_bytes(t)), bound.per_token * t + bound.fixed);
  DeviceBuffer x(64 * 256 * 2), y(64 * 256 * 2), ids(64 * 2 * 4), w(64 * 2 * 4), ws(f.layer->workspace_bytes(64));
  EXPECT_THROW(f.layer->forward_routed(x.data(), 64, static_cast<const int32_t*>(ids.data()),
                                       static_cast<const float*>(w.data()), y.data(), ws.data(),
                                       f.layer->workspace_bytes(64) - 1),
               Error);  // workspace too small
  EXPECT_THROW(f.layer->forward(x.data(), 64, RouterLogits(nullptr, false), y.data(), ws.data(),
                                f.layer->workspace_bytes(64)),
               Error);
  MoeLayerSpec bad = f.spec;
  bad.top_k = 9;
  EXPECT_THROW(bad.validate(), Error);
  bad = f.spec;
  bad.hidden = 252;  // not a multiple of 8
  EXPECT_THROW(bad.validate(), Error);
  bad = f.spec;
  bad.ffn = 380;
  EXPECT_THROW(bad.validate(), Error);
}

}  // namespace
}  // namespace samoyeds::test

namespace samoyeds::test {
namespace {

// A gpt-oss layer (its routing, the clamped SwiGLU with biases, the down
// bias), small, against the float64 layer reference of the same weights.
TEST_F(MoeLayerGpu, GptOssExpertsMatchTheReference) {
  const int E = 8, K = 2;
  const int64_t H = 256, I = 384;
  MoeLayerSpec spec{H, I, E, K, DType::bf16, {128, 1, 2}, {}};
  spec.routing.method = RoutingMethod::TopKSoftmax;
  spec.routing.renormalize = false;  // its weights sum to 1 already; the spec refuses the flag
  spec.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
  std::vector<HostExpert> host;
  std::vector<std::vector<uint16_t>> b1, b3, b2;
  std::vector<DenseExpert> dense;
  std::vector<ExpertWeightsF64> ref;
  for (int e = 0; e < E; ++e) {
    host.push_back({random_matrix(I, H, DType::bf16, 0.08f), random_matrix(I, H, DType::bf16, 0.08f),
                    random_matrix(H, I, DType::bf16, 0.08f)});
    b1.push_back(random_matrix(1, I, DType::bf16, 2.0f));
    b3.push_back(random_matrix(1, I, DType::bf16, 2.0f));
    b2.push_back(random_matrix(1, H, DType::bf16, 0.5f));
  }
  for (int e = 0; e < E; ++e) {
    DenseExpert d{host[size_t(e)].w1.data(), host[size_t(e)].w3.data(), host[size_t(e)].w2.data(), 0};
    d.b1 = b1[size_t(e)].data(), d.b3 = b3[size_t(e)].data(), d.b2 = b2[size_t(e)].data();
    dense.push_back(d);
    ExpertWeightsF64 r = decoded(host[size_t(e)], spec, I);
    r.b1 = to_f64(b1[size_t(e)].data(), 1, I, DType::bf16).data;
    r.b3 = to_f64(b3[size_t(e)].data(), 1, I, DType::bf16).data;
    r.b2 = to_f64(b2[size_t(e)].data(), 1, H, DType::bf16).data;
    r.activation = spec.activation;
    ref.push_back(r);
  }
  const MoeLayer layer(runtime(), spec, dense);
  for (int64_t T : {1, 37, 300}) {
    SCOPED_TRACE(fmt::format("T={}", T));
    const auto x = random_matrix(T, H, DType::bf16, 2.0f);
    DenseF64 logits{T, E, std::vector<double>(size_t(T * E))};
    for (auto& v : logits.data) v = std::normal_distribution<double>(0.0, 2.0)(rng());
    const Routing r = reference_route(logits, K, spec.routing);
    DeviceBuffer d_x = to_device(x), d_ids = to_device(r.expert), d_w = to_device(r.weight);
    DeviceBuffer ws(layer.workspace_bytes(T));
    PoisonedOutput y(T * H);
    layer.forward_routed(d_x.data(), T, static_cast<const int32_t*>(d_ids.data()),
                         static_cast<const float*>(d_w.data()), y.data(), ws.data(), ws.bytes());
    Device::get().synchronize();
    const DenseF64 want = reference_moe_layer(to_f64(x.data(), T, H, DType::bf16), r, ref);
    const Comparison cmp = compare(y.read(), DType::bf16, want);
    EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
    EXPECT_LE(cmp.rel_error, tolerance(DType::bf16));
  }
  // Biases with the plain silu(g) * u would be dropped: refused.
  MoeLayerSpec plain = spec;
  plain.activation = {};
  EXPECT_THROW(MoeLayer(runtime(), plain, dense), Error);
}

}  // namespace
}  // namespace samoyeds::test
