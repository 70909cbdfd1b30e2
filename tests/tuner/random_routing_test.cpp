// The routings grouped tuning times on: every token in exactly top_k expert
// lists (distinct experts), lists in expert order, renormalized weights, the
// same batch for the same seed.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "tuner/random_routing.hpp"

namespace samoyeds::tuning {
namespace {

TEST(RandomRouting, EveryTokenReachesTopKDistinctExpertsWithRenormalizedWeights) {
  const int64_t tokens = 300;
  const int experts = 64, top_k = 6;
  const RoutedBatch b = random_routed_batch(tokens, experts, top_k, 11);
  ASSERT_EQ(b.offsets.size(), size_t(experts + 1));
  EXPECT_EQ(b.offsets.front(), 0);
  EXPECT_EQ(b.offsets.back(), tokens * top_k);
  ASSERT_EQ(b.lists.token.size(), size_t(tokens * top_k));
  ASSERT_EQ(b.list_weight.size(), b.lists.token.size());
  std::map<int32_t, std::set<int>> experts_of;
  std::map<int32_t, double> weight_of;
  int used = 0;
  for (int e = 0; e < experts; ++e) {
    ASSERT_LE(b.offsets[size_t(e)], b.offsets[size_t(e) + 1]);
    used += b.offsets[size_t(e)] < b.offsets[size_t(e) + 1];
    for (int32_t i = b.offsets[size_t(e)]; i < b.offsets[size_t(e) + 1]; ++i) {
      const int32_t t = b.lists.token[size_t(i)];
      ASSERT_GE(t, 0);
      ASSERT_LT(t, tokens);
      EXPECT_TRUE(experts_of[t].insert(e).second) << "token " << t << " twice in expert " << e;
      weight_of[t] += b.list_weight[size_t(i)];
    }
  }
  EXPECT_EQ(experts_of.size(), size_t(tokens));
  for (const auto& [t, es] : experts_of) EXPECT_EQ(es.size(), size_t(top_k));
  for (const auto& [t, w] : weight_of) EXPECT_NEAR(w, 1.0, 1e-5);
  EXPECT_GT(used, experts / 2);  // spread over the experts, as a router's logits give
  const RoutedBatch again = random_routed_batch(tokens, experts, top_k, 11);
  EXPECT_EQ(again.lists.token, b.lists.token);
  EXPECT_EQ(again.offsets, b.offsets);
  EXPECT_NE(random_routed_batch(tokens, experts, top_k, 12).lists.token, b.lists.token);
}

}  // namespace
}  // namespace samoyeds::tuning
