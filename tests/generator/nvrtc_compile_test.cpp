// NVRTC compiles every valid config of the mma_sp search space for sm_80,
// sm_90 and sm_90a, without spills; the SASS holds the sparse MMA.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "bench/ingress_probe_kernel.hpp"
#include "backends/backend.hpp"
#include "backends/wgmma_sp/fp8_projection.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "generator/utility_kernels.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/error.hpp"
#include "tests/backends/wgmma_sp/fp8_mma_probe.hpp"

namespace samoyeds {
namespace {

// A config by its text name, schedule suffixes as wgmma_sp names them.
WgmmaSpConfig wg(const std::string& text) { return WgmmaSpConfig::of(parse_config(text, Backend::WgmmaSp)); }

KernelSpec spec(const std::string& arch, DType dt, SparsityParams sp, Epilogue epi) {
  KernelSpec s;
  s.op = epi == Epilogue::GatedSilu ? Op::GatedUp : Op::Ssmm;
  s.arch = arch;
  s.dtype = dt;
  s.m = 4096;
  s.k = 4096;
  s.sparsity = sp;
  s.epilogue = epi;
  return s;
}

// Compiles configs on all cores; every one must succeed without spills.
void compile_all(const KernelSpec& s, const std::vector<TileConfig>& configs) {
  std::atomic<int> failures{0};
  parallel_for(configs.size(), 0, [&](size_t i) {
    try {
      const auto g = kernel_family(s.backend).generate(s, configs[i]);
      const CompiledBinary b = nvrtc_compile(g, s.arch);
      if (b.cubin.empty() || b.spill_bytes != 0 || b.registers <= 0 || b.registers > 255) {
        ++failures;
        ADD_FAILURE() << configs[i].to_string() << ": cubin " << b.cubin.size() << " bytes, " << b.registers
                      << " registers, " << b.spill_bytes << " spill bytes";
      }
      if (s.backend == Backend::WgmmaSp) {
        // ptxas serializes wgmma, or fences before one, when registers it
        // reads change under it; both cost tensor-core time silently. The
        // one accepted fence: a segment longer than a k-tile selects on a
        // run-time condition (every other tile), and 4 slots then make ptxas
        // fence once per tile.
        std::vector<const char*> bad = {"C7510", "serialized"};
        if (s.sparsity.V <= configs[i].block_k || s.sparsity.M <= 2) bad.push_back("C7519");
        for (const char* what : bad)
          if (b.log.find(what) != std::string::npos) {
            ++failures;
            ADD_FAILURE() << configs[i].to_string() << ": ptxas says " << b.log;
          }
        // setmaxnreg's hand-off assumes the launch bound's full allocation
        // (templates/ssmm_wgmma_ws.cuh): 168 at 384 threads, 128 at 512.
        const int pool = g.threads == 384 ? 168 : g.threads == 512 ? 128 : 0;
        if (pool && b.registers != pool) {
          ++failures;
          ADD_FAILURE() << configs[i].to_string() << ": " << b.registers << " registers, the hand-off needs "
                        << pool;
        }
      }
    } catch (const std::exception& e) {
      ++failures;
      ADD_FAILURE() << configs[i].to_string() << ": " << e.what();
    }
  });
  EXPECT_EQ(failures.load(), 0) << "of " << configs.size() << " configs for " << s.to_string();
}

class NvrtcSearchSpace : public ::testing::TestWithParam<std::string> {};

TEST_P(NvrtcSearchSpace, EveryValidConfigCompilesWithoutSpills) {
  const KernelSpec s = spec(GetParam(), DType::bf16, {128, 1, 2}, Epilogue::None);
  const auto configs = kernel_family(Backend::MmaSp).search_space(s);
  ASSERT_GT(configs.size(), 20u);
  compile_all(s, configs);
}

TEST_P(NvrtcSearchSpace, EveryKernelVariantCompilesAtItsDefaultConfigs) {
  std::vector<std::pair<KernelSpec, TileConfig>> jobs;
  for (DType dt : {DType::f16, DType::bf16})
    for (SparsityParams sp : {SparsityParams{32, 1, 2}, SparsityParams{64, 2, 4}, SparsityParams{256, 1, 4},
                              SparsityParams{128, 1, 1}})
      for (Epilogue epi : {Epilogue::None, Epilogue::Silu, Epilogue::GatedSilu}) {
        const KernelSpec s = spec(GetParam(), dt, sp, epi);
        std::vector<TileConfig> cfgs;
        for (int64_t n : {16, 1024}) {
          const TileConfig c = kernel_family(Backend::MmaSp).default_config(s, n, kReferenceSmCount);
          if (cfgs.empty() || !(cfgs.back() == c)) cfgs.push_back(c);
        }
        compile_all(s, cfgs);
      }
}

INSTANTIATE_TEST_SUITE_P(Archs, NvrtcSearchSpace, ::testing::Values("sm_80", "sm_90", "sm_90a"));

// The other kernel variants' whole search spaces, for the Hopper target.
TEST(NvrtcSearchSpaceVariants, EveryValidConfigOfEveryVariantCompilesWithoutSpillsForSm90a) {
  const struct {
    DType dt;
    SparsityParams sp;
    Epilogue epi;
  } variants[] = {{DType::bf16, {128, 1, 2}, Epilogue::GatedSilu},
                  {DType::f16, {64, 2, 4}, Epilogue::Silu},
                  {DType::f16, {128, 1, 1}, Epilogue::None},
                  {DType::bf16, {32, 1, 2}, Epilogue::None},
                  {DType::f16, {256, 1, 4}, Epilogue::GatedSilu}};
  for (const auto& v : variants) {
    const KernelSpec s = spec("sm_90a", v.dt, v.sp, v.epi);
    const auto configs = kernel_family(Backend::MmaSp).search_space(s);
    ASSERT_FALSE(configs.empty()) << s.to_string();
    compile_all(s, configs);
  }
}

// The wgmma_sp backend exists for sm_90a only; its whole search space for
// every variant the mma_sp test covers, grouped entry points included. One
// test per variant: each is minutes of NVRTC on a 2-core machine, and one
// test for all of them came near ctest's per-test limit on a loaded one.
struct WgmmaSpVariant {
  const char* name;
  DType dt;
  SparsityParams sp;
  Epilogue epi;
};
void PrintTo(const WgmmaSpVariant& v, std::ostream* os) { *os << v.name; }
class NvrtcWgmmaSpVariants : public ::testing::TestWithParam<WgmmaSpVariant> {};

TEST_P(NvrtcWgmmaSpVariants, EveryValidConfigCompilesWithoutSpills) {
  KernelSpec s = spec("sm_90a", GetParam().dt, GetParam().sp, GetParam().epi);
  s.backend = Backend::WgmmaSp;
  const auto configs = kernel_family(Backend::WgmmaSp).search_space(s);
  ASSERT_FALSE(configs.empty()) << s.to_string();
  compile_all(s, configs);
}

INSTANTIATE_TEST_SUITE_P(
    Sm90a, NvrtcWgmmaSpVariants,
    ::testing::Values(WgmmaSpVariant{"bf16_1of2_v128", DType::bf16, {128, 1, 2}, Epilogue::None},
                      WgmmaSpVariant{"bf16_1of2_v128_gated", DType::bf16, {128, 1, 2}, Epilogue::GatedSilu},
                      WgmmaSpVariant{"f16_2of4_v64_silu", DType::f16, {64, 2, 4}, Epilogue::Silu},
                      WgmmaSpVariant{"f16_1of1_v128", DType::f16, {128, 1, 1}, Epilogue::None},
                      WgmmaSpVariant{"bf16_1of2_v32", DType::bf16, {32, 1, 2}, Epilogue::None},
                      WgmmaSpVariant{"f16_1of4_v256_gated", DType::f16, {256, 1, 4}, Epilogue::GatedSilu}),
    [](const ::testing::TestParamInfo<WgmmaSpVariant>& info) { return std::string(info.param.name); });

// The down projection: its own epilogue (routing weights), and token tiles
// by TMA (tokens_tma) besides the gathered ones; and the grouped entry points.
TEST(NvrtcWgmmaSp, EveryValidDownConfigAndTheGroupedDefaultsCompileWithoutSpills) {
  KernelSpec d = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::None);
  d.op = Op::Down;
  d.backend = Backend::WgmmaSp;
  const auto down = kernel_family(Backend::WgmmaSp).search_space(d);
  EXPECT_TRUE(std::any_of(down.begin(), down.end(), [](const TileConfig& c) { return WgmmaSpConfig::of(c).tokens_tma; }));
  compile_all(d, down);
  KernelSpec g = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::GatedSilu);
  g.backend = Backend::WgmmaSp;
  g.grouped = true;
  g.experts = 8;
  compile_all(g, {kernel_family(Backend::WgmmaSp).default_config(g, 16, kReferenceSmCount),
                  kernel_family(Backend::WgmmaSp).default_config(g, 4096, kReferenceSmCount)});
}

TEST(NvrtcWgmmaSp, OtherArchitecturesAreRejectedWithAReason) {
  KernelSpec s = spec("sm_90", DType::bf16, {128, 1, 2}, Epilogue::None);
  s.backend = Backend::WgmmaSp;
  EXPECT_TRUE(kernel_family(Backend::WgmmaSp).search_space(s).empty());
  const auto why = kernel_family(Backend::WgmmaSp).invalid_reason(s, TileConfig{128, 64, 128, 8, 1, 3});
  ASSERT_TRUE(why.has_value());
  EXPECT_NE(why->find("sm_90a"), std::string::npos) << *why;
}

TEST(Nvrtc, GroupedEntryPointsCompileForEveryArchWithoutSpills) {
  for (const char* arch : {"sm_80", "sm_90", "sm_90a"})
    for (Epilogue epi : {Epilogue::GatedSilu, Epilogue::None}) {
      KernelSpec s = spec(arch, DType::bf16, {128, 1, 2}, epi);
      if (epi == Epilogue::None) s.op = Op::Down;
      s.grouped = true;
      s.experts = 8;
      std::vector<TileConfig> cfgs;
      for (int64_t n : {16, 1024}) cfgs.push_back(kernel_family(Backend::MmaSp).default_config(s, n, kReferenceSmCount));
      compile_all(s, cfgs);
    }
}

TEST(Nvrtc, UtilityKernelsCompileForEveryArch) {
  for (const char* arch : {"sm_80", "sm_90", "sm_90a"})
    for (DType dt : {DType::f16, DType::bf16})
      for (int which = 0; which < kUtilityKernelCount; ++which) {
        const auto kind = UtilityKernel(which);
        const CompiledBinary b = nvrtc_compile(generate_utility_kernel(kind, dt), arch);
        EXPECT_FALSE(b.cubin.empty());
        EXPECT_EQ(b.spill_bytes, 0) << utility_kernel_name(kind) << " " << arch;
      }
}

// The delivery probe the ingress benchmark launches (sm_90a: TMA, clusters).
TEST(Nvrtc, IngressProbeCompilesForEveryStageShape) {
  for (const IngressStageShape& shape : kIngressStageShapes) {
    const CompiledBinary b = nvrtc_compile(ingress_probe_kernel(shape), "sm_90a");
    EXPECT_FALSE(b.cubin.empty()) << shape.like;
    EXPECT_EQ(b.spill_bytes, 0) << shape.like;
  }
}

TEST(Nvrtc, CompileErrorCarriesTheLogAndTheSource) {
  GeneratedKernel g;
  g.kernel_name = "broken";
  g.source = "extern \"C\" __global__ void broken() { this_is_not_declared(); }\n";
  try {
    nvrtc_compile(g, "sm_90a");
    FAIL() << "compiled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::CompileError);
    const std::string what = e.what();
    EXPECT_NE(what.find("this_is_not_declared"), std::string::npos) << what;
    EXPECT_NE(what.find("generated source"), std::string::npos) << what;
  }
}

// What the compile reports beside the CUBIN: its time, and the registers and
// spills parsed from ptxas' log. How long it takes is measured by
// bench/compile_bench.cpp, not asserted here.
TEST(Nvrtc, CompileReportsItsTimeAndResources) {
  const KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::GatedSilu);
  const auto g = kernel_family(Backend::MmaSp).generate(s, kernel_family(Backend::MmaSp).default_config(s, 4096, kReferenceSmCount));
  const CompiledBinary b = nvrtc_compile(g, "sm_90a");
  EXPECT_FALSE(b.cubin.empty());
  EXPECT_GT(b.compile_ms, 0.0);
  EXPECT_GT(b.registers, 0);
  EXPECT_EQ(b.spill_bytes, 0);
}

std::string find_cuobjdump() {
  if (const char* e = std::getenv("SAMOYEDS_CUOBJDUMP")) return e;
  for (const char* p : {"/usr/local/cuda/bin/cuobjdump", "/usr/bin/cuobjdump"})
    if (std::ifstream(p)) return p;
  return "";
}

std::string run(const std::string& cmd) {
  std::string out;
  FILE* f = popen(cmd.c_str(), "r");
  if (!f) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  pclose(f);
  return out;
}

// The SASS of spec's kernel at config c, from cuobjdump `tool` (a temporary cubin file).
std::string sass_of(const std::string& tool, const KernelSpec& s, const TileConfig& c) {
  const CompiledBinary b = nvrtc_compile(kernel_family(s.backend).generate(s, c), s.arch);
  const std::string path = fmt::format("{}/samoyeds_sass_{}.cubin", ::testing::TempDir(), s.arch);
  std::ofstream(path, std::ios::binary).write(b.cubin.data(), std::streamsize(b.cubin.size()));
  const std::string sass = run(tool + " --dump-sass " + path + " 2>&1");
  std::remove(path.c_str());
  return sass;
}

class Sass : public ::testing::TestWithParam<std::string> {};

TEST_P(Sass, SparseMmaPresentAndNoLocalMemory) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  for (Epilogue epi : {Epilogue::None, Epilogue::GatedSilu}) {
    const KernelSpec s = spec(GetParam(), DType::bf16, {128, 1, 2}, epi);
    for (int64_t n : {16, 4096}) {
      const TileConfig c = kernel_family(Backend::MmaSp).default_config(s, n, kReferenceSmCount);
      const std::string sass = sass_of(tool, s, c);
      ASSERT_NE(sass.find("HMMA"), std::string::npos) << "no SASS from " << tool << ":\n" << sass.substr(0, 2000);
      EXPECT_TRUE(std::regex_search(sass, std::regex(R"(HMMA\.SP\.16832\.F32\.BF16)")))
          << c.to_string() << " has no sparse MMA";
      EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))")))
          << c.to_string() << " uses local memory";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, Sass, ::testing::Values("sm_80", "sm_90a"));

// The sparse FP8 warpgroup MMA as the GPU probe uses it
// (tests/backends/wgmma_sp/fp8_mma_gpu_test.cpp): ptxas assembles the form
// WgmmaSpE4m3 writes into the FP8 sparse HGMMA (QGMMA.SP), without spills.
TEST(SassWgmmaSp, Fp8ProbeHoldsTheSparseE4m3WarpgroupMma) {
  const CompiledBinary b = nvrtc_compile(test::fp8_mma_probe_kernel(), "sm_90a");
  ASSERT_FALSE(b.cubin.empty());
  EXPECT_EQ(b.spill_bytes, 0);
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  const std::string path = fmt::format("{}/samoyeds_fp8_probe.cubin", ::testing::TempDir());
  std::ofstream(path, std::ios::binary).write(b.cubin.data(), std::streamsize(b.cubin.size()));
  const std::string sass = run(tool + " --dump-sass " + path + " 2>&1");
  std::remove(path.c_str());
  EXPECT_TRUE(std::regex_search(sass, std::regex(R"(QGMMA\.SP\.64x32x64\.F32\.E4M3\.E4M3)")))
      << "no sparse FP8 warpgroup MMA:\n" << sass.substr(0, 2000);
}

// The FP8 projection's tiles (backends/wgmma_sp/fp8_projection.hpp): no
// spills, the sparse FP8 MMA in the SASS, no local memory.
TEST(SassWgmmaSp, Fp8ProjectionHoldsTheSparseE4m3MmaWithoutLocalMemory) {
  const std::string tool = find_cuobjdump();
  for (const Fp8Tile& t : fp8_tiles())
  for (bool grouped : {false, true}) {
    const CompiledBinary b = nvrtc_compile(generate_fp8_projection(t, grouped), "sm_90a");
    const std::string name = t.to_string() + (grouped ? " grouped" : "");
    ASSERT_FALSE(b.cubin.empty()) << name;
    EXPECT_EQ(b.spill_bytes, 0) << name << ": " << b.log;
    for (const char* what : {"C7510", "serialized"})
      EXPECT_EQ(b.log.find(what), std::string::npos) << name << ": ptxas says " << b.log;
    if (tool.empty()) continue;
    const std::string path = fmt::format("{}/samoyeds_fp8_projection.cubin", ::testing::TempDir());
    std::ofstream(path, std::ios::binary).write(b.cubin.data(), std::streamsize(b.cubin.size()));
    const std::string sass = run(tool + " --dump-sass " + path + " 2>&1");
    std::remove(path.c_str());
    EXPECT_TRUE(std::regex_search(sass, std::regex(fmt::format(R"(QGMMA\.SP\.64x{}x64\.F32\.E4M3\.E4M3)", t.block_n))))
        << name << " has no sparse FP8 warpgroup MMA";
    EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))"))) << name << " uses local memory";
  }
  if (tool.empty()) GTEST_SKIP() << "compiled without spills; no cuobjdump for the SASS (set SAMOYEDS_CUOBJDUMP)";
}

TEST(SassWgmmaSp, SparseWarpgroupMmaPresentAndNoLocalMemory) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  for (Epilogue epi : {Epilogue::None, Epilogue::GatedSilu}) {
    KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, epi);
    s.backend = Backend::WgmmaSp;
    for (int64_t n : {16, 4096}) {
      const TileConfig c = kernel_family(Backend::WgmmaSp).default_config(s, n, kReferenceSmCount);
      const std::string sass = sass_of(tool, s, c);
      EXPECT_TRUE(std::regex_search(sass, std::regex(R"(HGMMA\.SP\.64x)")))
          << c.to_string() << " has no sparse warpgroup MMA:\n" << sass.substr(0, 2000);
      EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))")))
          << c.to_string() << " uses local memory";
      // The packed layout's point (device_layout.hpp): a lane's metadata of
      // a k-tile is one 8-byte shared-memory load. With the mma_sp.v1 layout
      // these kernels had no LDS.64 at all.
      EXPECT_TRUE(std::regex_search(sass, std::regex(R"(\bLDS\.64\b)")))
          << c.to_string() << ": the k-tile's metadata is not one wide load";
      // Row selection by differences (templates/row_select.cuh): FMAs, not
      // selects. Swapping slots took two FSEL per accumulator, i.e. at least
      // operands x block_n of them in the loop; ptxas leaves a handful.
      const std::regex fsel_re(R"(\bFSEL\b)");
      const auto fsel = std::distance(std::sregex_iterator(sass.begin(), sass.end(), fsel_re), std::sregex_iterator());
      const int operands = epi == Epilogue::GatedSilu ? 2 : 1;
      EXPECT_LT(fsel, operands * c.block_n / 2) << c.to_string() << ": row selection went back to selects";
    }
  }
}

// Token tiles by TMA: the producer thread asks for the token boxes with the
// weights (two 2-D loads more per k-tile) and no thread gathers rows with
// cp.async (LDGSTS) or prepares a gather any more.
TEST(SassWgmmaSp, TokenTilesByTmaReplaceTheGather) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::None);
  s.op = Op::Down;
  s.backend = Backend::WgmmaSp;
  for (const char* config : {"bm128_bn128_bk128_w8x1_s4_tf", "bm128_bn128_bk128_w8x1_s4_tf_xt",
                             "bm64_bn64_bk128_w4x1_s4_m2_p_tf_xt"}) {
    const WgmmaSpConfig c = wg(config);
    const std::string sass = sass_of(tool, s, c);
    EXPECT_TRUE(std::regex_search(sass, std::regex(R"(HGMMA\.SP\.64x)"))) << config << ": no sparse warpgroup MMA";
    EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))"))) << config << " uses local memory";
    const bool gathers = std::regex_search(sass, std::regex(R"(\bLDGSTS\b)"));
    EXPECT_EQ(gathers, !c.tokens_tma) << config << (c.tokens_tma ? ": still gathers" : ": does not gather");
    // Nor do the producers load token ids and resolve rows per tile behind their barrier (2, 128 threads).
    const bool producer_barrier = std::regex_search(sass, std::regex(R"(BAR\.SYNC[.A-Z_]* 0x2, 0x80)"));
    EXPECT_EQ(producer_barrier, !c.tokens_tma) << config << ": producer barrier " << (producer_barrier ? "present" : "absent");
  }
}

// Single launches store their tiles by TMA (UTMASTG from the staging boxes)
// where WgmmaSpFamily::tma_store says so, and only there.
TEST(SassWgmmaSp, TilesStoredByTmaWhereTheFamilySaysSo) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::None);
  s.backend = Backend::WgmmaSp;
  KernelSpec grouped = s;
  grouped.grouped = true;
  grouped.experts = 4;
  for (const char* config : {"bm128_bn128_bk128_w8x1_s4_p_xt", "bm192_bn128_bk128_w12x1_s3_p_g16_xt"}) {
    const WgmmaSpConfig c = wg(config);
    for (const KernelSpec& k : {s, grouped}) {
      const std::string sass = sass_of(tool, k, c);
      const bool stores = std::regex_search(sass, std::regex(R"(\bUTMASTG\b)"));
      EXPECT_EQ(stores, WgmmaSpFamily::tma_store(k, c)) << config << (k.grouped ? " grouped" : " single") << " launch";
      EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))"))) << config;
    }
    EXPECT_TRUE(WgmmaSpFamily::tma_store(s, c)) << config;
  }
}

// A warpgroup per operand (gated up projection): each consumer warpgroup
// issues m64n128 wgmmas for its one operand (two operands in one warpgroup
// take m64n64), the up warpgroup hands its accumulators over in shared memory,
// and nothing spills.
TEST(SassWgmmaSp, SplitOperandsTakeWholeTokenTilesPerWarpgroup) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::GatedSilu);
  s.backend = Backend::WgmmaSp;
  for (const char* config : {"bm64_bn128_bk128_w4x1_s3_p_g16_so_xt", "bm64_bn128_bk128_w4x1_s3_so"}) {
    const std::string sass = sass_of(tool, s, wg(config));
    EXPECT_TRUE(std::regex_search(sass, std::regex(R"(HGMMA\.SP\.64x128x32)"))) << config << ": no m64n128 sparse MMA";
    EXPECT_FALSE(std::regex_search(sass, std::regex(R"(HGMMA\.SP\.64x64x32)"))) << config << ": still m64n64";
    EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))"))) << config << " uses local memory";
  }
}

// A multicast pair multicasts its weight tiles and releases every stage in
// both blocks (a remote mbarrier arrive per consumer warp and k-tile). With a
// cluster-scope release on that arrive, ptxas put a GPU-wide fence before it,
// and the pairs ran 1.5x slower than single blocks on the H200 (2026-11-29,
// a6e9999, docs/perf-log.md): a GPU-scope fence may appear only where a
// cluster barrier needs it.
TEST(SassWgmmaSp, MulticastPairsReleaseStagesWithoutAGpuWideFence) {
  const std::string tool = find_cuobjdump();
  if (tool.empty()) GTEST_SKIP() << "no cuobjdump (set SAMOYEDS_CUOBJDUMP; .ci/run installs one from PyPI)";
  KernelSpec s = spec("sm_90a", DType::bf16, {128, 1, 2}, Epilogue::None);
  s.backend = Backend::WgmmaSp;
  for (const char* config : {"bm128_bn128_bk128_w8x1_s4_m2_tf", "bm64_bn64_bk128_w4x1_s4_m2_p_tf"}) {
    const std::string sass = sass_of(tool, s, wg(config));
    EXPECT_TRUE(std::regex_search(sass, std::regex(R"(UTMALDG\.2D\.MULTICAST)"))) << config << ": no multicast load";
    EXPECT_TRUE(std::regex_search(sass, std::regex(R"(SYNCS\.ARRIVE\.TRANS64\.RED)")))
        << config << ": no remote arrive";
    // The instruction lines, in order; each GPU-scope fence must lead into a cluster barrier arrive.
    std::vector<std::string> lines;
    std::istringstream in(sass);
    for (std::string line; std::getline(in, line);)
      if (line.find("/*") != std::string::npos && line.find(';') != std::string::npos) lines.push_back(line);
    int fences = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      if (!std::regex_search(lines[i], std::regex(R"(MEMBAR\.[A-Z.]*GPU)"))) continue;
      ++fences;
      bool into_cluster_barrier = false;
      for (size_t j = i + 1; j < std::min(lines.size(), i + 5); ++j)
        into_cluster_barrier |= lines[j].find("UCGABAR_ARV") != std::string::npos;
      EXPECT_TRUE(into_cluster_barrier) << config << ": GPU-wide fence outside a cluster barrier: " << lines[i];
    }
    EXPECT_GT(fences, 0) << config << ": the cluster barriers' fences were expected (is the pattern stale?)";
  }
}

}  // namespace
}  // namespace samoyeds

namespace samoyeds {
namespace {

// gpt-oss's experts (biases, clamped SwiGLU): every backend's default configs
// for the gated up projection and the biased down projection, one expert and
// grouped, compile without spills, and keep the sparse MMA and no local memory.
TEST(NvrtcBiasedEpilogues, GptOssExpertKernelsCompileAtTheirDefaultConfigs) {
  const std::string tool = find_cuobjdump();
  for (Backend backend : {Backend::MmaSp, Backend::WgmmaSp})
    for (const std::string arch : {"sm_80", "sm_90a"}) {
      if (backend == Backend::WgmmaSp && arch != "sm_90a") continue;
      for (Epilogue epi : {Epilogue::ClampedSwiglu, Epilogue::Bias})
        for (bool grouped : {false, true}) {
          KernelSpec s = spec(arch, DType::bf16, {128, 1, 2}, epi);
          s.op = epi == Epilogue::Bias ? Op::Down : Op::GatedUp;
          s.backend = backend;
          s.m = 2880;  // gpt-oss: hidden 2880, ffn 2880
          s.k = 2880;
          s.grouped = grouped;
          s.experts = grouped ? 32 : 1;
          std::vector<TileConfig> cfgs;
          for (int64_t n : {1, 16, 256, 4096}) {
            const TileConfig c = kernel_family(backend).default_config(s, n, kReferenceSmCount);
            if (std::find(cfgs.begin(), cfgs.end(), c) == cfgs.end()) cfgs.push_back(c);
          }
          compile_all(s, cfgs);
          if (tool.empty()) continue;
          const std::string sass = sass_of(tool, s, cfgs.back());
          EXPECT_TRUE(std::regex_search(sass, std::regex(backend == Backend::WgmmaSp ? R"(HGMMA\.SP\.64x)"
                                                                                      : R"(HMMA\.SP\.16832)")))
              << s.to_string() << " " << cfgs.back().to_string() << " has no sparse MMA";
          EXPECT_FALSE(std::regex_search(sass, std::regex(R"(\b(LDL|STL)(\.|\s))")))
              << s.to_string() << " " << cfgs.back().to_string() << " uses local memory";
        }
    }
}

}  // namespace
}  // namespace samoyeds
