#include <algorithm>
#include <cstdio>
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

ModelPreset parse_hf_config(const std::string& json, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(json);  // JSON is YAML
  } catch (const YAML::Exception& e) {
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: JSON syntax error: {}", origin, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) throw Error(ErrorCode::InvalidArgument, origin + ": expected a JSON object");
  auto first_int = [&](std::initializer_list<const char*> keys, bool required) -> int64_t {
    for (const char* k : keys)
      if (root[k] && !root[k].IsNull()) {
        try {
          return root[k].as<int64_t>();
        } catch (const YAML::Exception&) {
          throw Error(ErrorCode::InvalidArgument,
                      fmt::format("{}:{}: '{}' must be an integer", origin, root[k].Mark().line + 1, k));
        }
      }
    if (required) {
      std::string names;
      for (const char* k : keys) names += (names.empty() ? "" : " or ") + std::string(k);
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}: not an MoE config: no {}", origin, names));
    }
    return 0;
  };
  ModelPreset m;
  m.name = root["_name_or_path"] ? root["_name_or_path"].as<std::string>()
                                  : (root["model_type"] ? root["model_type"].as<std::string>() : origin);
  m.display_name = m.name;
  m.hidden_size = first_int({"hidden_size", "d_model"}, true);
  m.ffn_size = first_int({"moe_intermediate_size", "expert_intermediate_size", "intermediate_size", "ffn_dim"}, true);
  m.experts = int(first_int({"num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts"}, true));
  m.top_k = int(first_int({"num_experts_per_tok", "moe_top_k", "top_k"}, true));
  m.shared_experts = int(first_int({"n_shared_experts", "num_shared_experts"}, false));
  m.shared_ffn_size = first_int({"shared_expert_intermediate_size"}, false);
  if (m.shared_ffn_size > 0 && m.shared_experts == 0) m.shared_experts = 1;
  if (m.shared_experts > 0 && m.shared_ffn_size == 0) m.shared_ffn_size = m.ffn_size;
  if (m.hidden_size < 1 || m.ffn_size < 1 || m.experts < 1 || m.top_k < 1 || m.top_k > m.experts)
    throw Error(ErrorCode::InvalidArgument, origin + ": inconsistent MoE sizes");
  return m;
}

static std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::IoError, "cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelPreset load_model(const std::string& name_or_path) {
  for (const detail::EmbeddedFile* f = detail::kEmbeddedModelPresets; f->name; ++f)
    if (name_or_path + ".yaml" == f->name) return parse_model_yaml(f->text, "configs/models/" + std::string(f->name));
  if (!std::ifstream(name_or_path)) {
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("unknown model '{}' (presets: {}; or give a .yaml or config.json file)", name_or_path,
                            known));
  }
  const std::string text = read_file(name_or_path);
  const bool json = name_or_path.size() >= 5 && name_or_path.compare(name_or_path.size() - 5, 5, ".json") == 0;
  return json ? parse_hf_config(text, name_or_path) : parse_model_yaml(text, name_or_path);
}

TuningSweep parse_sweep_yaml(const std::string& text, const std::string& origin) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: YAML syntax error: {}", origin, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) throw Error(ErrorCode::InvalidArgument, origin + ": expected a mapping");
  static const std::set<std::string> known = {"models", "dtypes", "ops", "buckets", "rows", "segment", "max_configs"};
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key))
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: unknown key '{}' (known: models, dtypes, ops, buckets, rows, segment, "
                              "max_configs)",
                              origin, kv.first.Mark().line + 1, key));
  }
  // Errors from parsing a value carry its line.
  auto at = [&](const YAML::Node& n, const auto& fn) {
    try {
      return fn();
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("{}:{}: {}", origin, n.Mark().line + 1, e.what()));
    } catch (const YAML::Exception& e) {
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: {}", origin, n.Mark().line + 1, e.msg));
    }
  };
  auto list = [&](const char* key) {
    const YAML::Node n = root[key];
    if (n && !n.IsSequence())
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: '{}' must be a list", origin, n.Mark().line + 1, key));
    return n;
  };
  TuningSweep sw;
  const YAML::Node models = list("models");
  if (!models || models.size() == 0) throw Error(ErrorCode::InvalidArgument, origin + ": 'models' lists no model");
  for (const auto& m : models) sw.models.push_back(at(m, [&] { return load_model(m.as<std::string>()); }));
  if (const YAML::Node d = list("dtypes")) {
    sw.dtypes.clear();
    for (const auto& v : d) sw.dtypes.push_back(at(v, [&] { return parse_dtype(v.as<std::string>()); }));
  }
  if (const YAML::Node o = list("ops")) {
    sw.ops.clear();
    for (const auto& v : o) {
      const Op op = at(v, [&] { return parse_op(v.as<std::string>()); });
      if (op == Op::Ssmm)
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("{}:{}: a model sweep tunes gated_up and down", origin, v.Mark().line + 1));
      sw.ops.push_back(op);
    }
  }
  if (const YAML::Node b = list("buckets"))
    for (const auto& v : b) {
      const int64_t t = at(v, [&] { return v.as<int64_t>(); });
      if (t < 1 || t > (1 << 20))
        throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: bucket {} out of range", origin, v.Mark().line + 1, t));
      sw.buckets.push_back(t);
    }
  std::sort(sw.buckets.begin(), sw.buckets.end());
  sw.buckets.erase(std::unique(sw.buckets.begin(), sw.buckets.end()), sw.buckets.end());
  {
    const YAML::Node r = root["rows"], v = root["segment"];
    const std::string rows = r ? at(r, [&] { return r.as<std::string>(); }) : "1:2";
    const int segment = v ? at(v, [&] { return v.as<int>(); }) : 128;
    sw.sparsity = at(r ? r : (v ? v : root), [&] { return SparsityParams::from_rows(rows, segment); });
  }
  if (const YAML::Node v = root["max_configs"]) sw.max_configs = at(v, [&] { return v.as<int>(); });
  return sw;
}

TuningSweep load_sweep(const std::string& path) { return parse_sweep_yaml(read_file(path), path); }

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
  up.grouped = model.experts > 1;  // MoeLayer launches the routed experts grouped
  up.epilogue = Epilogue::GatedSilu;
  KernelSpec down = up;
  down.op = Op::Down;
  down.m = model.hidden_size;
  down.k = model.ffn_size;
  down.epilogue = Epilogue::None;
  up.validate();
  down.validate();
  if (model.shared_experts == 0) return {up, down};
  // MoeLayer stacks the shared experts into one up and one down projection.
  const int64_t shared_ffn = int64_t(model.shared_experts) * model.shared_ffn_size;
  KernelSpec shared_up = up;
  shared_up.m = shared_ffn;
  shared_up.experts = 1;
  shared_up.grouped = false;
  KernelSpec shared_down = down;
  shared_down.op = Op::Ssmm;
  shared_down.k = shared_ffn;
  shared_down.experts = 1;
  shared_down.grouped = false;
  shared_up.validate();
  shared_down.validate();
  return {up, down, shared_up, shared_down};
}

}  // namespace samoyeds
