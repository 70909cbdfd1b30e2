// The MoE layer's routing kernels (templates/moe_routing.cuh) on the GPU,
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

TEST_F(MoeRoutingGpu, TopkMatchesTheReference) {
  struct Case {
    int tokens, experts, top_k;
    bool renormalize, ties;
  };
  const Case cases[] = {{5, 1, 1, true, false},    {100, 7, 2, true, false},  {300, 33, 6, false, false},
                        {64, 64, 6, true, true},    {1000, 160, 8, true, false}, {9, 40, 32, true, true},
                        {257, 8, 2, false, true}};
  KernelRuntime& rt = shared_runtime();
  for (const Case& c : cases)
    for (DType dt : {DType::bf16, DType::f16}) {
      SCOPED_TRACE(fmt::format("tokens={} experts={} top_k={} renormalize={} ties={} {}", c.tokens, c.experts,
                               c.top_k, c.renormalize, c.ties, dtype_name(dt)));
      // With ties the logits take 4 values (the lower id must win); without,
      // a shuffled ladder per token (no near-ties after rounding).
      std::vector<uint16_t> logits(size_t(c.tokens) * size_t(c.experts));
      DenseF64 ref_logits{c.tokens, c.experts, std::vector<double>(logits.size())};
      std::vector<int> ladder(size_t(c.experts));
      for (int t = 0; t < c.tokens; ++t) {
        std::iota(ladder.begin(), ladder.end(), 0);
        std::shuffle(ladder.begin(), ladder.end(), rng());
        for (int e = 0; e < c.experts; ++e) {
          const size_t i = size_t(t) * size_t(c.experts) + size_t(e);
          const float v = c.ties ? 0.5f * float(ladder[size_t(e)] % 4) : 0.125f * float(ladder[size_t(e)]) - 2.0f;
          logits[i] = from_float(dt, v);
          ref_logits.data[i] = to_float(dt, logits[i]);
        }
      }
      const Routing want = reference_route(ref_logits, c.top_k, c.renormalize);
      DeviceBuffer d_logits = to_device(logits), ids(want.expert.size() * 4), weights(want.weight.size() * 4);
      ids.fill_bytes(0x5a);
      weights.fill_bytes(0x5a);
      RouteArgs r{};
      r.logits = static_cast<const unsigned short*>(d_logits.data());
      r.topk_ids = static_cast<int*>(ids.data());
      r.topk_weights = static_cast<float*>(weights.data());
      r.tokens = c.tokens;
      r.experts = c.experts;
      r.top_k = c.top_k;
      r.renormalize = c.renormalize ? 1 : 0;
      const unsigned warps_per_block = unsigned(utility_kernel_threads(UtilityKernel::RouteTopk) / 32);
      launch_utility(rt, UtilityKernel::RouteTopk, dt, (unsigned(c.tokens) + warps_per_block - 1) / warps_per_block, 1,
                     &r, nullptr);
      Device::get().synchronize();
      EXPECT_EQ(from_device<int>(ids, want.expert.size()), want.expert);
      const std::vector<float> got_w = from_device<float>(weights, want.weight.size());
      for (size_t i = 0; i < got_w.size(); ++i)
        ASSERT_NEAR(got_w[i], want.weight[i], 1e-5 + 1e-5 * std::fabs(want.weight[i])) << "entry " << i;
    }
}

}  // namespace
}  // namespace samoyeds::test
