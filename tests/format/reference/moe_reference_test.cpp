#include <gtest/gtest.h>

#include <cmath>

#include "samoyeds/error.hpp"
#include "samoyeds/moe_reference.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds {
namespace {

DenseF64 random_f64(int64_t r, int64_t c, double scale) {
  std::normal_distribution<double> d(0.0, scale);
  DenseF64 m{r, c, std::vector<double>(size_t(r * c))};
  for (auto& v : m.data) v = d(test::rng());
  return m;
}

TEST(MoeReference, RoutingTakesTheLargestProbabilitiesWithTiesToTheLowerExpert) {
  const DenseF64 logits{2, 4, {0.0, 2.0, 1.0, 2.0, /**/ 3.0, -1.0, 3.0, 0.0}};
  MoeRouting plain;
  plain.renormalize = false;
  const Routing r = reference_route(logits, 2, plain);
  EXPECT_EQ(r.expert, (std::vector<int32_t>{1, 3, 0, 2}));
  const double z0 = 1 + 2 * std::exp(2.0) + std::exp(1.0);
  EXPECT_NEAR(r.weight[0], std::exp(2.0) / z0, 1e-7);
  const Routing rn = reference_route(logits, 2);
  EXPECT_NEAR(rn.weight[0] + rn.weight[1], 1.0, 1e-6);
  EXPECT_NEAR(rn.weight[0], 0.5, 1e-6);
  EXPECT_THROW(reference_route(logits, 5), Error);
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Worked by hand: groups of 2 score {g0 0.15, g1 1.12, g2 1.55, g3 1.07}
// after the bias, so groups 2 and 1 stay in; expert 7 (the best score, in
// group 3) and expert 0 (a good score, biased down) are out.
TEST(MoeReference, GroupLimitedSigmoidChoosesByTheBiasedScoresAndWeighsByTheUnbiased) {
  const DenseF64 logits{1, 8, {2.0, -1.0, 0.0, 0.5, 1.0, 1.5, -2.0, 3.0}};
  MoeRouting m;
  m.method = RoutingMethod::SigmoidGroupTopK;
  m.groups = 4;
  m.topk_groups = 2;
  m.scale = 2.5;
  m.choice_bias = {-1.0f, 0, 0, 0, 0, 0, 0, 0};
  const Routing r = reference_route(logits, 3, m);
  EXPECT_EQ(r.expert, (std::vector<int32_t>{5, 4, 3}));
  const double sum = sigmoid(1.5) + sigmoid(1.0) + sigmoid(0.5) + 1e-20;
  EXPECT_NEAR(r.weight[0], 2.5 * sigmoid(1.5) / sum, 1e-6);
  EXPECT_NEAR(r.weight[2], 2.5 * sigmoid(0.5) / sum, 1e-6);
  m.renormalize = false;
  EXPECT_NEAR(reference_route(logits, 3, m).weight[1], 2.5 * sigmoid(1.0), 1e-6);
  m.groups = m.topk_groups = 1;  // every group: expert 7 first
  EXPECT_EQ(reference_route(logits, 3, m).expert, (std::vector<int32_t>{7, 5, 4}));
}

TEST(MoeReference, TopKSoftmaxWeighsOnlyTheChosenLogits) {
  const DenseF64 logits{1, 4, {1.0, 3.0, 2.0, 0.0}};
  MoeRouting m;
  m.method = RoutingMethod::TopKSoftmax;
  m.renormalize = false;
  const Routing r = reference_route(logits, 2, m);
  EXPECT_EQ(r.expert, (std::vector<int32_t>{1, 2}));
  EXPECT_NEAR(r.weight[0], std::exp(1.0) / (std::exp(1.0) + 1.0), 1e-7);
  EXPECT_NEAR(r.weight[1], 1.0 / (std::exp(1.0) + 1.0), 1e-7);
}

TEST(MoeReference, RoutingThatDoesNotFitItsMethodIsRefusedByField) {
  const DenseF64 logits{1, 8, std::vector<double>(8, 0.0)};
  auto refused = [&](MoeRouting m, int top_k, const char* field) {
    try {
      reference_route(logits, top_k, m);
    } catch (const Error& e) {
      return std::string(e.what()).find(field) != std::string::npos;
    }
    return false;
  };
  MoeRouting m;
  m.choice_bias.assign(8, 0.0f);
  EXPECT_TRUE(refused(m, 2, "bias"));  // softmax has no choice bias
  m = {};
  m.groups = 2;
  EXPECT_TRUE(refused(m, 2, "groups"));
  m = {};
  m.method = RoutingMethod::TopKSoftmax;
  EXPECT_TRUE(refused(m, 2, "renormalize"));
  m = {};
  m.method = RoutingMethod::SigmoidGroupTopK;
  m.groups = 3;  // 8 experts do not split in 3
  EXPECT_TRUE(refused(m, 2, "groups 3"));
  m.groups = 4;
  m.topk_groups = 1;  // one group of 2 cannot give 3
  EXPECT_TRUE(refused(m, 3, "topk_groups"));
  m.topk_groups = 2;
  m.choice_bias.assign(7, 0.0f);
  EXPECT_TRUE(refused(m, 3, "bias of 7"));
  m.choice_bias.clear();
  m.scale = 0.0;
  EXPECT_TRUE(refused(m, 3, "scale"));
}

TEST(MoeReference, TokenListsHoldEveryTokenOnceInIncreasingOrder) {
  const DenseF64 logits = random_f64(50, 8, 1.0);
  const Routing r = reference_route(logits, 3);
  const ExpertTokenLists l = build_token_lists(r, 8);
  ASSERT_EQ(l.offsets.back(), 150);
  for (int e = 0; e < 8; ++e)
    for (int64_t i = l.offsets[size_t(e)]; i < l.offsets[size_t(e) + 1]; ++i) {
      if (i > l.offsets[size_t(e)]) {
        EXPECT_LT(l.token[size_t(i) - 1], l.token[size_t(i)]);
      }
      EXPECT_EQ(r.expert[size_t(l.token[size_t(i)] * 3 + l.slot[size_t(i)])], e);
    }
}

// The per-token layer against the same layer assembled per expert from the
// single-expert references (gather by token list, gated up, weighted down).
// gpt-oss's expert worked by hand, one token, hidden 2, ffn 2: row 0's gate
// passes the clamp (8 -> 7) and row 1's up does (-9 -> -7); biases on all
// three projections.
TEST(MoeReference, ClampedSwigluExpertWithBiasesIsGptOssFormula) {
  ExpertWeightsF64 w{DenseF64{2, 2, {1.0, 2.0, 0.5, 0.0}}, DenseF64{2, 2, {0.0, 1.0, -3.0, -3.0}},
                     DenseF64{2, 2, {1.0, 0.0, 0.5, -1.0}}};
  w.b1 = {2.0, -0.5};
  w.b3 = {0.25, 0.0};
  w.b2 = {0.1, -0.2};
  w.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
  const DenseF64 x{1, 2, {2.0, 2.0}};
  // gate = (1*2 + 2*2 + 2, 0.5*2 - 0.5) = (8, 0.5); up = (2 + 0.25, -12) = (2.25, -12)
  auto glu = [](double g, double u) { return (u + 1.0) * g / (1.0 + std::exp(-1.702 * g)); };
  const double h0 = glu(7.0, 2.25), h1 = glu(0.5, -7.0);
  const Routing r{1, 1, {0}, {0.5f}};
  const DenseF64 y = reference_moe_layer(x, r, {w});
  EXPECT_NEAR(y.data[0], 0.5 * (h0 + 0.1), 1e-12);
  EXPECT_NEAR(y.data[1], 0.5 * (0.5 * h0 - h1 - 0.2), 1e-12);
  w.b2 = {1.0};  // one bias for two rows
  EXPECT_THROW(reference_moe_layer(x, r, {w}), Error);
}

TEST(MoeReference, LayerEqualsThePerExpertComposition) {
  const int64_t T = 23, H = 32, I = 48;
  const int E = 6, K = 2;
  const DenseF64 x = random_f64(T, H, 1.0);
  std::vector<ExpertWeightsF64> experts, shared;
  for (int e = 0; e < E + 1; ++e) {
    ExpertWeightsF64 w{random_f64(I, H, 0.2), random_f64(I, H, 0.2), random_f64(H, I, 0.2)};
    (e < E ? experts : shared).push_back(w);
  }
  const Routing r = reference_route(random_f64(T, E, 2.0), K);
  const DenseF64 y = reference_moe_layer(x, r, experts, shared);

  const ExpertTokenLists l = build_token_lists(r, E);
  DenseF64 y2{T, H, std::vector<double>(size_t(T * H), 0.0)};
  for (int e = 0; e < E; ++e) {
    std::vector<int32_t> ids(l.token.begin() + l.offsets[size_t(e)], l.token.begin() + l.offsets[size_t(e) + 1]);
    if (ids.empty()) continue;
    std::vector<float> p;
    for (int64_t i = l.offsets[size_t(e)]; i < l.offsets[size_t(e) + 1]; ++i)
      p.push_back(r.weight[size_t(l.token[size_t(i)] * K + l.slot[size_t(i)])]);
    const DenseF64 h = reference_ssmm(experts[size_t(e)].w1, x, ids, Epilogue::GatedSilu, &experts[size_t(e)].w3);
    reference_down_combine(experts[size_t(e)].w2, h, ids, p, y2);
  }
  std::vector<int32_t> all(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) all[size_t(t)] = int32_t(t);
  const DenseF64 hs = reference_ssmm(shared[0].w1, x, all, Epilogue::GatedSilu, &shared[0].w3);
  reference_down_combine(shared[0].w2, hs, all, std::vector<float>(size_t(T), 1.0f), y2);
  EXPECT_LT(relative_frobenius_error(y.data, y2.data), 1e-7);
}

}  // namespace
}  // namespace samoyeds
