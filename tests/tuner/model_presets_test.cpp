#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include <unistd.h>

#include <fmt/format.h>

#include "generator/utility_kernels.hpp"
#include "runtime/fp8_routed_experts.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/model_kernels.hpp"

namespace samoyeds {
namespace {

TEST(ModelPresets, TheSeedPapersModelsAndTodaysAreAllThere) {
  const auto names = model_preset_names();
  for (const char* n : {"mixtral-8x7b", "mixtral-8x22b", "minicpm-moe-8x2b", "openmoe-8b", "openmoe-34b",
                        "deepseek-moe-16b", "qwen1.5-moe-a2.7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3",
                        "gpt-oss-20b", "gpt-oss-120b", "olmoe-1b-7b"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  const ModelPreset m = load_model("mixtral-8x7b");
  EXPECT_EQ(m.hidden_size, 4096);
  EXPECT_EQ(m.ffn_size, 14336);
  EXPECT_EQ(m.experts, 8);
  EXPECT_EQ(m.top_k, 2);
  const ModelPreset d = load_model("deepseek-moe-16b");
  EXPECT_EQ(d.shared_experts, 2);
  EXPECT_EQ(d.top_k, 6);
}

// The config.json fields of each checkpoint (its MoE part), and the preset
// of the same model: reading the one must give the other.
TEST(ModelPresets, EachServedModelsConfigJsonGivesItsPreset) {
  const std::pair<const char*, const char*> models[] = {
      {"qwen3-30b-a3b", R"({"model_type": "qwen3_moe", "hidden_size": 2048, "intermediate_size": 6144,
          "moe_intermediate_size": 768, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
          "decoder_sparse_step": 1, "mlp_only_layers": [], "hidden_act": "silu", "router_aux_loss_coef": 0.001})"},
      {"qwen3-235b-a22b", R"({"model_type": "qwen3_moe", "hidden_size": 4096, "intermediate_size": 12288,
          "moe_intermediate_size": 1536, "num_experts": 128, "num_experts_per_tok": 8, "norm_topk_prob": true,
          "hidden_act": "silu"})"},
      {"deepseek-v3", R"({"model_type": "deepseek_v3", "hidden_size": 7168, "intermediate_size": 18432,
          "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8,
          "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5, "norm_topk_prob": true,
          "scoring_func": "sigmoid", "topk_method": "noaux_tc", "first_k_dense_replace": 3, "hidden_act": "silu"})"},
      {"gpt-oss-20b", R"({"model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880,
          "num_local_experts": 32, "num_experts_per_tok": 4, "experts_per_token": 4, "swiglu_limit": 7.0,
          "hidden_act": "silu", "router_aux_loss_coef": 0.9})"},
      {"gpt-oss-120b", R"({"model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880,
          "num_local_experts": 128, "num_experts_per_tok": 4, "swiglu_limit": 7.0, "hidden_act": "silu"})"},
      {"olmoe-1b-7b", R"({"model_type": "olmoe", "hidden_size": 2048, "intermediate_size": 1024,
          "num_experts": 64, "num_experts_per_tok": 8, "norm_topk_prob": false, "hidden_act": "silu"})"},
      {"qwen1.5-moe-a2.7b", R"({"model_type": "qwen2_moe", "hidden_size": 2048, "intermediate_size": 5632,
          "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632, "num_experts": 60,
          "num_experts_per_tok": 4, "hidden_act": "silu"})"},
  };
  for (const auto& [name, json] : models) {
    SCOPED_TRACE(name);
    const ModelPreset want = load_model(name), got = parse_hf_config(json, "config.json");
    EXPECT_EQ(got.hidden_size, want.hidden_size);
    EXPECT_EQ(got.ffn_size, want.ffn_size);
    EXPECT_EQ(got.experts, want.experts);
    EXPECT_EQ(got.top_k, want.top_k);
    EXPECT_EQ(got.shared_experts, want.shared_experts);
    EXPECT_EQ(got.shared_ffn_size, want.shared_ffn_size);
    EXPECT_EQ(got.routing.method, want.routing.method);
    EXPECT_EQ(got.routing.renormalize, want.routing.renormalize);
    EXPECT_EQ(got.routing.groups, want.routing.groups);
    EXPECT_EQ(got.routing.topk_groups, want.routing.topk_groups);
    EXPECT_EQ(got.routing.scale, want.routing.scale);
    EXPECT_EQ(got.choice_bias, want.choice_bias);
    EXPECT_EQ(got.router_fp32, want.router_fp32);
    EXPECT_EQ(got.shared_expert_gate, want.shared_expert_gate);
    EXPECT_EQ(got.expert_bias, want.expert_bias);
    EXPECT_EQ(got.swiglu_alpha, want.swiglu_alpha);
    EXPECT_EQ(got.swiglu_limit, want.swiglu_limit);
  }
  const ModelPreset ds = load_model("deepseek-v3");
  EXPECT_EQ(ds.routing.method, RoutingMethod::SigmoidGroupTopK);
  EXPECT_TRUE(ds.unsupported().empty());
  EXPECT_EQ(load_model("gpt-oss-20b").routing.method, RoutingMethod::TopKSoftmax);
  EXPECT_EQ(load_model("gpt-oss-120b").unsupported(), "");
  // Its kernels: the clamped SwiGLU and the down bias.
  const auto specs = model_expert_specs(load_model("gpt-oss-20b"), "sm_90a", DType::bf16, {128, 1, 2});
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].epilogue, Epilogue::ClampedSwiglu);
  EXPECT_EQ(specs[1].epilogue, Epilogue::Bias);
  EXPECT_EQ(specs[0].experts, 32);
  EXPECT_FALSE(load_model("qwen1.5-moe-a2.7b").routing.renormalize);
  EXPECT_TRUE(load_model("mixtral-8x7b").routing.renormalize);
}

TEST(HfConfig, FieldsAModelTypesReferenceDoesNotReadAreRefusedWhenTheyAskForMore) {
  auto error_of = [](const std::string& json) {
    try {
      parse_hf_config(json, "c.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  const std::string qwen3 = R"({"model_type": "qwen3_moe", "hidden_size": 2048, "moe_intermediate_size": 768,
      "num_experts": 128, "num_experts_per_tok": 8)";
  EXPECT_NE(error_of(qwen3 + R"(, "n_group": 8})").find("'n_group' = 8"), std::string::npos);
  EXPECT_NE(error_of(qwen3 + R"(, "shared_expert_intermediate_size": 512})").find("shared_expert_intermediate_size"),
            std::string::npos);  // qwen3_moe has no shared expert
  EXPECT_EQ(error_of(qwen3 + R"(, "routed_scaling_factor": 1.0})"), "");  // asks for nothing more
  const std::string ds = R"({"model_type": "deepseek_v3", "hidden_size": 7168, "moe_intermediate_size": 2048,
      "n_routed_experts": 256, "num_experts_per_tok": 8)";
  EXPECT_NE(error_of(ds + R"(, "scoring_func": "softmax"})").find("'scoring_func' = \"softmax\""), std::string::npos);
  EXPECT_NE(error_of(ds + R"(, "n_group": 6})").find("groups 6"), std::string::npos);  // 256 experts in 6 groups
  EXPECT_NE(error_of(ds + R"(, "hidden_act": "gelu"})").find("'hidden_act'"), std::string::npos);
  // A model_type that routes otherwise is refused, not read as softmax top-k.
  EXPECT_NE(error_of(R"({"model_type": "phimoe", "hidden_size": 4096, "intermediate_size": 6400,
      "num_local_experts": 16, "num_experts_per_tok": 2})").find("'model_type' = \"phimoe\""),
            std::string::npos);
  // qwen2_moe's shared expert defaults as transformers' config does.
  const ModelPreset q2 = parse_hf_config(R"({"model_type": "qwen2_moe", "hidden_size": 2048,
      "moe_intermediate_size": 1408, "num_experts": 60, "num_experts_per_tok": 4})", "c.json");
  EXPECT_EQ(q2.shared_ffn_size, 5632);
  EXPECT_TRUE(q2.shared_expert_gate);
  EXPECT_EQ(error_of(R"({"model_type": "gpt_oss", "hidden_size": 2880, "intermediate_size": 2880,
      "num_local_experts": 32, "num_experts_per_tok": 4, "hidden_act": "gelu"})"),
            "");  // gpt-oss's experts do not read hidden_act
}

TEST(ModelPresets, ExpertSpecsAreUpAndDownProjections) {
  const auto specs = model_expert_specs(load_model("openmoe-34b"), "sm_90a", DType::bf16, {128, 1, 2});
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].op, Op::GatedUp);
  EXPECT_EQ(specs[0].m, 12288);
  EXPECT_EQ(specs[0].k, 3072);
  EXPECT_EQ(specs[1].op, Op::Down);
  EXPECT_EQ(specs[1].m, 3072);
  EXPECT_EQ(specs[1].k, 12288);
  EXPECT_EQ(specs[1].experts, 32);
  EXPECT_TRUE(specs[0].grouped && specs[1].grouped);  // as MoeLayer launches them
  // With shared experts: their stacked single launches too, as MoeLayer makes them.
  const auto ds = model_expert_specs(load_model("deepseek-moe-16b"), "sm_90a", DType::bf16, {128, 1, 2});
  ASSERT_EQ(ds.size(), 4u);
  EXPECT_EQ(ds[0].m, 1408);
  EXPECT_EQ(ds[0].experts, 64);
  EXPECT_EQ(ds[2].op, Op::GatedUp);
  EXPECT_EQ(ds[2].epilogue, Epilogue::GatedSilu);
  EXPECT_EQ(ds[2].m, 2816);
  EXPECT_EQ(ds[2].k, 2048);
  EXPECT_EQ(ds[2].experts, 1);
  EXPECT_FALSE(ds[2].grouped);
  EXPECT_EQ(ds[3].op, Op::Ssmm);
  EXPECT_EQ(ds[3].epilogue, Epilogue::None);
  EXPECT_EQ(ds[3].m, 2048);
  EXPECT_EQ(ds[3].k, 2816);
  EXPECT_EQ(ds[3].experts, 1);
}

// What `samoyeds compile` builds besides the projections: the layer's fixed
// kernels per dtype, and with FP8 experts the FP8 projections under the keys
// the layer loads them by, plus the quantizing pass (bf16 input only).
TEST(ModelKernels, FixedJobsAreTheLayersUtilityKernelsAndTheFp8OnesOnlyWhenAsked) {
  auto names = [](const std::vector<FixedKernelJob>& jobs) {
    std::vector<std::string> n;
    for (const auto& j : jobs) n.push_back(j.name);
    return n;
  };
  const std::vector<std::string> plain = names(model_fixed_kernel_jobs({DType::bf16}, false));
  EXPECT_EQ(plain.size(), size_t(kUtilityKernelCount - 1));  // all but the quantizing pass
  for (const std::string& n : plain) {
    EXPECT_EQ(n.find("fp8"), std::string::npos) << n;
    EXPECT_EQ(n.find("e4m3"), std::string::npos) << n;
  }
  EXPECT_NE(std::find(plain.begin(), plain.end(), "samoyeds_moe_combine bf16"), plain.end());
  const std::vector<FixedKernelJob> both_jobs = model_fixed_kernel_jobs({DType::f16, DType::bf16}, true);
  const std::vector<std::string> both = names(both_jobs);
  // Each binary once: a kernel whose source ignores the dtype is not compiled twice.
  for (size_t i = 0; i < both_jobs.size(); ++i)
    for (size_t j = 0; j < i; ++j) EXPECT_NE(both_jobs[i].kernel.source, both_jobs[j].kernel.source) << both[i];
  EXPECT_GT(both.size(), plain.size() + 1 + Fp8RoutedExperts::kernels().size());
  EXPECT_LT(both.size(), 2 * plain.size() + 1 + Fp8RoutedExperts::kernels().size());
  EXPECT_NE(std::find(both.begin(), both.end(), "samoyeds_quantize_rows_e4m3 bf16"), both.end());
  EXPECT_EQ(std::find(both.begin(), both.end(), "samoyeds_quantize_rows_e4m3 f16"), both.end());
  for (const auto& k : Fp8RoutedExperts::kernels())
    EXPECT_NE(std::find(both.begin(), both.end(), k.key), both.end()) << k.key;
  // The FP8 projections generate (their source names the sparse FP8 MMA).
  EXPECT_NE(both_jobs.back().kernel.source.find("e4m3"), std::string::npos);
  // With FP8 routed experts only the shared experts' 16-bit projections are left.
  for (const KernelJob& j : model_kernel_jobs(load_model("deepseek-moe-16b"), "sm_90a", {DType::bf16}, {128, 1, 2},
                                              false, /*routed=*/false)) {
    EXPECT_FALSE(j.spec.grouped);
    EXPECT_EQ(j.spec.experts, 1);
    EXPECT_EQ(j.spec.op == Op::GatedUp ? j.spec.m : j.spec.k, 2816);
  }
  EXPECT_TRUE(model_kernel_jobs(load_model("mixtral-8x7b"), "sm_90a", {DType::bf16}, {128, 1, 2}, false, false).empty());
}

TEST(ModelPresets, UnknownModelListsThePresets) {
  try {
    load_model("gpt-5");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mixtral-8x7b"), std::string::npos) << e.what();
  }
}

TEST(ModelPresets, UnknownKeysAndBadValuesNameTheLine) {
  try {
    parse_model_yaml("name: x\nhidden_size: 8\nffn_size: 8\nexperts: 2\ntop_k: 1\nhiden: 3\n", "m.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.yaml:6: unknown key 'hiden'"), std::string::npos) << e.what();
  }
  try {
    parse_model_yaml("name: x\nhidden_size: many\nffn_size: 8\nexperts: 2\ntop_k: 1\n", "m.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.yaml:2"), std::string::npos) << e.what();
  }
  try {
    parse_model_yaml("name: [x\n", "m.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m.yaml:"), std::string::npos) << e.what();
  }
  EXPECT_THROW(parse_model_yaml("name: x\nhidden_size: 8\nffn_size: 8\nexperts: 2\ntop_k: 3\n", "m.yaml"), Error);
}

TEST(ModelPresets, HuggingFaceConfigsOfMoeModelsAreRead) {
  const ModelPreset mix = parse_hf_config(
      R"({"architectures": ["MixtralForCausalLM"], "hidden_size": 4096, "intermediate_size": 14336,
          "num_local_experts": 8, "num_experts_per_tok": 2, "model_type": "mixtral"})",
      "mixtral/config.json");
  EXPECT_EQ(mix.hidden_size, 4096);
  EXPECT_EQ(mix.ffn_size, 14336);
  EXPECT_EQ(mix.experts, 8);
  EXPECT_EQ(mix.top_k, 2);
  const ModelPreset ds = parse_hf_config(
      R"({"hidden_size": 2048, "intermediate_size": 10944, "moe_intermediate_size": 1408, "n_routed_experts": 64,
          "num_experts_per_tok": 6, "n_shared_experts": 2, "model_type": "deepseek"})",
      "ds/config.json");
  EXPECT_EQ(ds.ffn_size, 1408);  // the experts', not the dense layers'
  EXPECT_EQ(ds.experts, 64);
  EXPECT_EQ(ds.shared_experts, 2);
  EXPECT_EQ(ds.shared_ffn_size, 1408);
  try {
    parse_hf_config(R"({"hidden_size": 4096, "intermediate_size": 11008})", "llama/config.json");
    FAIL() << "a dense model was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not an MoE config"), std::string::npos) << e.what();
  }
}

// What `what` throws, or "" when it does not.
template <typename F>
std::string error_of(F what) {
  try {
    what();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

constexpr const char* kMixtralJson =
    R"({"hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2,
        "hidden_act": "silu", "model_type": "mixtral")";

TEST(HfConfig, DuplicateKeyInConfigJsonIsAnError) {
  const std::string e = error_of([] {
    parse_hf_config(std::string(kMixtralJson) + R"(, "num_local_experts": 16})", "mix/config.json");
  });
  EXPECT_NE(e.find("mix/config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("duplicate key 'num_local_experts'"), std::string::npos) << e;
  // The same key in two different objects is no duplicate.
  EXPECT_EQ(error_of([] {
              parse_hf_config(std::string(kMixtralJson) + R"(, "rope_scaling": {"model_type": "x"}})", "m.json");
            }),
            "");
}

TEST(HfConfig, WrongTypeInConfigJsonNamesTheKey) {
  std::string e = error_of([] {
    parse_hf_config(R"({"hidden_size": "4096", "intermediate_size": 14336, "num_local_experts": 8,
                        "num_experts_per_tok": 2})",
                    "c.json");
  });
  EXPECT_NE(e.find("c.json: 'hidden_size' must be an integer"), std::string::npos) << e;
  e = error_of([] {
    parse_hf_config(R"({"hidden_size": 4096.5, "intermediate_size": 14336, "num_local_experts": 8,
                        "num_experts_per_tok": 2})",
                    "c.json");
  });
  EXPECT_NE(e.find("'hidden_size' must be an integer"), std::string::npos) << e;
  e = error_of([] {
    parse_hf_config(R"({"hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 4294967304,
                        "num_experts_per_tok": 2})",
                    "c.json");
  });
  EXPECT_NE(e.find("'num_local_experts' = 4294967304 is out of range"), std::string::npos) << e;
}

TEST(HfConfig, ConfigJsonIsStrictJsonWithTheLineOfASyntaxError) {
  const std::string e = error_of([] {
    parse_hf_config("{\"hidden_size\": 4096,\n  \"intermediate_size\": 14336,\n}", "c.json");  // trailing comma
  });
  EXPECT_NE(e.find("c.json:3: JSON syntax error"), std::string::npos) << e;
  // YAML is no longer taken for JSON.
  EXPECT_NE(error_of([] { parse_hf_config("hidden_size: 4096\n", "c.json"); }).find("JSON syntax error"),
            std::string::npos);
}

TEST(HfConfig, HfConfigWithSigmoidRoutingIsRefusedNamingTheField) {
  const std::string e = error_of([] {
    parse_hf_config(std::string(kMixtralJson) + R"(, "scoring_func": "sigmoid"})", "ds3/config.json");
  });
  EXPECT_NE(e.find("ds3/config.json: 'scoring_func' = \"sigmoid\""), std::string::npos) << e;
  EXPECT_NE(e.find("not implemented"), std::string::npos) << e;
}

TEST(HfConfig, MoeSemanticsTheLibraryDoesNotImplementAreRefusedNamingTheField) {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {R"("topk_method": "noaux_tc")", "topk_method"},
      {R"("topk_method": "group_limited_greedy")", "topk_method"},
      {R"("n_group": 8)", "n_group"},
      {R"("topk_group": 4)", "topk_group"},
      {R"("routed_scaling_factor": 2.5)", "routed_scaling_factor"},
      {R"("shared_expert_intermediate_size": 5632)", "shared_expert_intermediate_size"},
      {R"("mlp_bias": true)", "mlp_bias"},
      {R"("swiglu_limit": 7.0)", "swiglu_limit"},
  };
  for (const auto& [field, key] : refused) {
    const std::string e =
        error_of([&] { parse_hf_config(std::string(kMixtralJson) + ", " + field + "}", "c.json"); });
    EXPECT_NE(e.find("'" + key + "'"), std::string::npos) << field << ": " << e;
  }
  const std::string gelu = error_of([] {
    parse_hf_config(R"({"hidden_size": 4096, "intermediate_size": 14336, "num_local_experts": 8,
                        "num_experts_per_tok": 2, "hidden_act": "gelu"})",
                    "c.json");
  });
  EXPECT_NE(gelu.find("'hidden_act' = \"gelu\""), std::string::npos) << gelu;
  // What the layer does implement passes: softmax, greedy, one group, a factor of 1.
  EXPECT_EQ(error_of([] {
              parse_hf_config(std::string(kMixtralJson) +
                                  R"(, "scoring_func": "softmax", "topk_method": "greedy", "n_group": 1,
                                     "topk_group": 1, "routed_scaling_factor": 1.0, "mlp_bias": false})",
                              "c.json");
            }),
            "");
}

TEST(ModelPresets, MissingJsonFileSaysNoSuchFileNotUnknownModel) {
  const std::string e = error_of([] { load_model("/no/such/folder/config.json"); });
  EXPECT_NE(e.find("no such file"), std::string::npos) << e;
  EXPECT_EQ(e.find("unknown model"), std::string::npos) << e;
}

TEST(ModelPresets, FolderGivenAsModelFileSaysItIsAFolder) {
  const std::string e = error_of([] { load_model(::testing::TempDir()); });
  EXPECT_NE(e.find("is a folder"), std::string::npos) << e;
}

TEST(ModelPresets, CountsBeyondAnIntAreRejectedNotTruncated) {
  const std::string e = error_of([] {
    parse_model_yaml("name: x\nhidden_size: 8\nffn_size: 8\nexperts: 4294967304\ntop_k: 2\n", "m.yaml");
  });
  EXPECT_NE(e.find("m.yaml:4: 'experts' = 4294967304 is out of range"), std::string::npos) << e;
}

TEST(Sweeps, NegativeMaxConfigsAndEmptyBucketsAreErrors) {
  std::string e = error_of([] { parse_sweep_yaml("models: [mixtral-8x7b]\nmax_configs: -5\n", "s.yaml"); });
  EXPECT_NE(e.find("s.yaml:2: 'max_configs' = -5 is out of range"), std::string::npos) << e;
  e = error_of([] { parse_sweep_yaml("models: [mixtral-8x7b]\nbuckets: []\n", "s.yaml"); });
  EXPECT_NE(e.find("s.yaml:2: 'buckets' lists no bucket"), std::string::npos) << e;
}

TEST(Sweeps, ModelPathsResolveAgainstTheSweepFilesFolder) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / fmt::format("samoyeds_sweep_rel_{}", getpid());
  std::filesystem::create_directories(dir / "models");
  std::ofstream(dir / "models" / "tiny.yaml") << "name: tiny\nhidden_size: 256\nffn_size: 512\nexperts: 4\ntop_k: 2\n";
  std::ofstream(dir / "sweep.yaml") << "models: [models/tiny.yaml, mixtral-8x7b]\n";
  const TuningSweep sw = load_sweep((dir / "sweep.yaml").string());  // the working folder is elsewhere
  ASSERT_EQ(sw.models.size(), 2u);
  EXPECT_EQ(sw.models[0].name, "tiny");
  EXPECT_EQ(sw.models[1].name, "mixtral-8x7b");
  // A mistake in the model file names the sweep's line and the model's, with one error prefix.
  std::ofstream(dir / "models" / "bad.yaml") << "name: bad\nhidden_size: 8\nffn_size: 8\nexperts: -1\ntop_k: 1\n";
  std::ofstream(dir / "bad_sweep.yaml") << "models:\n  - models/bad.yaml\n";
  const std::string e = error_of([&] { load_sweep((dir / "bad_sweep.yaml").string()); });
  EXPECT_NE(e.find("bad_sweep.yaml:2: "), std::string::npos) << e;
  EXPECT_NE(e.find("bad.yaml:4: 'experts'"), std::string::npos) << e;
  EXPECT_EQ(e.find("samoyeds:", 1), std::string::npos) << "a doubled prefix: " << e;
  std::filesystem::remove_all(dir);
}

TEST(Sweeps, ParseAndNameTheLineOfEveryMistake) {
  const TuningSweep sw = parse_sweep_yaml(
      "models: [mixtral-8x7b, deepseek-moe-16b]\ndtypes: [bf16, f16]\nops: [gated_up]\nbuckets: [64, 1, 8, 64]\n"
      "rows: \"2:4\"\nsegment: 64\nmax_configs: 12\n",
      "s.yaml");
  EXPECT_EQ(sw.models.size(), 2u);
  EXPECT_EQ(sw.dtypes.size(), 2u);
  ASSERT_EQ(sw.ops.size(), 1u);
  EXPECT_EQ(sw.buckets, (std::vector<int64_t>{1, 8, 64}));
  EXPECT_EQ(sw.sparsity, (SparsityParams{64, 2, 4}));
  EXPECT_EQ(sw.max_configs, 12);
  auto error_of = [](const std::string& text) {
    try {
      parse_sweep_yaml(text, "s.yaml");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of("models: [mixtral-8x7b]\ndtype: [bf16]\n").find("s.yaml:2: unknown key 'dtype'"),
            std::string::npos);
  EXPECT_NE(error_of("models: [mixtral-8x7b]\ndtypes: [fp8]\n").find("s.yaml:2"), std::string::npos);
  EXPECT_NE(error_of("models: [mixtral-8x7b]\nbuckets: [0]\n").find("s.yaml:2"), std::string::npos);
  EXPECT_NE(error_of("models: [no-such-model]\n").find("s.yaml:1"), std::string::npos);
  EXPECT_NE(error_of("models: [mixtral-8x7b]\nsegment: 48\n").find("s.yaml:2"), std::string::npos);
  EXPECT_NE(error_of("dtypes: [bf16]\n").find("no model"), std::string::npos);
  EXPECT_NE(error_of("models: [mixtral-8x7b\n").find("s.yaml:"), std::string::npos);
}

std::string run(const std::string& cmd, int* rc) {
  std::string out;
  FILE* f = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  *rc = WEXITSTATUS(pclose(f));
  return out;
}

// The main job end to end: generate and NVRTC-compile a model's kernels into
// a cache; a second run finds them all in the cache.
TEST(Cli, CompileFillsTheCacheAndTheSecondRunHitsIt) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / fmt::format("samoyeds_cli_{}", getpid());
  std::filesystem::remove_all(dir);
  const std::string cmd =
      fmt::format("SAMOYEDS_CACHE_DIR={} {} compile --model openmoe-8b --dtype bf16 --arch sm_90a", dir.string(),
                  SAMOYEDS_CLI_PATH);
  int rc = -1;
  std::string out = run(cmd, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("nvrtc"), std::string::npos) << out;
  EXPECT_NE(out.find("0 failed"), std::string::npos) << out;
  // The grouped launches MoeLayer makes are compiled too, not only one-expert launches.
  EXPECT_NE(out.find("grouped gated_up wgmma_sp bf16 8192x2048"), std::string::npos) << out;
  EXPECT_NE(out.find("grouped down wgmma_sp bf16 2048x8192"), std::string::npos) << out;
  EXPECT_NE(out.find("\ngated_up wgmma_sp bf16 8192x2048"), std::string::npos) << out;
  // Every token bucket's default, up to the large-batch ones (a warpgroup per operand from 4096 tokens).
  EXPECT_NE(out.find("bm64_bn128_bk128_w4x1_s3_p_g16_so_xt"), std::string::npos) << out;
  // And the layer's fixed kernels (routing, lists, combine): no NVRTC at its first forward.
  EXPECT_NE(out.find("\nsamoyeds_route_topk bf16"), std::string::npos) << out;
  EXPECT_NE(out.find("\nsamoyeds_moe_combine bf16"), std::string::npos) << out;
  EXPECT_EQ(out.find("fp8 grouped"), std::string::npos) << "FP8 kernels only for --dtype e4m3 or all: " << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "samoyeds.sqlite"));
  // Output that is no terminal gets a progress line per tenth, with done/total and the ETA.
  EXPECT_NE(out.find("compile: "), std::string::npos) << out;
  EXPECT_NE(out.find(" done (100%), "), std::string::npos) << out;
  EXPECT_NE(out.find("ETA"), std::string::npos) << out;
  out = run(cmd, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("compiled 0 new kernels"), std::string::npos) << out;
  // A cache hit cost no compile time: its row shows 0 ms, not the original compile's figure.
  std::istringstream rows(out);
  int hits = 0;
  for (std::string row; std::getline(rows, row);) {
    if (row.size() < 6 || row.compare(row.size() - 5, 5, "cache") != 0) continue;
    ++hits;
    // ... compile ms, cubin bytes, regs, spills, source: the fifth word from the end.
    std::istringstream words(row);
    std::vector<std::string> w;
    for (std::string word; words >> word;) w.push_back(word);
    ASSERT_GE(w.size(), 5u) << row;
    EXPECT_EQ(w[w.size() - 5], "0") << row;
  }
  EXPECT_GT(hits, 0) << out;
  out = run(fmt::format("{} compile --model openmoe-8b --dtype e4m3 --arch sm_80 --cache none", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("FP8 experts need sm_90a"), std::string::npos) << out;
  out = run(fmt::format("{} compile --model gpt-oss-20b --dtype e4m3 --cache none", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 2) << out;  // an invalid argument, as the layer would say
  EXPECT_NE(out.find("silu(g) * u only"), std::string::npos) << out;
  out = run(fmt::format("{} compile --model no-such-model", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 2) << out;
  out = run(fmt::format("{} compile --bogus", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 2) << out;
}

}  // namespace
}  // namespace samoyeds
