#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include "generator/embedded_file.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"

namespace samoyeds {

std::vector<std::string> model_preset_names() {
  std::vector<std::string> names;
  for (const detail::EmbeddedFile* f = detail::kEmbeddedModelPresets; f->name; ++f) {
    std::string n = f->name;
    names.push_back(n.substr(0, n.size() - 5));  // drop ".yaml"
  }
  return names;
}

ModelPreset parse_model_yaml(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}:{}: YAML syntax error: {}", origin, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) throw Error(ErrorCode::InvalidArgument, origin + ": expected a mapping of model fields");
  static const std::set<std::string> known = {"name",  "display_name",   "hidden_size",    "ffn_size", "experts",
                                              "top_k", "shared_experts", "shared_ffn_size"};
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key))
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: unknown key '{}'", origin, kv.first.Mark().line + 1, key));
  }
  auto get_int = [&](const char* key, bool required, int64_t min_value) -> int64_t {
    const YAML::Node n = root[key];
    if (!n) {
      if (required) throw Error(ErrorCode::InvalidArgument, fmt::format("{}: missing key '{}'", origin, key));
      return 0;
    }
    int64_t v = 0;
    try {
      v = n.as<int64_t>();
    } catch (const YAML::Exception&) {
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: '{}' must be an integer", origin, n.Mark().line + 1, key));
    }
    if (v < min_value)
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: '{}' = {} must be >= {}", origin, n.Mark().line + 1, key, v, min_value));
    return v;
  };
  ModelPreset m;
  if (!root["name"]) throw Error(ErrorCode::InvalidArgument, origin + ": missing key 'name'");
  m.name = root["name"].as<std::string>();
  m.display_name = root["display_name"] ? root["display_name"].as<std::string>() : m.name;
  m.hidden_size = get_int("hidden_size", true, 1);
  m.ffn_size = get_int("ffn_size", true, 1);
  m.experts = int(get_int("experts", true, 1));
  m.top_k = int(get_int("top_k", true, 1));
  m.shared_experts = int(get_int("shared_experts", false, 0));
  m.shared_ffn_size = get_int("shared_ffn_size", false, 0);
  if (m.top_k > m.experts)
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}: top_k {} > experts {}", origin, m.top_k, m.experts));
  return m;
}

ModelPreset load_model(const std::string& name_or_path) {
  for (const detail::EmbeddedFile* f = detail::kEmbeddedModelPresets; f->name; ++f)
    if (name_or_path + ".yaml" == f->name) return parse_model_yaml(f->text, "configs/models/" + std::string(f->name));
  std::ifstream in(name_or_path);
  if (!in) {
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("unknown model '{}' (presets: {}; or give a .yaml file)", name_or_path, known));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_model_yaml(ss.str(), name_or_path);
}

std::vector<KernelSpec> model_expert_specs(const ModelPreset& model, const std::string& arch, DType dtype,
                                           const SparsityParams& sparsity) {
  KernelSpec up;
  up.op = Op::GatedUp;
  up.arch = arch;
  up.dtype = dtype;
  up.m = model.ffn_size;
  up.k = model.hidden_size;
  up.sparsity = sparsity;
  up.experts = model.experts;
  up.epilogue = Epilogue::GatedSilu;
  KernelSpec down = up;
  down.op = Op::Down;
  down.m = model.hidden_size;
  down.k = model.ffn_size;
  down.epilogue = Epilogue::None;
  up.validate();
  down.validate();
  return {up, down};
}

}  // namespace samoyeds
