// The MoE layer's routing kernels (templates/route_topk.cuh, templates/moe_routing.cuh) on the GPU,
// each against the CPU reference: top-k routing (expert counts that are not
// multiples of a warp, ties) and the token lists (chunk and split edges,
// many experts, empty experts, ids out of range, outputs poisoned
// beforehand).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "generator/utility_kernels.hpp"
#include "runtime/utility_launch.hpp"
#include "samoyeds/moe_reference.hpp"
#include "templates/kernel_args.cuh"
#include "test_util/gpu_check.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds::test {
namespace {

struct Lists {
  std::vector<int> offsets, list_token, position;
  std::vector<float> list_weight;
  int flag = 0;
};

// The reference's lists (build_token_lists), with ids out of range moved to
// one more expert, whose list comes last and is left out.
Lists expected_lists(const std::vector<int>& ids, const std::vector<float>& weights, int experts, int top_k) {
  Routing r{int64_t(ids.size()) / top_k, top_k, ids, weights};
  Lists want;
  for (int& id : r.expert)
    if (id < 0 || id >= experts) {
      id = experts;
      want.flag = kErrorBadTokenId;
    }
  const ExpertTokenLists l = build_token_lists(r, experts + 1);
  want.offsets.assign(l.offsets.begin(), l.offsets.end() - 1);
  want.position.assign(ids.size(), -1);
  for (int p = 0; p < want.offsets.back(); ++p) {
    const size_t entry = size_t(l.token[size_t(p)]) * size_t(top_k) + size_t(l.slot[size_t(p)]);
    want.list_token.push_back(l.token[size_t(p)]);
    want.list_weight.push_back(weights[entry]);
    want.position[entry] = p;
  }
  return want;
}

Lists gpu_lists(const std::vector<int>& ids, const std::vector<float>& weights, int tokens, int experts, int top_k) {
  KernelRuntime& rt = shared_runtime();
  const size_t n = ids.size();
  DeviceBuffer d_ids = to_device(ids), d_w = to_device(weights);
  DeviceBuffer offsets((size_t(experts) + 1) * 4), token(n * 4), weight(n * 4), position(n * 4), flag(4);
  // Poison: every output the kernel owns must be written (position included:
  // the layer does not clear it first).
  for (DeviceBuffer* b : {&offsets, &token, &weight, &position}) b->fill_bytes(0x5a);
  flag.fill_bytes(0);
  TokenListArgs l{};
  l.topk_ids = static_cast<const int*>(d_ids.data());
  l.topk_weights = static_cast<const float*>(d_w.data());
  l.offsets = static_cast<int*>(offsets.data());
  l.list_token = static_cast<int*>(token.data());
  l.list_weight = static_cast<float*>(weight.data());
  l.position = static_cast<int*>(position.data());
  l.error_flag = static_cast<int*>(flag.data());
  l.tokens = tokens;
  l.experts = experts;
  l.top_k = top_k;
  launch_token_lists(rt, DType::bf16, l, nullptr);
  Device::get().synchronize();
  Lists r;
  r.offsets = from_device<int>(offsets, size_t(experts) + 1);
  const size_t listed = size_t(std::max(0, r.offsets.back()));
  r.list_token = from_device<int>(token, std::min(listed, n));
  r.list_weight = from_device<float>(weight, std::min(listed, n));
  r.position = from_device<int>(position, n);
  r.flag = from_device<int>(flag, 1)[0];
  return r;
}

class MoeRoutingGpu : public ::testing::Test {
 protected:
  void SetUp() override { SAMOYEDS_REQUIRE_GPU(); }
};

TEST_F(MoeRoutingGpu, TokenListsMatchTheReference) {
  struct Case {
    int tokens, experts, top_k;
    double bad_fraction;
  };
  // BuildExpertLists writes a chunk of 1024 threads x 8 entries = 8192
  // entries at a time; launch_token_lists splits the entries about
  // SMs / experts ways (at most one split per 4096 entries), so on a
  // 132-SM GPU: one split of five chunks (5000 x 8 over 200 experts), two
  // splits of five chunks (7000 x 10 over 66), many splits whose edges are
  // not chunk multiples (20000 x 2 over 8, 2731 x 6 over 64).
  const Case cases[] = {{1, 1, 1, 0.0},       {3, 8, 2, 0.0},        {8192, 2, 2, 0.0},   {2730, 64, 6, 0.0},
                        {2731, 64, 6, 0.01},  {8193, 64, 2, 0.0},    {4096, 64, 6, 0.0},  {20000, 8, 2, 0.05},
                        {5, 3000, 8, 0.0},    {700, 2500, 32, 0.02}, {2048, 256, 8, 0.0}, {1, 65535, 32, 0.5},
                        {5000, 200, 8, 0.01}, {7000, 66, 10, 0.01}};
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("tokens={} experts={} top_k={} bad={}", c.tokens, c.experts, c.top_k, c.bad_fraction));
    const size_t n = size_t(c.tokens) * size_t(c.top_k);
    std::vector<int> ids(n);
    std::vector<float> weights(n);
    // Skewed: half the entries go to the first few experts, so lists differ
    // in length and some experts stay empty.
    std::uniform_int_distribution<int> any(0, c.experts - 1), few(0, std::min(c.experts, 4) - 1);
    std::uniform_real_distribution<double> u(0.0, 1.0);
    const int bad_ids[] = {-1, c.experts, 1 << 30, -(1 << 30)};
    for (size_t i = 0; i < n; ++i) {
      ids[i] = u(rng()) < 0.5 ? few(rng()) : any(rng());
      if (u(rng()) < c.bad_fraction) ids[i] = bad_ids[i % 4];
      weights[i] = float(u(rng()));
    }
    const Lists want = expected_lists(ids, weights, c.experts, c.top_k);
    const Lists got = gpu_lists(ids, weights, c.tokens, c.experts, c.top_k);
    EXPECT_EQ(got.offsets, want.offsets);
    EXPECT_EQ(got.list_token, want.list_token);
    EXPECT_EQ(got.list_weight, want.list_weight);
    EXPECT_EQ(got.position, want.position);
    EXPECT_EQ(got.flag, want.flag);
  }
}

// Logits a token ranks without near-ties: its experts take the values of a
// shuffled ladder, -2 .. 2 (exact in every dtype), or 4 values with `ties`
// (the lower id must win). What the GPU reads (in `dt`, or in float) and
// the reference sees are the same numbers.
struct TestLogits {
  std::vector<uint16_t> narrow;  // in the dtype
  std::vector<float> wide;       // the same values in float
  DenseF64 ref;
};
TestLogits ladder_logits(int tokens, int experts, DType dt, bool ties) {
  TestLogits l;
  const size_t n = size_t(tokens) * size_t(experts);
  l.narrow.resize(n);
  l.wide.resize(n);
  l.ref = {tokens, experts, std::vector<double>(n)};
  std::vector<int> ladder(static_cast<size_t>(experts));
  for (int t = 0; t < tokens; ++t) {
    std::iota(ladder.begin(), ladder.end(), 0);
    std::shuffle(ladder.begin(), ladder.end(), rng());
    for (int e = 0; e < experts; ++e) {
      const size_t i = size_t(t) * size_t(experts) + size_t(e);
      const int step = ladder[size_t(e)];
      // 2^-5 steps keep up to 128 rungs exact in f16 and bf16 within +-2.
      const float v = ties ? 0.5f * float(step % 4) : 4.0f * float(step % 128) / 128.0f - 2.0f + (step / 128) / 64.0f;
      l.narrow[i] = from_float(dt, v);
      l.wide[i] = to_float(dt, l.narrow[i]);
      l.ref.data[i] = l.wide[i];
    }
  }
  return l;
}

struct GpuRouting {
  std::vector<int> ids;
  std::vector<float> weights;
};
GpuRouting gpu_route(const TestLogits& l, bool fp32, DType dt, const MoeRouting& routing, int top_k) {
  KernelRuntime& rt = shared_runtime();
  const int tokens = int(l.ref.rows), experts = int(l.ref.cols);
  DeviceBuffer d_logits = fp32 ? to_device(l.wide) : to_device(l.narrow), bias;
  if (!routing.choice_bias.empty()) bias = to_device(routing.choice_bias);
  const size_t n = size_t(tokens) * size_t(top_k);
  DeviceBuffer ids(n * 4), weights(n * 4);
  ids.fill_bytes(0x5a);
  weights.fill_bytes(0x5a);
  RouteArgs r{};
  r.logits = d_logits.data();
  r.choice_bias = static_cast<const float*>(bias.data());
  r.topk_ids = static_cast<int*>(ids.data());
  r.topk_weights = static_cast<float*>(weights.data());
  r.tokens = tokens;
  r.experts = experts;
  r.top_k = top_k;
  r.method = int(routing.method);
  r.renormalize = routing.renormalize ? 1 : 0;
  r.groups = routing.groups;
  r.topk_groups = routing.topk_groups;
  r.scale = float(routing.scale);
  launch_route(rt, dt, fp32, r, nullptr);
  Device::get().synchronize();
  return {from_device<int>(ids, n), from_device<float>(weights, n)};
}

void expect_same_routing(const GpuRouting& got, const Routing& want) {
  EXPECT_EQ(got.ids, want.expert);
  ASSERT_EQ(got.weights.size(), want.weight.size());
  for (size_t i = 0; i < got.weights.size(); ++i)
    ASSERT_NEAR(got.weights[i], want.weight[i], 1e-5 + 1e-5 * std::fabs(want.weight[i])) << "entry " << i;
}

MoeRouting routing_of(RoutingMethod method, bool renormalize, double scale = 1.0) {
  MoeRouting r;
  r.method = method;
  r.renormalize = renormalize;
  r.scale = scale;
  return r;
}

TEST_F(MoeRoutingGpu, EveryMethodMatchesTheReferenceForLogitsInEachType) {
  struct Case {
    int tokens, experts, top_k;
    bool ties;
  };
  // 384 experts (Kimi-K2) take the path that does not stage them.
  const Case cases[] = {{5, 1, 1, false},      {100, 7, 2, false}, {300, 33, 6, false}, {64, 64, 6, true},
                        {1000, 160, 8, false}, {9, 40, 32, true},  {257, 8, 2, true},   {64, 256, 8, false},
                        {33, 384, 8, false}};
  const MoeRouting methods[] = {
      routing_of(RoutingMethod::SoftmaxTopK, true),         routing_of(RoutingMethod::SoftmaxTopK, false),
      routing_of(RoutingMethod::SigmoidGroupTopK, true, 2.5), routing_of(RoutingMethod::SigmoidGroupTopK, false),
      routing_of(RoutingMethod::TopKSoftmax, false)};
  for (const Case& c : cases)
    for (const MoeRouting& m : methods)
      for (DType dt : {DType::bf16, DType::f16})
        for (bool fp32 : {false, true}) {
          SCOPED_TRACE(fmt::format("tokens={} experts={} top_k={} ties={} {} renormalize={} logits in {}", c.tokens,
                                   c.experts, c.top_k, c.ties, routing_method_name(m.method), m.renormalize,
                                   fp32 ? "f32" : dtype_name(dt)));
          const TestLogits l = ladder_logits(c.tokens, c.experts, dt, c.ties);
          expect_same_routing(gpu_route(l, fp32, dt, m, c.top_k), reference_route(l.ref, c.top_k, m));
        }
}

// A token whose logits are all NaN gets no expert (id -1, which the token
// lists flag and skip) and reads nothing at a missing id; the other tokens
// route as the reference does. Staged (256 experts) and not (300).
TEST_F(MoeRoutingGpu, NanLogitsGiveNoExpertAndTheOtherTokensRouteAsBefore) {
  for (int experts : {256, 300})
    for (RoutingMethod method :
         {RoutingMethod::SoftmaxTopK, RoutingMethod::SigmoidGroupTopK, RoutingMethod::TopKSoftmax}) {
      SCOPED_TRACE(fmt::format("experts={} {}", experts, routing_method_name(method)));
      const MoeRouting m = routing_of(method, method != RoutingMethod::TopKSoftmax);
      TestLogits l = ladder_logits(3, experts, DType::bf16, false);
      const Routing want = reference_route(l.ref, 8, m);
      for (int e = 0; e < experts; ++e) l.wide[size_t(experts + e)] = NAN;
      const GpuRouting got = gpu_route(l, true, DType::bf16, m, 8);
      for (int j = 0; j < 8; ++j) {
        EXPECT_EQ(got.ids[size_t(j)], want.expert[size_t(j)]);
        EXPECT_EQ(got.ids[size_t(8 + j)], -1) << "slot " << j << " of the NaN token";
        EXPECT_EQ(got.ids[size_t(16 + j)], want.expert[size_t(16 + j)]);
      }
    }
}

// A token with fewer finite logits than top_k gets them, in order, then id
// -1 with weight 0; the weights of its picks stay finite (a round that finds
// nothing must not reach them). At 256 experts (the register path) and 300
// (the scans); softmax_topk's weights are NaN there by definition (the
// softmax over every logit), so only its ids are checked.
TEST_F(MoeRoutingGpu, TokensWithFewerFiniteLogitsThanTopKGetThoseAndFiniteWeights) {
  for (int experts : {256, 300})
    for (RoutingMethod method :
         {RoutingMethod::SoftmaxTopK, RoutingMethod::SigmoidGroupTopK, RoutingMethod::TopKSoftmax})
      for (bool renormalize : {false, true}) {
        SCOPED_TRACE(fmt::format("experts={} {} renormalize={}", experts, routing_method_name(method), renormalize));
        TestLogits l = ladder_logits(1, experts, DType::bf16, false);
        for (float& v : l.wide) v = NAN;
        l.wide[5] = 1.0f;
        l.wide[177] = 2.0f;
        const GpuRouting got = gpu_route(l, true, DType::bf16, routing_of(method, renormalize), 4);
        EXPECT_EQ(got.ids, (std::vector<int>{177, 5, -1, -1}));
        if (method == RoutingMethod::SoftmaxTopK) continue;
        double w0 = 0.0, w1 = 0.0;
        if (method == RoutingMethod::TopKSoftmax) {
          w0 = 1.0 / (1.0 + std::exp(-1.0));
          w1 = 1.0 - w0;
        } else {
          w0 = 1.0 / (1.0 + std::exp(-2.0));
          w1 = 1.0 / (1.0 + std::exp(-1.0));
          if (renormalize) {
            const double sum = w0 + w1;
            w0 /= sum;
            w1 /= sum;
          }
        }
        EXPECT_NEAR(got.weights[0], w0, 1e-5);
        EXPECT_NEAR(got.weights[1], w1, 1e-5);
        EXPECT_EQ(got.weights[2], 0.0f);
        EXPECT_EQ(got.weights[3], 0.0f);
      }
}

// DeepSeek-V3's choice: 8 groups of 32, the best 4 groups, a choice bias.
// The scores lie on a lattice of step d (sigmoid values, from float logits)
// and each group's bias is a whole number of steps plus group/(groups+1) of
// one, so no two experts and no two groups' scores come closer than d/9
// (far above float's rounding) while the bias still reorders experts
// across groups. A check that the groups and the bias change the choice
// keeps the case from passing by accident.
TEST_F(MoeRoutingGpu, GroupLimitedChoiceWithABiasMatchesTheReference) {
  struct Case {
    int tokens, experts, top_k, groups, topk_groups;
    int shift = -1;  // the groups' biases in +-shift steps (-1: experts / 4)
  };
  // Groups of 1, 2, 4, 8 and 16 lanes take the register path; 160 / 32 and
  // 72 / 8 (groups of 5 and 9 experts) the scans. Wide groups take small
  // biases: shifts of experts / 4 steps put every token's best experts in
  // one group, where the groups change nothing.
  const Case cases[] = {{1, 256, 8, 8, 4},     {64, 256, 8, 8, 4},     {1000, 256, 8, 8, 4}, {100, 64, 6, 8, 3},
                        {64, 128, 8, 8, 4},    {64, 256, 8, 4, 2, 2},  {40, 256, 8, 2, 1, 2}, {33, 160, 6, 32, 5},
                        {7, 72, 1, 8, 1}};
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("tokens={} experts={} top_k={} groups={} topk_groups={}", c.tokens, c.experts, c.top_k,
                             c.groups, c.topk_groups));
    const int size = c.experts / c.groups;
    const double d = 0.9 / c.experts;
    MoeRouting m = routing_of(RoutingMethod::SigmoidGroupTopK, true, 2.5);
    m.groups = c.groups;
    m.topk_groups = c.topk_groups;
    const int most = c.shift >= 0 ? c.shift : c.experts / 4;
    std::uniform_int_distribution<int> shift(-most, most);
    for (int g = 0; g < c.groups; ++g)
      m.choice_bias.resize(size_t((g + 1) * size), float(d * (shift(rng()) + double(g + 1) / (c.groups + 1))));
    TestLogits l;
    const size_t n = size_t(c.tokens) * size_t(c.experts);
    l.wide.resize(n);
    l.ref = {c.tokens, c.experts, std::vector<double>(n)};
    std::vector<int> ladder(static_cast<size_t>(c.experts));
    for (int t = 0; t < c.tokens; ++t) {
      std::iota(ladder.begin(), ladder.end(), 0);
      std::shuffle(ladder.begin(), ladder.end(), rng());
      for (int e = 0; e < c.experts; ++e) {
        const double score = 0.05 + d * ladder[size_t(e)];
        const size_t i = size_t(t) * size_t(c.experts) + size_t(e);
        l.wide[i] = float(std::log(score / (1.0 - score)));
        l.ref.data[i] = l.wide[i];
      }
    }
    const Routing want = reference_route(l.ref, c.top_k, m);
    expect_same_routing(gpu_route(l, true, DType::bf16, m, c.top_k), want);
    MoeRouting ungrouped = m;
    ungrouped.groups = ungrouped.topk_groups = 1;
    MoeRouting unbiased = m;
    unbiased.choice_bias.clear();
    if (c.tokens >= 33) {  // a few tokens may choose the same either way
      EXPECT_NE(reference_route(l.ref, c.top_k, ungrouped).expert, want.expert) << "the groups changed nothing";
      EXPECT_NE(reference_route(l.ref, c.top_k, unbiased).expert, want.expert) << "the bias changed nothing";
    }
  }
}

}  // namespace
}  // namespace samoyeds::test
