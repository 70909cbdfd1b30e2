#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <type_traits>
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


// What every model file must make consistent, however it was read.
void check_model(ModelPreset& m, const std::string& origin) {
  if (m.choice_bias && m.routing.method != RoutingMethod::SigmoidGroupTopK)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}: a choice bias is sigmoid_group_topk routing's, not {}'s", origin,
                            routing_method_name(m.routing.method)));
  if (m.shared_expert_gate && m.shared_experts != 1)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}: a shared-expert gate needs exactly one shared expert, not {}", origin,
                            m.shared_experts));
  if ((m.swiglu_limit > 0) != (m.swiglu_alpha > 0) || m.swiglu_limit < 0 || m.swiglu_alpha < 0)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}: swiglu_alpha {} and swiglu_limit {}: both positive (clamped SwiGLU) or both absent",
                            origin, m.swiglu_alpha, m.swiglu_limit));
  try {
    m.routing.validate(m.experts, m.top_k);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("{}: {}", origin, message_of(e)));
  }
}

}  // namespace

ExpertActivation ModelPreset::activation() const {
  if (swiglu_limit > 0) return {ExpertActivation::Kind::ClampedSwiglu, swiglu_alpha, swiglu_limit};
  return {};
}

std::string ModelPreset::unsupported() const {
  // Biases only with the clamped SwiGLU (gpt-oss), whose epilogue adds them.
  if (expert_bias != (swiglu_limit > 0))
    return "expert biases without the clamped SwiGLU, or the clamped SwiGLU without biases";
  return "";
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
  static const std::set<std::string> known = {
      "name",         "display_name",  "hidden_size",  "ffn_size",     "experts",      "top_k",
      "shared_experts", "shared_ffn_size", "routing",  "renormalize",  "groups",       "topk_groups",
      "routed_scaling_factor", "choice_bias", "router_logits", "shared_expert_gate", "expert_bias",
      "swiglu_alpha", "swiglu_limit"};
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (!known.count(key)) {
      std::string names;
      for (const auto& k : known) names += (names.empty() ? "" : ", ") + k;
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("{}:{}: unknown key '{}' (known: {})", origin, kv.first.Mark().line + 1, key, names));
    }
  }
  // A value of the wrong type is an error naming its key and line.
  auto get = [&](const char* key, auto fallback) {
    const YAML::Node n = root[key];
    if (!n) return fallback;
    try {
      return n.as<decltype(fallback)>();
    } catch (const YAML::Exception&) {
      throw Error(ErrorCode::InvalidArgument, fmt::format("{}:{}: '{}' must be {}", origin, n.Mark().line + 1, key,
                                                          std::is_same_v<decltype(fallback), bool>     ? "true or false"
                                                          : std::is_same_v<decltype(fallback), double> ? "a number"
                                                                                                       : "a string"));
    }
  };
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
  auto at_line = [&](const char* key, const auto& fn) {
    try {
      return fn();
    } catch (const Error& e) {
      const YAML::Node n = root[key];
      throw Error(e.code(), fmt::format("{}:{}: {}", origin, n ? n.Mark().line + 1 : 1, message_of(e)));
    }
  };
  m.routing.method = at_line("routing", [&] { return parse_routing_method(get("routing", std::string("softmax_topk"))); });
  // topk_softmax's weights sum to 1 already; the others renormalize unless told not to.
  m.routing.renormalize = get("renormalize", m.routing.method != RoutingMethod::TopKSoftmax);
  m.routing.groups = int(get_int("groups", false, 1));
  m.routing.topk_groups = int(get_int("topk_groups", false, 1));
  if (!m.routing.groups) m.routing.groups = 1;
  if (!m.routing.topk_groups) m.routing.topk_groups = 1;
  m.routing.scale = get("routed_scaling_factor", 1.0);
  m.choice_bias = get("choice_bias", false);
  const std::string logits = get("router_logits", std::string("dtype"));
  if (logits != "dtype" && logits != "f32")
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}:{}: 'router_logits' = {}: dtype (the layer's) or f32", origin,
                            root["router_logits"].Mark().line + 1, logits));
  m.router_fp32 = logits == "f32";
  m.shared_expert_gate = get("shared_expert_gate", false);
  m.expert_bias = get("expert_bias", false);
  m.swiglu_alpha = get("swiglu_alpha", 0.0);
  m.swiglu_limit = get("swiglu_limit", 0.0);
  check_model(m, origin);
  return m;
}


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

  auto refuse = [&](const char* key, const std::string& why) {
    throw Error(ErrorCode::Unsupported,
                fmt::format("{}: '{}' = {}: {}", origin, key, root.at(key).dump(), why));
  };
  const std::string type = present("model_type") ? string_of("model_type") : "";

  ModelPreset m;
  m.name = present("_name_or_path") ? string_of("_name_or_path") : (type.empty() ? origin : type);
  m.display_name = m.name;
  m.hidden_size = first_int({"hidden_size", "d_model"}, true);
  m.experts = int(first_int({"num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts"}, true));
  m.top_k = int(first_int({"num_experts_per_tok", "experts_per_token", "moe_top_k", "top_k"}, true));
  // The expert width each modeling file reads: OLMoE, Mixtral and gpt-oss
  // have no moe_intermediate_size (their intermediate_size is the expert's);
  // the others' intermediate_size is their dense layers'.
  if (type == "olmoe" || type == "mixtral" || type == "gpt_oss")
    m.ffn_size = first_int({"intermediate_size"}, true);
  else
    m.ffn_size = first_int({"moe_intermediate_size", "expert_intermediate_size", "intermediate_size", "ffn_dim"}, true);
  auto norm_topk_prob = [&](bool fallback) { return present("norm_topk_prob") ? bool_of("norm_topk_prob") : fallback; };

  // Fields that would make another layer, each with whether it asks for
  // more than softmax top-k over SiLU-gated experts without biases. A field
  // the model_type's reference does not read is refused when it asks for
  // more: the layer would not compute what its author meant.
  struct Field {
    const char* key;
    std::function<bool()> asks;
    const char* what;
  };
  const Field fields[] = {
      {"scoring_func", [&] { return string_of("scoring_func") != "softmax"; }, "routing scores other than softmax"},
      {"topk_method", [&] { return string_of("topk_method") != "greedy"; }, "group-limited or bias-corrected top-k"},
      {"n_group", [&] { return int_of("n_group", kMaxSize) > 1; }, "group-limited routing"},
      {"topk_group", [&] { return int_of("topk_group", kMaxSize) > 1; }, "group-limited routing"},
      {"routed_scaling_factor", [&] { return number_of("routed_scaling_factor") != 1.0; },
       "scaling the routed weights"},
      {"shared_expert_intermediate_size", [&] { return int_of("shared_expert_intermediate_size", kMaxSize) > 0; },
       "a shared expert behind a sigmoid gate"},
      {"mlp_bias", [&] { return bool_of("mlp_bias"); }, "expert biases"},
      {"moe_bias", [&] { return bool_of("moe_bias"); }, "expert biases"},
      {"expert_bias", [&] { return bool_of("expert_bias"); }, "expert biases"},
      {"use_expert_bias", [&] { return bool_of("use_expert_bias"); }, "expert biases"},
      {"swiglu_limit", [&] { return true; }, "clamped SwiGLU"},
      {"hidden_act", [&] { return string_of("hidden_act") != "silu" && string_of("hidden_act") != "swish"; },
       "experts gated by an activation other than SiLU"},
      {"hidden_activation",
       [&] { return string_of("hidden_activation") != "silu" && string_of("hidden_activation") != "swish"; },
       "experts gated by an activation other than SiLU"},
  };
  auto refuse_unread = [&](std::initializer_list<const char*> read) {
    for (const Field& f : fields) {
      if (!present(f.key) || std::find_if(read.begin(), read.end(), [&](const char* k) {
                               return std::string(k) == f.key;
                             }) != read.end())
        continue;
      if (f.asks())
        refuse(f.key, fmt::format("{} is not implemented for model_type '{}' (its layer runs as {})", f.what,
                                  type.empty() ? "(none)" : type,
                                  type.empty() ? "softmax top-k over SiLU-gated experts" : "its reference computes it"));
    }
  };

  if (type == "mixtral") {
    refuse_unread({});  // softmax top-k, always renormalized
  } else if (type == "qwen2_moe" || type == "qwen3_moe" || type == "olmoe") {
    m.routing.renormalize = norm_topk_prob(false);
    if (type == "qwen2_moe") {
      refuse_unread({"shared_expert_intermediate_size"});
      // transformers' Qwen2MoeConfig defaults it to 5632.
      const int64_t shared = present("shared_expert_intermediate_size")
                                 ? int_of("shared_expert_intermediate_size", kMaxSize)
                                 : 5632;
      if (shared > 0) {
        m.shared_experts = 1;
        m.shared_ffn_size = shared;
        m.shared_expert_gate = true;
      }
    } else {
      refuse_unread({});
    }
  } else if (type == "deepseek_v3" || type == "kimi_k2") {
    // transformers' DeepseekV3 reads neither scoring_func nor topk_method
    // and always routes this way; a config that asks otherwise is refused,
    // not silently overruled.
    refuse_unread({"n_group", "topk_group", "routed_scaling_factor", "scoring_func", "topk_method"});
    if (present("scoring_func") && string_of("scoring_func") != "sigmoid")
      refuse("scoring_func", "DeepSeek-V3's reference always scores by sigmoid");
    if (present("topk_method") && string_of("topk_method") != "noaux_tc")
      refuse("topk_method", "DeepSeek-V3's reference always chooses group-limited with a bias (noaux_tc)");
    m.routing.method = RoutingMethod::SigmoidGroupTopK;
    m.routing.renormalize = norm_topk_prob(true);
    m.routing.groups = present("n_group") ? int(int_of("n_group", kMaxSize)) : 8;
    m.routing.topk_groups = present("topk_group") ? int(int_of("topk_group", kMaxSize)) : 4;
    m.routing.scale = present("routed_scaling_factor") ? number_of("routed_scaling_factor") : 2.5;
    m.choice_bias = true;
    m.router_fp32 = true;
    m.shared_experts = present("n_shared_experts") ? int(int_of("n_shared_experts", kMaxSize)) : 1;
    m.shared_ffn_size = m.shared_experts > 0 ? m.ffn_size : 0;
  } else if (type == "gpt_oss") {
    // Its experts ignore hidden_act: the clamped SwiGLU is their own.
    refuse_unread({"swiglu_limit", "hidden_act"});
    m.routing.method = RoutingMethod::TopKSoftmax;
    m.routing.renormalize = false;
    m.expert_bias = true;
    m.swiglu_alpha = present("swiglu_alpha") ? number_of("swiglu_alpha") : 1.702;
    m.swiglu_limit = present("swiglu_limit") ? number_of("swiglu_limit") : 7.0;
  } else {
    // A model_type whose modeling file routes otherwise (PhiMoE, DeepSeek-V2,
    // ...) would run as another layer: only these and untyped configs pass,
    // read by the common names as softmax top-k over SiLU-gated experts,
    // shared experts added unscaled.
    if (!type.empty() && type != "deepseek" && type != "minicpm")
      refuse("model_type",
             "not a model_type samoyeds reads (mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v3, kimi_k2, gpt_oss, "
             "deepseek, minicpm; or leave model_type out to read the common fields as softmax top-k)");
    refuse_unread({});
    m.routing.renormalize = norm_topk_prob(true);
    m.shared_experts = int(first_int({"n_shared_experts", "num_shared_experts"}, false));
    if (m.shared_experts > 0) m.shared_ffn_size = m.ffn_size;
  }
  if (m.hidden_size < 1 || m.ffn_size < 1 || m.experts < 1 || m.top_k < 1 || m.top_k > m.experts)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("{}: inconsistent MoE sizes (hidden {}, expert ffn {}, {} experts, top-{})", origin,
                            m.hidden_size, m.ffn_size, m.experts, m.top_k));
  check_model(m, origin);
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
  // Kernels for a layer MoeLayer would refuse would be another model's: refused, not quietly substituted.
  if (!model.unsupported().empty())
    throw Error(ErrorCode::Unsupported, fmt::format("{}: {}", model.name, model.unsupported()));
  KernelSpec up;
  up.op = Op::GatedUp;
  up.arch = arch;
  up.dtype = dtype;
  up.m = model.ffn_size;
  up.k = model.hidden_size;
  up.sparsity = sparsity;
  up.experts = model.experts;
  up.grouped = model.experts > 1;  // MoeLayer launches the routed experts grouped
  // gpt-oss: the clamped SwiGLU with the gate and up biases, and the down bias.
  up.epilogue = model.swiglu_limit > 0 ? Epilogue::ClampedSwiglu : Epilogue::GatedSilu;
  KernelSpec down = up;
  down.op = Op::Down;
  down.m = model.hidden_size;
  down.k = model.ffn_size;
  down.epilogue = model.expert_bias ? Epilogue::Bias : Epilogue::None;
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
