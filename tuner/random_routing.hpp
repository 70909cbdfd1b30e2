// A router's choice for a batch, for tuning and benchmarking the grouped
// launches: normally distributed logits (standard deviation 2, as run-moe
// draws them), softmax top-k, renormalized, then the per-expert token lists
// the grouped kernels read. Deterministic in the seed.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "samoyeds/moe_reference.hpp"

namespace samoyeds::tuning {

struct RoutedBatch {
  ExpertTokenLists lists;          // expert e's rows: lists.offsets[e] .. offsets[e+1]-1
  std::vector<int32_t> offsets;    // the same offsets as the kernels read them
  std::vector<float> list_weight;  // each list row's routing weight
};

// Each token's choice alone: softmax top-k of the logits, renormalized.
inline Routing random_routing(int64_t tokens, int experts, int top_k, uint32_t seed) {
  DenseF64 logits{tokens, experts, std::vector<double>(size_t(tokens * experts))};
  std::mt19937 gen(seed);
  std::normal_distribution<double> nd(0.0, 2.0);
  for (auto& v : logits.data) v = nd(gen);
  return reference_route(logits, top_k);
}

inline RoutedBatch random_routed_batch(int64_t tokens, int experts, int top_k, uint32_t seed) {
  const Routing routing = random_routing(tokens, experts, top_k, seed);
  RoutedBatch b;
  b.lists = build_token_lists(routing, experts);
  b.offsets.assign(b.lists.offsets.begin(), b.lists.offsets.end());
  b.list_weight.resize(b.lists.token.size());
  for (size_t i = 0; i < b.lists.token.size(); ++i)
    b.list_weight[i] = routing.weight[size_t(int64_t(b.lists.token[i]) * top_k + b.lists.slot[i])];
  return b;
}

}  // namespace samoyeds::tuning
