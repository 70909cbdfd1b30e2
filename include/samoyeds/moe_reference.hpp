// Float64 reference of a whole MoE layer (DESIGN.md op 3): routing by each
// model family's method, per-expert token lists, gated SiLU experts, optional shared
// experts, and the routing-weighted combine. The GPU layer is checked
// against this.
#pragma once
#include <cstdint>
#include <vector>

#include "samoyeds/moe_routing.hpp"
#include "samoyeds/reference.hpp"

namespace samoyeds {

struct Routing {
  int64_t tokens = 0;
  int top_k = 0;
  std::vector<int32_t> expert;  // [tokens, top_k], by decreasing probability
  std::vector<float> weight;    // [tokens, top_k]
};

// Each token's top_k experts and weights by `routing`'s method
// (samoyeds/moe_routing.hpp), in the order of what the choice ranks
// (ties to the lower expert id; to the lower group id for groups).
Routing reference_route(const DenseF64& logits, int top_k, const MoeRouting& routing = {});

// Tokens routed to each expert, in increasing token order: the tokens of
// expert e are rows offsets[e] .. offsets[e+1]-1 of `token` and `slot`
// (slot = which of the token's top_k choices it is).
struct ExpertTokenLists {
  std::vector<int64_t> offsets;  // [experts + 1]
  std::vector<int32_t> token;
  std::vector<int32_t> slot;
};
ExpertTokenLists build_token_lists(const Routing& routing, int experts);

// How an expert joins its gate and up projections: silu(g) * u, or
// gpt-oss's clamped SwiGLU, (u' + 1) * g' * sigmoid(alpha g') with
// g' = min(g, limit) and u' = u clamped to [-limit, limit].
struct ExpertActivation {
  enum class Kind { Silu, ClampedSwiglu } kind = Kind::Silu;
  double alpha = 1.702, limit = 7.0;
};

struct ExpertWeightsF64 {
  DenseF64 w1, w3;  // [ffn, hidden]: gate and up projections
  DenseF64 w2;      // [hidden, ffn]: down projection
  // Biases of the projections (gpt-oss), added before the activation and
  // after the down projection: [ffn], [ffn], [hidden], or empty for none.
  std::vector<double> b1, b3, b2;
  ExpertActivation activation;
};

// Y[t] = sum_j weight[t, j] * E_{expert[t, j]}(X[t]) + g(X[t]) * sum_s S_s(X[t]),
// E(x) = W2 . act(W1 . x + b1, W3 . x + b3) + b2 (act: silu(g) * u unless the
// expert says otherwise, biases only where given); shared experts S_s always on;
// g(x) = sigmoid(shared_gate . x) with a shared gate [hidden] (Qwen2-MoE), else 1.
DenseF64 reference_moe_layer(const DenseF64& x, const Routing& routing, const std::vector<ExpertWeightsF64>& experts,
                             const std::vector<ExpertWeightsF64>& shared = {},
                             const std::vector<double>& shared_gate = {});

}  // namespace samoyeds
