#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
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
  // Sizes and counts stay within an int (the counts are stored as one):
  // 4294967304 experts is an error, never 8.
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
    constexpr int64_t max_value = std::numeric_limits<int32_t>::max();
    if (v < min_value || v > max_value)
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: '{}' = {} is out of range ({} to {})", origin,
                                                          n.Mark().line + 1, key, v, min_value, max_value));
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

namespace {

// An error's message without what()'s "samoyeds: <code>: " prefix, to wrap
// it in a file and line without naming the prefix twice.
std::string message_of(const Error& e) {
  const std::string what = e.what(), prefix = std::string("samoyeds: ") + error_code_name(e.code()) + ": ";
  return what.compare(0, prefix.size(), prefix) == 0 ? what.substr(prefix.size()) : what;
}

// 1-based line of byte offset `pos` in `text`.
size_t line_of(const std::string& text, size_t pos) {
  return 1 + size_t(std::count(text.begin(), text.begin() + std::min(pos, text.size()), '\n'));
}

// Strict JSON: nlohmann's parser, a duplicate key anywhere is an error naming it.
nlohmann::json parse_strict_json(const std::string& text, const std::string& origin) {
  std::vector<std::set<std::string>> keys;  // one set per open object
  auto on_event = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& value) {
    using E = nlohmann::json::parse_event_t;
    if (event == E::object_start) keys.emplace_back();
    if (event == E::object_end && !keys.empty()) keys.pop_back();
    if (event == E::key && !keys.empty() && !keys.back().insert(value.get<std::string>()).second)
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}: duplicate key '{}'", origin, value.get<std::string>()));
    return true;
  };
  try {
    return nlohmann::json::parse(text, on_event);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 3, column 5: ..."
    std::string what = e.what();
    const size_t colon = what.find("parse error");
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: JSON syntax error: {}", origin, line_of(text, e.byte),
                                                        colon == std::string::npos ? what : what.substr(colon)));
  }
}

}  // namespace

ModelPreset parse_hf_config(const std::string& text, const std::string& origin) {
  const nlohmann::json root = parse_strict_json(text, origin);
  if (!root.is_object()) throw Error(ErrorCode::InvalidArgument, origin + ": expected a JSON object");
  auto present = [&](const char* k) { return root.contains(k) && !root.at(k).is_null(); };
  auto int_of = [&](const char* k, int64_t max_value) -> int64_t {
    const nlohmann::json& v = root.at(k);
    if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(max_value)
                               : (v.is_number_integer() && (v.get<int64_t>() < 0 || v.get<int64_t>() > max_value)))
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}: '{}' = {} is out of range (0 to {})", origin, k, v.dump(), max_value));
    if (!v.is_number_integer())
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}: '{}' must be an integer, not {} {}", origin, k, v.type_name(), v.dump()));
    return v.get<int64_t>();
  };
  auto string_of = [&](const char* k) -> std::string {
    const nlohmann::json& v = root.at(k);
    if (!v.is_string())
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}: '{}' must be a string, not {} {}", origin, k, v.type_name(), v.dump()));
    return v.get<std::string>();
  };
  auto number_of = [&](const char* k) -> double {
    const nlohmann::json& v = root.at(k);
    if (!v.is_number())
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}: '{}' must be a number, not {} {}", origin, k, v.type_name(), v.dump()));
    return v.get<double>();
  };
  auto bool_of = [&](const char* k) -> bool {
    const nlohmann::json& v = root.at(k);
    if (!v.is_boolean())
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}: '{}' must be true or false, not {} {}", origin, k, v.type_name(), v.dump()));
    return v.get<bool>();
  };
  constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
  auto first_int = [&](std::initializer_list<const char*> keys, bool required) -> int64_t {
    for (const char* k : keys)
      if (present(k)) return int_of(k, kMaxSize);
    if (required) {
      std::string names;
      for (const char* k : keys) names += (names.empty() ? "" : " or ") + std::string(k);
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}: not an MoE config: no {}", origin, names));
    }
    return 0;
  };

  // The layer implemented here: softmax over all experts, top-k, SiLU-gated
  // experts without biases, shared experts added unscaled. Any other routing
  // or expert would run as a different layer, so it is refused by its field.
  auto refuse = [&](const char* key, const std::string& value, const char* why) {
    throw Error(ErrorCode::Unsupported,
                fmt::format("{}: '{}' = {}: {} is not implemented (samoyeds runs softmax top-k routing over "
                            "SiLU-gated experts without biases)",
                            origin, key, value, why));
  };
  if (present("scoring_func") && string_of("scoring_func") != "softmax")
    refuse("scoring_func", root.at("scoring_func").dump(), "routing scores other than softmax");
  if (present("topk_method") && string_of("topk_method") != "greedy")
    refuse("topk_method", root.at("topk_method").dump(), "group-limited or bias-corrected top-k routing");
  if (present("n_group") && int_of("n_group", kMaxSize) > 1)
    refuse("n_group", root.at("n_group").dump(), "group-limited routing");
  if (present("topk_group") && int_of("topk_group", kMaxSize) > 1)
    refuse("topk_group", root.at("topk_group").dump(), "group-limited routing");
  if (present("routed_scaling_factor") && number_of("routed_scaling_factor") != 1.0)
    refuse("routed_scaling_factor", root.at("routed_scaling_factor").dump(), "scaling the routed experts' sum");
  if (present("shared_expert_intermediate_size") && int_of("shared_expert_intermediate_size", kMaxSize) > 0)
    refuse("shared_expert_intermediate_size", root.at("shared_expert_intermediate_size").dump(),
           "a shared expert behind a sigmoid gate (Qwen2-MoE)");
  for (const char* k : {"hidden_act", "hidden_activation"})
    if (present(k) && string_of(k) != "silu" && string_of(k) != "swish")
      refuse(k, root.at(k).dump(), "an expert activation other than SiLU");
  for (const char* k : {"mlp_bias", "moe_bias", "expert_bias", "use_expert_bias"})
    if (present(k) && bool_of(k)) refuse(k, "true", "expert biases");
  if (present("swiglu_limit")) refuse("swiglu_limit", root.at("swiglu_limit").dump(), "clamped SwiGLU (gpt-oss)");
  if (present("model_type") && string_of("model_type") == "gpt_oss")
    refuse("model_type", "\"gpt_oss\"", "expert biases and clamped SwiGLU");

  ModelPreset m;
  m.name = present("_name_or_path") ? string_of("_name_or_path")
                                     : (present("model_type") ? string_of("model_type") : origin);
  m.display_name = m.name;
  m.hidden_size = first_int({"hidden_size", "d_model"}, true);
  m.ffn_size = first_int({"moe_intermediate_size", "expert_intermediate_size", "intermediate_size", "ffn_dim"}, true);
  m.experts = int(first_int({"num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts"}, true));
  m.top_k = int(first_int({"num_experts_per_tok", "moe_top_k", "top_k"}, true));
  m.shared_experts = int(first_int({"n_shared_experts", "num_shared_experts"}, false));
  if (m.shared_experts > 0) m.shared_ffn_size = m.ffn_size;
  if (m.hidden_size < 1 || m.ffn_size < 1 || m.experts < 1 || m.top_k < 1 || m.top_k > m.experts)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}: inconsistent MoE sizes (hidden {}, expert ffn {}, {} experts, top-{})", origin,
                            m.hidden_size, m.ffn_size, m.experts, m.top_k));
  return m;
}

static std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    throw Error(ErrorCode::IoError, "'" + path + "' is a folder, not a file");
  if (!std::filesystem::exists(path, ec)) throw Error(ErrorCode::IoError, "'" + path + "': no such file");
  std::ifstream in(path);
  if (!in) throw Error(ErrorCode::IoError, "cannot read '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

ModelPreset load_model(const std::string& name_or_path) {
  namespace fs = std::filesystem;
  for (const detail::EmbeddedFile* f = detail::kEmbeddedModelPresets; f->name; ++f)
    if (name_or_path + ".yaml" == f->name) return parse_model_yaml(f->text, "configs/models/" + std::string(f->name));
  auto ends_with = [&](const char* suffix) {
    const std::string s(suffix);
    return name_or_path.size() >= s.size() && name_or_path.compare(name_or_path.size() - s.size(), s.size(), s) == 0;
  };
  const bool json = ends_with(".json");
  std::error_code ec;
  if (fs::is_directory(name_or_path, ec))
    throw Error(ErrorCode::IoError, fmt::format("'{}' is a folder, not a model file (a preset .yaml or a Hugging "
                                                "Face config.json)",
                                                name_or_path));
  if (!fs::exists(name_or_path, ec)) {
    // Something that looks like a path is a missing file, not an unknown preset.
    if (json || ends_with(".yaml") || ends_with(".yml") || name_or_path.find('/') != std::string::npos)
      throw Error(ErrorCode::IoError, fmt::format("'{}': no such file", name_or_path));
    std::string known;
    for (const auto& n : model_preset_names()) known += (known.empty() ? "" : ", ") + n;
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("unknown model '{}' (presets: {}; or give a .yaml or config.json file)", name_or_path,
                            known));
  }
  const std::string text = read_file(name_or_path);
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
      throw Error(e.code(), fmt::format("{}:{}: {}", origin, n.Mark().line + 1, message_of(e)));
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
  // A model file named relative to the sweep is found beside the sweep, not in the working folder.
  const std::filesystem::path sweep_folder = std::filesystem::path(origin).parent_path();
  const std::vector<std::string> presets = model_preset_names();
  for (const auto& m : models)
    sw.models.push_back(at(m, [&] {
      std::string name = m.as<std::string>();
      if (std::find(presets.begin(), presets.end(), name) == presets.end() &&
          std::filesystem::path(name).is_relative() && !sweep_folder.empty())
        name = (sweep_folder / name).string();
      return load_model(name);
    }));
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
  if (const YAML::Node b = list("buckets")) {
    if (b.size() == 0)
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: 'buckets' lists no bucket (leave it out for the default grid)", origin,
                              b.Mark().line + 1));
    for (const auto& v : b) {
      const int64_t t = at(v, [&] { return v.as<int64_t>(); });
      if (t < 1 || t > (1 << 20))
        throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: bucket {} out of range", origin, v.Mark().line + 1, t));
      sw.buckets.push_back(t);
    }
  }
  std::sort(sw.buckets.begin(), sw.buckets.end());
  sw.buckets.erase(std::unique(sw.buckets.begin(), sw.buckets.end()), sw.buckets.end());
  {
    const YAML::Node r = root["rows"], v = root["segment"];
    const std::string rows = r ? at(r, [&] { return r.as<std::string>(); }) : "1:2";
    const int segment = v ? at(v, [&] { return v.as<int>(); }) : 128;
    sw.sparsity = at(r ? r : (v ? v : root), [&] { return SparsityParams::from_rows(rows, segment); });
  }
  if (const YAML::Node v = root["max_configs"]) {
    const int64_t n = at(v, [&] { return v.as<int64_t>(); });
    if (n < 0 || n > (1 << 30))
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: 'max_configs' = {} is out of range (0: all, up to {})", origin,
                              v.Mark().line + 1, n, 1 << 30));
    sw.max_configs = int(n);
  }
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
