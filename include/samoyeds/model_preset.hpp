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
// A preset name ("mixtral-8x7b") or a path to a .yaml file. Unknown names,
// unknown keys and bad values throw Error naming the file and line.
ModelPreset load_model(const std::string& name_or_path);
ModelPreset parse_model_yaml(const std::string& text, const std::string& origin);

// The expert kernels a model needs: gated up-projection [ffn, hidden] and
// down-projection [hidden, ffn].
std::vector<KernelSpec> model_expert_specs(const ModelPreset& model, const std::string& arch, DType dtype,
                                           const SparsityParams& sparsity);

}  // namespace samoyeds
