// How an MoE layer picks each token's experts and their weights from the
// router's logits: one method per model family, computed as that family's
// reference implementation (Hugging Face transformers) computes it.
#pragma once
#include <string>
#include <vector>

namespace samoyeds {

enum class RoutingMethod {
  // Softmax over all experts, then the k largest (Mixtral, Qwen2/3-MoE, OLMoE).
  SoftmaxTopK,
  // DeepSeek-V3/R1, Kimi-K2: sigmoid scores. The choice adds a per-expert
  // bias and keeps only the best `topk_groups` of `groups` equal groups of
  // experts (a group scores the sum of its two best biased scores); the
  // weights are the chosen experts' unbiased scores.
  SigmoidGroupTopK,
  // gpt-oss: the k largest logits, then softmax over those k.
  TopKSoftmax,
};
const char* routing_method_name(RoutingMethod method);   // "softmax_topk", ...
RoutingMethod parse_routing_method(const std::string& name);  // throws InvalidArgument naming the known ones

struct MoeRouting {
  RoutingMethod method = RoutingMethod::SoftmaxTopK;
  // Divide the k weights by their sum (norm_topk_prob); SigmoidGroupTopK
  // adds 1e-20 to the sum, as DeepSeek-V3 does. TopKSoftmax's weights sum
  // to 1 already.
  bool renormalize = true;
  int groups = 1, topk_groups = 1;  // SigmoidGroupTopK: n_group, topk_group
  double scale = 1.0;               // routed_scaling_factor, after renormalizing
  // e_score_correction_bias: [experts] or empty, added for choosing only
  // (SigmoidGroupTopK).
  std::vector<float> choice_bias;

  // Throws InvalidArgument naming the field that does not fit the method,
  // the expert count or top_k.
  void validate(int experts, int top_k) const;
};

}  // namespace samoyeds
