#include <gtest/gtest.h>

#include <algorithm>

#include "backends/backend.hpp"
#include "generator/utility_kernels.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "format/device_layout.hpp"
#include "runtime/kernel_builder.hpp"
#include "samoyeds/error.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

using test::wg;

KernelSpec spec() { return test::mixtral_ssmm(); }

const KernelFamily& fam() { return kernel_family(Backend::MmaSp); }

TEST(Generator, SameSpecGivesSameSourceAndKey) {
  const WgmmaSpConfig c{128, 64, 64, 2, 2, 3};
  const auto a = fam().generate(spec(), c), b = fam().generate(spec(), c);
  EXPECT_EQ(a.source, b.source);
  EXPECT_EQ(binary_key(a, "sm_90a"), binary_key(b, "sm_90a"));
  EXPECT_EQ(binary_key(a, "sm_90a").size(), 64u);
}

TEST(Generator, EveryCodeRelevantChangeChangesTheKey) {
  const WgmmaSpConfig c{128, 64, 64, 2, 2, 3};
  const std::string base = binary_key(fam().generate(spec(), c), "sm_90a");
  KernelSpec f16 = spec();
  f16.dtype = DType::f16;
  KernelSpec sp = spec();
  sp.sparsity = {64, 1, 2};
  KernelSpec silu = spec();
  silu.epilogue = Epilogue::Silu;
  WgmmaSpConfig c2 = c;
  c2.stages = 4;
  EXPECT_NE(base, binary_key(fam().generate(f16, c), "sm_90a"));
  EXPECT_NE(base, binary_key(fam().generate(sp, c), "sm_90a"));
  EXPECT_NE(base, binary_key(fam().generate(silu, c), "sm_90a"));
  EXPECT_NE(base, binary_key(fam().generate(spec(), c2), "sm_90a"));
  EXPECT_NE(base, binary_key(fam().generate(spec(), c), "sm_80"));
}

// Both backends read the one packed layout, and say so: the launch refuses
// weights in any other (expert_ops.cpp compares the two ids).
TEST(Generator, BothBackendsRecordThePackedLayoutTheyRead) {
  KernelSpec w = spec();
  w.backend = Backend::WgmmaSp;
  EXPECT_EQ(fam().generate(spec(), TileConfig{128, 64, 64, 2, 2, 3}).layout_id, DeviceLayout::kLayoutId);
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).generate(w, TileConfig{128, 128, 128, 8, 1, 4}).layout_id,
            DeviceLayout::kLayoutId);
  EXPECT_EQ(std::string(DeviceLayout::kLayoutId), "sp_tc.v2");
}

TEST(Generator, ShapeDoesNotEnterTheSourceSoShapesShareBinaries) {
  const WgmmaSpConfig c{128, 64, 64, 2, 2, 3};
  KernelSpec other = spec();
  other.m = 1408;
  other.k = 2048;
  EXPECT_EQ(fam().generate(spec(), c).source, fam().generate(other, c).source);
}

TEST(Generator, GroupingChangesOnlyTheEntryPoint) {
  const WgmmaSpConfig c{128, 64, 64, 2, 2, 3};
  KernelSpec g = spec();
  g.grouped = true;
  g.experts = 8;
  const auto single = fam().generate(spec(), c), grouped = fam().generate(g, c);
  EXPECT_NE(single.kernel_name, grouped.kernel_name);
  EXPECT_NE(binary_key(single, "sm_90a"), binary_key(grouped, "sm_90a"));
  EXPECT_NE(grouped.source.find("select_expert<64>"), std::string::npos);
  EXPECT_EQ(single.source.find("select_expert"), std::string::npos);
  EXPECT_EQ(single.smem_bytes, grouped.smem_bytes);
  KernelSpec g64 = g;
  g64.experts = 64;  // the expert count is a launch parameter, not code
  EXPECT_EQ(fam().generate(g64, c).source, grouped.source);
}

// The kernel's first statement, in a generated source: the line after the
// brace that opens the __global__ function's body.
std::string first_statement(const std::string& source) {
  const size_t global = source.find("__global__");
  if (global == std::string::npos) return "(no __global__)";
  const size_t open = source.find("{\n", global);
  if (open == std::string::npos) return "(no body)";
  const size_t begin = source.find_first_not_of(" ", open + 2);
  return source.substr(begin, source.find('\n', begin) - begin);
}

// Launches ask for programmatic dependent launch on sm_90+ (core/kernel_launch.hpp),
// so a kernel may start before the previous one in the stream has finished.
// Every kernel must therefore wait for it before anything else: before any
// read of what that kernel wrote, and before any early return.
TEST(Generator, EveryKernelWaitsForThePreviousOneFirst) {
  const std::string wait = "samoyeds::grid_dependency_begin();";
  int checked = 0;
  for (Backend b : {Backend::MmaSp, Backend::WgmmaSp})
    for (bool grouped : {false, true})
      for (Epilogue epi : {Epilogue::None, Epilogue::GatedSilu}) {
        KernelSpec s = spec();
        s.backend = b;
        s.grouped = grouped;
        s.experts = grouped ? 8 : 1;
        s.epilogue = epi;
        s.op = epi == Epilogue::GatedSilu ? Op::GatedUp : Op::Ssmm;
        for (const TileConfig& c : kernel_family(b).search_space(s)) {
          if (kernel_family(b).invalid_reason(s, c)) continue;
          const std::string first = first_statement(kernel_family(b).generate(s, c).source);
          ASSERT_EQ(first.rfind(wait, 0), 0u) << s.to_string() << " " << c.to_string() << ": " << first;
          ++checked;
        }
      }
  for (int which = 0; which < kUtilityKernelCount; ++which)
    for (DType dt : {DType::f16, DType::bf16}) {
      const std::string first = first_statement(generate_utility_kernel(UtilityKernel(which), dt).source);
      EXPECT_EQ(first.rfind(wait, 0), 0u) << utility_kernel_name(UtilityKernel(which)) << ": " << first;
      ++checked;
    }
  EXPECT_GT(checked, 100);
}

TEST(Generator, KeysHoldNoPaths) {
  const auto g = fam().generate(spec(), {128, 64, 64, 2, 2, 3});
  EXPECT_EQ(g.source.find("/work"), std::string::npos);
  EXPECT_EQ(g.source.find("/home"), std::string::npos);
}

TEST(Generator, InvalidConfigsAreRejectedWithAReason) {
  EXPECT_TRUE(fam().invalid_reason(spec(), {96, 64, 64, 2, 2, 3}).has_value());
  EXPECT_TRUE(fam().invalid_reason(spec(), {128, 64, 64, 16, 1, 3}).has_value());  // warp tile < 16 rows
  EXPECT_TRUE(fam().invalid_reason(spec(), {128, 256, 128, 1, 1, 4}).has_value());  // registers
  KernelSpec s80 = spec();
  s80.arch = "sm_86";
  EXPECT_TRUE(fam().invalid_reason(s80, {128, 128, 128, 2, 4, 4}).has_value());  // 99 KB smem
  EXPECT_THROW(fam().generate(spec(), {96, 64, 64, 2, 2, 3}), Error);
  for (const auto& c : fam().search_space(spec())) EXPECT_FALSE(fam().invalid_reason(spec(), c)) << c.to_string();
}

TEST(Generator, SpecValidationNamesTheProblem) {
  KernelSpec s = spec();
  s.k = 4100;
  EXPECT_THROW(s.validate(), Error);
  s = spec();
  s.arch = "sm_75";
  EXPECT_THROW(s.validate(), Error);
  s = spec();
  s.arch = "banana";
  EXPECT_THROW(s.validate(), Error);
  s = spec();
  s.op = Op::GatedUp;  // without the gated epilogue
  EXPECT_THROW(s.validate(), Error);
}

TEST(Generator, RowPatternsNoTileCanHoldAreReportedUnsupported) {
  KernelSpec s = spec();
  s.sparsity = {128, 3, 8};  // a valid format, but no block tile holds whole groups of 3 rows
  EXPECT_TRUE(fam().search_space(s).empty());
  try {
    fam().default_config(s, 64, kReferenceSmCount);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Unsupported);
  }
}

TEST(Generator, TileConfigTextRoundTrips) {
  const WgmmaSpConfig c{64, 32, 128, 4, 1, 2};
  EXPECT_EQ(wg(c.to_string()), c);
  EXPECT_THROW(wg("bm64_bn32"), Error);
  EXPECT_THROW(wg("bm64_bn32_bk128_w4x1_s2junk"), Error);
  // The schedule suffixes: each alone, together, and in to_string's order only.
  WgmmaSpConfig s = c;
  s.split_k = 4;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_k4");
  EXPECT_EQ(wg(s.to_string()), s);
  s.split_k = 1;
  s.persistent = s.tokens_first = true;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_p_tf");
  EXPECT_EQ(wg(s.to_string()), s);
  s.persistent = false;
  EXPECT_EQ(wg(s.to_string()), s);
  s.multicast = 2;
  s.persistent = true;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_m2_p_tf");
  EXPECT_EQ(wg(s.to_string()), s);
  EXPECT_FALSE(wg("bm64_bn32_bk128_w4x1_s2_k2").default_schedule());
  EXPECT_FALSE(wg("bm64_bn32_bk128_w4x1_s2_m2").default_schedule());
  s.tokens_tma = true;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_m2_p_tf_xt");
  EXPECT_EQ(wg(s.to_string()), s);
  s.tokens_first = s.persistent = false;
  s.multicast = 1;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_xt");
  EXPECT_EQ(wg(s.to_string()), s);
  s.persistent = true;
  s.row_group = 16;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_p_g16_xt");
  EXPECT_EQ(wg(s.to_string()), s);
  s.split_operands = true;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_p_g16_so_xt");
  EXPECT_EQ(wg(s.to_string()), s);
  s.split_operands = false;
  s.stream_k = true;
  EXPECT_EQ(s.to_string(), "bm64_bn32_bk128_w4x1_s2_p_g16_xt_sk");
  EXPECT_EQ(wg(s.to_string()), s);
  EXPECT_FALSE(wg("bm64_bn32_bk128_w4x1_s2_p_sk").default_schedule());
  EXPECT_FALSE(wg("bm64_bn32_bk128_w4x1_s2_so") == wg("bm64_bn32_bk128_w4x1_s2"));
  EXPECT_FALSE(wg("bm64_bn32_bk128_w4x1_s2_g8").default_schedule());
  for (const char* bad : {"bm64_bn32_bk128_w4x1_s2_tf_p", "bm64_bn32_bk128_w4x1_s2_k0", "bm64_bn32_bk128_w4x1_s2_k",
                          "bm64_bn32_bk128_w4x1_s2_px", "bm64_bn32_bk128_w4x1_s2_p_p", "bm64_bn32_bk128_w4x1_s2_",
                          "bm64_bn32_bk128_w4x1_s2_m0", "bm64_bn32_bk128_w4x1_s2_p_m2", "bm64_bn32_bk128_w4x1_s2_xt_tf",
                          "bm64_bn32_bk128_w4x1_s2_xt_xt", "bm64_bn32_bk128_w4x1_s2_g0", "bm64_bn32_bk128_w4x1_s2_xt_g8",
                          "bm64_bn32_bk128_w4x1_s2_g8_tf", "bm64_bn32_bk128_w4x1_s2_xt_so", "bm64_bn32_bk128_w4x1_s2_so_g8",
                          "bm64_bn32_bk128_w4x1_s2_so_so", "bm64_bn32_bk128_w4x1_s2_sk_xt", "bm64_bn32_bk128_w4x1_s2_sk_sk"})
    EXPECT_THROW(wg(bad), Error) << bad;
}

// Stream-K tails: the tiles past the last whole round, each in up to four
// shares of whole k-segments, where the idle blocks have room for two or more.
TEST(Generator, DefaultConfigsAreValid) {
  for (int64_t n : {1, 16, 64, 256, 4096}) {
    KernelSpec g = spec();
    g.op = Op::GatedUp;
    g.epilogue = Epilogue::GatedSilu;
    for (const KernelSpec& s : {spec(), g})
      EXPECT_FALSE(fam().invalid_reason(s, fam().default_config(s, n, kReferenceSmCount)));
  }
}

// The untuned wgmma_sp choice follows what won on the H200 (every config
// timed, docs/perf-log.md), and an untuned launch on sm_90a uses wgmma_sp.
// A call that gathers its token rows runs the gathered default wherever the
// default reads them in order: it must be a config that gathers, valid for
// the spec (192-row tiles are not: before, a gathered launch whose default
// was one failed with "invalid config").
}  // namespace
}  // namespace samoyeds
