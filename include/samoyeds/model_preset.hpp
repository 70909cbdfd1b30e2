// MoE model shapes: the presets in configs/models (compiled into the library)
// or any YAML file of the same form.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

struct ModelPreset {
  std::string name, display_name;
  int64_t hidden_size = 0, ffn_size = 0;
  int experts = 0, top_k = 0;
  int shared_experts = 0;
  int64_t shared_ffn_size = 0;  // per shared expert
};

std::vector<std::string> model_preset_names();
// A preset name ("mixtral-8x7b"), a path to a preset-style .yaml file, or a
// Hugging Face config.json of an MoE model. Unknown names, unknown keys and
// bad values throw Error naming the file and line.
ModelPreset load_model(const std::string& name_or_path);
ModelPreset parse_model_yaml(const std::string& text, const std::string& origin);
// Hugging Face config.json (Mixtral, Qwen-MoE, DeepSeek-MoE, OpenMoE ... field names).
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
