#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"

namespace samoyeds {
namespace {

TEST(ModelPresets, TheSeedPapersModelsAreAllThere) {
  const auto names = model_preset_names();
  for (const char* n : {"mixtral-8x7b", "mixtral-8x22b", "minicpm-moe-8x2b", "openmoe-8b", "openmoe-34b",
                        "deepseek-moe-16b", "qwen1.5-moe-a2.7b"})
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

TEST(ModelPresets, ExpertSpecsAreUpAndDownProjections) {
  const auto specs = model_expert_specs(load_model("openmoe-34b"), "sm_90a", DType::bf16, {128, 1, 2});
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].op, Op::GatedUp);
  EXPECT_EQ(specs[0].m, 12288);
  EXPECT_EQ(specs[0].k, 3072);
  EXPECT_EQ(specs[1].op, Op::Down);
  EXPECT_EQ(specs[1].m, 3072);
  EXPECT_EQ(specs[1].k, 12288);
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
  EXPECT_TRUE(std::filesystem::exists(dir / "samoyeds.sqlite"));
  out = run(cmd, &rc);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("compiled 0 new kernels"), std::string::npos) << out;
  out = run(fmt::format("{} compile --model no-such-model", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 2) << out;
  out = run(fmt::format("{} compile --bogus", SAMOYEDS_CLI_PATH), &rc);
  EXPECT_EQ(rc, 2) << out;
}

}  // namespace
}  // namespace samoyeds
