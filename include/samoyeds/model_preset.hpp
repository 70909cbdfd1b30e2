// MoE model shapes: the presets in configs/models (compiled into the library)
// or any YAML file of the same form.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/kernel_spec.hpp"
#include "samoyeds/moe_reference.hpp"  // ExpertActivation
#include "samoyeds/moe_routing.hpp"

namespace samoyeds {

struct ModelPreset {
  std::string name, display_name;
  int64_t hidden_size = 0, ffn_size = 0;
  int experts = 0, top_k = 0;
  int shared_experts = 0;
  int64_t shared_ffn_size = 0;  // per shared expert
  // The router: its method (its choice_bias values are weights, so left
  // empty), whether it has a choice bias, whether it computes its logits in
  // float (DeepSeek-V3) rather than in the layer's dtype.
  MoeRouting routing;
  bool choice_bias = false;
  bool router_fp32 = false;
  // Qwen2-MoE: the shared expert's output is scaled by sigmoid(gate . x).
  bool shared_expert_gate = false;
  // gpt-oss's experts: biases on every projection and a clamped SwiGLU,
  // (up + 1) * g * sigmoid(alpha * g), g = min(gate, limit), up clamped to
  // +-limit. 0: SiLU-gated experts without biases.
  bool expert_bias = false;
  double swiglu_alpha = 0.0, swiglu_limit = 0.0;
  // How its routed experts join gate and up, as the layer takes it: the
  // clamped SwiGLU where swiglu_limit is set, else silu(g) * u.
  ExpertActivation activation() const;
  // What of this model the MoE layer cannot run yet; empty when it can.
  std::string unsupported() const;
};

std::vector<std::string> model_preset_names();
// A preset name ("mixtral-8x7b"), a path to a preset-style .yaml file, or a
// Hugging Face config.json of an MoE model. Unknown names, unknown keys and
// bad values throw Error naming the file and line.
ModelPreset load_model(const std::string& name_or_path);
ModelPreset parse_model_yaml(const std::string& text, const std::string& origin);
// Hugging Face config.json: each model_type's fields as its transformers
// modeling file reads them (mixtral, qwen2_moe, qwen3_moe, olmoe,
// deepseek_v3, kimi_k2, gpt_oss; others by the common field names, refusing
// routing or experts the layer would not compute as that model does).
ModelPreset parse_hf_config(const std::string& json, const std::string& origin);

// A tuning sweep (samoyeds tune --sweep FILE.yaml).
struct TuningSweep {
  std::vector<ModelPreset> models;
  std::vector<DType> dtypes = {DType::bf16};
  std::vector<Op> ops = {Op::GatedUp, Op::Down};
  std::vector<int64_t> buckets;  // empty: the default grid
  SparsityParams sparsity;
  int max_configs = 0;  // 0: the whole search space
};
TuningSweep parse_sweep_yaml(const std::string& text, const std::string& origin);
TuningSweep load_sweep(const std::string& path);

// The expert kernels a model's MoE layer launches (MoeLayer): the routed
// experts' gated up-projection [ffn, hidden] and weighted down-projection
// [hidden, ffn], both grouped over `experts` (spec.grouped, unless there is
// only one expert); then, for a model with shared
// experts, their single launches over every token: the gated up-projection
// [shared_experts * shared_ffn_size, hidden] and the plain (ssmm) down-
// projection [hidden, shared_experts * shared_ffn_size], experts = 1.
std::vector<KernelSpec> model_expert_specs(const ModelPreset& model, const std::string& arch, DType dtype,
                                           const SparsityParams& sparsity);

}  // namespace samoyeds
