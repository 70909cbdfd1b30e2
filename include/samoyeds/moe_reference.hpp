// Float64 reference of a whole MoE layer (DESIGN.md op 3): softmax top-k
// routing, per-expert token lists, gated SiLU experts, optional shared
// experts, and the routing-weighted combine. The GPU layer is checked
// against this.
#pragma once
#include <cstdint>
#include <vector>

#include "samoyeds/reference.hpp"

namespace samoyeds {

struct Routing {
  int64_t tokens = 0;
  int top_k = 0;
  std::vector<int32_t> expert;  // [tokens, top_k], by decreasing probability
  std::vector<float> weight;    // [tokens, top_k]
};

// softmax(logits[t, :]) then the top_k experts (ties to the lower expert id);
// with renormalize the chosen weights are divided by their sum.
Routing reference_route(const DenseF64& logits, int top_k, bool renormalize);

// Tokens routed to each expert, in increasing token order: the tokens of
// expert e are rows offsets[e] .. offsets[e+1]-1 of `token` and `slot`
// (slot = which of the token's top_k choices it is).
struct ExpertTokenLists {
  std::vector<int64_t> offsets;  // [experts + 1]
  std::vector<int32_t> token;
  std::vector<int32_t> slot;
};
ExpertTokenLists build_token_lists(const Routing& routing, int experts);

struct ExpertWeightsF64 {
  DenseF64 w1, w3;  // [ffn, hidden]: gate and up projections
  DenseF64 w2;      // [hidden, ffn]: down projection
};

// Y[t] = sum_j weight[t, j] * E_{expert[t, j]}(X[t]) + sum_s S_s(X[t]),
// E(x) = W2 . (silu(W1 . x) * (W3 . x)); shared experts S_s always on.
DenseF64 reference_moe_layer(const DenseF64& x, const Routing& routing, const std::vector<ExpertWeightsF64>& experts,
                             const std::vector<ExpertWeightsF64>& shared = {});

}  // namespace samoyeds
