// The expert ops on the GPU against the float64 reference of the decoded
// weights: fresh random data per case, NaN-poisoned outputs with guard zones,
// every element checked.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "core/cuda_driver.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "samoyeds/samoyeds.h"
#include "test_util/gpu_check.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds::test {
namespace {

// A config by its text name, schedule suffixes as wgmma_sp names them.
WgmmaSpConfig wg(const std::string& text) { return WgmmaSpConfig::of(parse_config(text, Backend::WgmmaSp)); }

KernelRuntime& runtime() { return shared_runtime(); }

struct Case {
  DType dtype;
  SparsityParams sp;
  int64_t m, k, n, x_rows;
  Epilogue epi;  // None/Silu: ssmm; GatedSilu, ClampedSwiglu: gated_up; run_down_case: None or Bias
  std::optional<TileConfig> config;
  Backend backend = Backend::MmaSp;
  std::string name() const {
    return fmt::format("{} {} {} m{} k{} n{} T{} {} {}", backend_name(backend), dtype_name(dtype), sp.to_string(), m,
                       k, n, x_rows, epilogue_name(epi), config ? config->to_string() : "default");
  }
};

struct Expert {
  PackedWeights packed;
  DenseF64 decoded;
  PackedExpertWeights device;
};

Expert make_expert(const Case& c) {
  auto dense = random_matrix(c.m, c.k, c.dtype, 1.0f / std::sqrt(float(c.k)) * 2.0f);
  Expert e{pack_weights(dense.data(), c.m, c.k, c.dtype, c.sp), {}, {}};
  e.decoded = DenseF64{c.m, c.k, decode_weights_f64(e.packed)};
  e.device = PackedExpertWeights::upload(e.packed);
  return e;
}

// Runs one case; returns the comparison so callers can add expectations.
Comparison run_case(const Case& c) {
  SCOPED_TRACE(c.name());
  const bool gated = gated_epilogue(c.epi);
  Expert w1 = make_expert(c);
  std::optional<Expert> w3;
  if (gated) w3 = make_expert(c);
  auto x = random_matrix(c.x_rows, c.k, c.dtype);
  auto ids = random_ids(c.n, c.x_rows);
  DeviceBuffer d_x = to_device(x), d_ids = to_device(ids);
  PoisonedOutput y(c.n * c.m);
  LaunchOptions opt;
  opt.config = c.config;
  opt.backend = c.backend;
  // gpt-oss's: gate and up biases of a few units (some values pass the clamp).
  EpilogueInputs in;
  DeviceBuffer d_b1, d_b3;
  if (c.epi == Epilogue::ClampedSwiglu) {
    std::vector<float> b1(size_t(c.m)), b3(size_t(c.m));
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (auto& v : b1) v = nd(rng());
    for (auto& v : b3) v = nd(rng());
    d_b1 = to_device(b1), d_b3 = to_device(b3);
    in.bias.assign(b1.begin(), b1.end());
    in.up_bias.assign(b3.begin(), b3.end());
    opt.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
    opt.bias[0] = static_cast<const float*>(d_b1.data());
    opt.bias[1] = static_cast<const float*>(d_b3.data());
  }
  // A config that reads token rows in order by TMA gets them so: the rows
  // ids names, copied here (the reference still gathers from x).
  const void* xs = d_x.data();
  int64_t x_rows = c.x_rows;
  const int32_t* d_id = static_cast<const int32_t*>(d_ids.data());
  DeviceBuffer d_xg;
  if (c.config && WgmmaSpConfig::of(*c.config).tokens_tma) {
    d_xg = to_device(take_rows(x.data(), c.k, ids));
    xs = d_xg.data();
    x_rows = std::max<int64_t>(c.n, 1);
    d_id = nullptr;
  }
  if (gated)
    gated_up(runtime(), w1.device, w3->device, xs, x_rows, d_id, c.n, y.data(), opt);
  else
    ssmm(runtime(), w1.device, xs, x_rows, d_id, c.n, y.data(), c.epi, opt);
  Device::get().synchronize();
  auto got = y.read();
  const DenseF64 xf = to_f64(x.data(), c.x_rows, c.k, c.dtype);
  const DenseF64 ref = reference_ssmm(w1.decoded, xf, ids, c.epi, gated ? &w3->decoded : nullptr, in);
  Comparison cmp = compare(got, c.dtype, ref);
  EXPECT_EQ(cmp.non_finite, 0) << "first: " << cmp.first_non_finite;
  EXPECT_LE(cmp.rel_error, tolerance(c.dtype));
  return cmp;
}

// down_scaled on case c (x_rows is n: h is compact), run twice: both runs
// bit-identical and within tolerance of the f64 reference.
void run_down_case(const Case& c) {
  SCOPED_TRACE(c.name());
  const int64_t m = c.m, k = c.k, n = c.n;
  Expert w = make_expert(c);
  auto h = random_matrix(n, k, c.dtype);
  auto p = random_probs(n);
  DeviceBuffer d_h = to_device(h), d_p = to_device(p);
  PoisonedOutput z1(n * m), z2(n * m);
  LaunchOptions opt;
  opt.backend = c.backend;
  opt.config = c.config;
  EpilogueInputs in;  // gpt-oss's down bias, before the routing weight
  DeviceBuffer d_b2;
  if (c.epi == Epilogue::Bias) {
    std::vector<float> b2(static_cast<size_t>(m));
    std::normal_distribution<float> nd(0.0f, 1.0f);
    for (auto& v : b2) v = nd(rng());
    d_b2 = to_device(b2);
    in.bias.assign(b2.begin(), b2.end());
    opt.bias[0] = static_cast<const float*>(d_b2.data());
  }
  down_scaled(runtime(), w.device, d_h.data(), n, static_cast<const float*>(d_p.data()), z1.data(), opt);
  down_scaled(runtime(), w.device, d_h.data(), n, static_cast<const float*>(d_p.data()), z2.data(), opt);
  Device::get().synchronize();
  auto got1 = z1.read(), got2 = z2.read();
  EXPECT_EQ(got1, got2) << "down projection is not deterministic";
  std::vector<int32_t> iota(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) iota[size_t(i)] = int32_t(i);
  DenseF64 ref = reference_ssmm(w.decoded, to_f64(h.data(), n, k, c.dtype), iota, c.epi, nullptr, in);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t r = 0; r < m; ++r) ref.data[size_t(i * m + r)] *= p[size_t(i)];
  Comparison cmp = compare(got1, c.dtype, ref);
  EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
  EXPECT_LE(cmp.rel_error, tolerance(c.dtype));
}

class ExpertOpsGpu : public ::testing::Test {
 protected:
  void SetUp() override { SAMOYEDS_REQUIRE_GPU(); }
};

// Both dtypes x five sparsities x four shapes (partial tiles, n = 1), the
// epilogues taking turns.
void run_reference_grid(Backend backend, const std::vector<Epilogue>& epilogues) {
  const SparsityParams sps[] = {{128, 1, 2}, {64, 2, 4}, {256, 1, 4}, {128, 1, 1}, {32, 1, 2}};
  struct Shape {
    int64_t m, k, n, x_rows;
  };
  const Shape shapes[] = {{256, 512, 64, 256}, {200, 136, 7, 29}, {1408, 2048, 130, 300}, {33, 64, 1, 5}};
  size_t i = 0;
  for (DType dt : {DType::f16, DType::bf16})
    for (const auto& sp : sps)
      for (const auto& s : shapes)
        run_case({dt, sp, s.m, s.k, s.n, s.x_rows, epilogues[i++ % epilogues.size()], std::nullopt, backend});
}

TEST_F(ExpertOpsGpu, SsmmMatchesReferenceAcrossSparsityShapesAndDtypes) {
  run_reference_grid(Backend::MmaSp, {Epilogue::None, Epilogue::Silu});
}

TEST_F(ExpertOpsGpu, GatedUpMatchesReference) {
  for (DType dt : {DType::f16, DType::bf16})
    for (const SparsityParams& sp : {SparsityParams{128, 1, 2}, SparsityParams{64, 2, 4}, SparsityParams{128, 1, 1}}) {
      run_case({dt, sp, 384, 256, 50, 80, Epilogue::GatedSilu, std::nullopt});
      run_case({dt, sp, 1408, 2048, 257, 400, Epilogue::GatedSilu, std::nullopt});
    }
}

TEST_F(ExpertOpsGpu, ZeroTokensLaunchNothingAndWriteNothing) {
  run_case({DType::bf16, {128, 1, 2}, 256, 256, 0, 16, Epilogue::None, std::nullopt});
}

// Small enough for compute-sanitizer (scripts/gpu_check.sh runs memcheck and
// racecheck on exactly this test).
TEST_F(ExpertOpsGpu, SanitizerSmallCases) {
  run_case({DType::bf16, {128, 1, 2}, 200, 136, 37, 50, Epilogue::None, std::nullopt});
  run_case({DType::f16, {64, 2, 4}, 96, 128, 9, 20, Epilogue::Silu, std::nullopt});
  run_case({DType::bf16, {32, 1, 2}, 130, 256, 70, 90, Epilogue::GatedSilu, std::nullopt});
  run_case({DType::f16, {128, 1, 2}, 256, 256, 1, 1, Epilogue::None, TileConfig{128, 128, 64, 2, 4, 3}});
}

TEST_F(ExpertOpsGpu, LargeTokenCountsWithManyTokenTiles) {
  run_case({DType::f16, {128, 1, 2}, 512, 1024, 4096, 4096, Epilogue::None, std::nullopt});
}

// Every config the validity check accepts must produce correct results: one
// shape with partial row and token tiles per family variant.
void check_all_configs(DType dt, SparsityParams sp, Epilogue epi, Backend backend = Backend::MmaSp) {
  KernelSpec spec;
  spec.backend = backend;
  spec.op = gated_epilogue(epi) ? Op::GatedUp : Op::Ssmm;
  spec.arch = Device::get().info().arch();
  spec.dtype = dt;
  spec.m = 320;
  spec.k = 384;
  spec.sparsity = sp;
  spec.epilogue = epi;
  const auto configs = kernel_family(backend).search_space(spec);
  ASSERT_FALSE(configs.empty());
  // Load them all first from several threads: exercises compile-once under contention.
  std::atomic<int> load_failures{0};
  parallel_for(configs.size(), 8, [&](size_t i) {
    try {
      runtime().get(spec, configs[i]);
    } catch (const std::exception& e) {
      ++load_failures;
      ADD_FAILURE() << configs[i].to_string() << ": " << e.what();
    }
  });
  ASSERT_EQ(load_failures.load(), 0);
  for (const auto& cfg : configs) run_case({dt, sp, spec.m, spec.k, 100, 150, epi, cfg, backend});
}

TEST_F(ExpertOpsGpu, EveryValidConfigPassesBf16OneOfTwo) { check_all_configs(DType::bf16, {128, 1, 2}, Epilogue::None); }
TEST_F(ExpertOpsGpu, EveryValidConfigPassesF16TwoOfFour) { check_all_configs(DType::f16, {64, 2, 4}, Epilogue::Silu); }
TEST_F(ExpertOpsGpu, EveryValidConfigPassesGatedF16) { check_all_configs(DType::f16, {128, 1, 2}, Epilogue::GatedSilu); }
// The remaining main-loop paths: no selection, four slots with V > block_k,
// and selection at every k32 step (V < block_k).
TEST_F(ExpertOpsGpu, EveryValidConfigPassesOneOfOneBf16) { check_all_configs(DType::bf16, {128, 1, 1}, Epilogue::None); }
TEST_F(ExpertOpsGpu, EveryValidConfigPassesOneOfFourV256) { check_all_configs(DType::bf16, {256, 1, 4}, Epilogue::Silu); }
TEST_F(ExpertOpsGpu, EveryValidConfigPassesV32) { check_all_configs(DType::f16, {32, 1, 2}, Epilogue::None); }

// The wgmma_sp backend (sm_90a): the same reference grid and the same
// main-loop paths over its whole search space.
class WgmmaSpGpu : public ExpertOpsGpu {
 protected:
  void SetUp() override {
    ExpertOpsGpu::SetUp();
    if (IsSkipped()) return;  // no GPU: the base already said why
    if (Device::get().info().arch() != "sm_90a")
      GTEST_SKIP() << "wgmma_sp needs sm_90a; this device is " << Device::get().info().arch();
  }
};

TEST_F(WgmmaSpGpu, SsmmAndGatedMatchReferenceAcrossSparsityShapesAndDtypes) {
  run_reference_grid(Backend::WgmmaSp, {Epilogue::None, Epilogue::Silu, Epilogue::GatedSilu});
  run_case({DType::bf16, {128, 1, 2}, 256, 256, 0, 16, Epilogue::None, std::nullopt, Backend::WgmmaSp});
}

TEST_F(WgmmaSpGpu, SanitizerSmallCases) {
  run_case({DType::bf16, {128, 1, 2}, 200, 136, 37, 50, Epilogue::None, std::nullopt, Backend::WgmmaSp});
  run_case({DType::f16, {64, 2, 4}, 96, 128, 9, 20, Epilogue::GatedSilu, std::nullopt, Backend::WgmmaSp});
  // The schedules: a split-k cluster reading its peers' shared memory (one
  // block with an empty k share: 3 k-tiles over 4), persistent blocks
  // walking several tiles in token-first order.
  run_case({DType::bf16, {128, 1, 2}, 200, 384, 37, 50, Epilogue::GatedSilu,
            wg("bm64_bn32_bk128_w4x1_s3_k4"), Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 520, 256, 150, 150, Epilogue::None,
            wg("bm128_bn32_bk128_w8x1_s3_p_tf"), Backend::WgmmaSp});
  // Multicast pairs: weights sent to both blocks, stages released by both;
  // 3 token tiles, so the second pair's second block is past the tokens.
  run_case({DType::bf16, {128, 1, 2}, 520, 256, 150, 150, Epilogue::GatedSilu,
            wg("bm64_bn64_bk128_w4x1_s3_m2_tf"), Backend::WgmmaSp});
  run_case({DType::f16, {64, 2, 4}, 520, 384, 150, 150, Epilogue::None,
            wg("bm128_bn64_bk128_w8x1_s2_m2"), Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 2000, 256, 300, 300, Epilogue::None,
            wg("bm64_bn64_bk128_w4x1_s4_m2_p_tf"), Backend::WgmmaSp});
  // Token tiles by TMA (down projection): a partial tile and k past the last
  // full box; a multicast pair whose second block's box lies wholly past
  // the rows; persistent blocks reusing their stages tile after tile.
  run_down_case({DType::bf16, {128, 1, 2}, 200, 136, 37, 37, Epilogue::None,
                 wg("bm64_bn32_bk128_w4x1_s3_xt"), Backend::WgmmaSp});
  run_down_case({DType::f16, {128, 1, 2}, 520, 384, 150, 150, Epilogue::None,
                 wg("bm64_bn64_bk128_w4x1_s3_m2_tf_xt"), Backend::WgmmaSp});
  run_down_case({DType::bf16, {128, 1, 2}, 2000, 256, 300, 300, Epilogue::None,
                 wg("bm128_bn64_bk128_w8x1_s4_p_tf_xt"), Backend::WgmmaSp});
  // Row groups: 5 row tiles in groups of 4 (a short last group), persistent
  // blocks and one tile per block; grouped launches in check_grouped below.
  run_case({DType::bf16, {128, 1, 2}, 1200, 256, 300, 300, Epilogue::None,
            wg("bm128_bn64_bk128_w8x1_s4_p_g4_xt"), Backend::WgmmaSp});
  run_down_case({DType::bf16, {128, 1, 2}, 1200, 256, 300, 300, Epilogue::None,
                 wg("bm128_bn64_bk128_w8x1_s3_g4_xt"), Backend::WgmmaSp});
  // A warpgroup per operand of the gated up projection: the hand-off of the
  // up accumulators through shared memory, tile after tile in persistent
  // blocks (16 row tiles x 10 token tiles: more than one wave on the H200);
  // through the pipeline's f32 tile with N = 2 and with split-k.
  run_case({DType::bf16, {128, 1, 2}, 2000, 256, 1200, 1200, Epilogue::GatedSilu,
            wg("bm64_bn128_bk128_w4x1_s3_p_so"), Backend::WgmmaSp});
  run_case({DType::f16, {64, 2, 4}, 96, 256, 150, 150, Epilogue::GatedSilu,
            wg("bm64_bn64_bk128_w4x1_s3_so"), Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 200, 384, 37, 50, Epilogue::GatedSilu,
            wg("bm64_bn64_bk128_w4x1_s3_k2_so"), Backend::WgmmaSp});
}

TEST_F(WgmmaSpGpu, EveryValidConfigPassesBf16OneOfTwo) {
  check_all_configs(DType::bf16, {128, 1, 2}, Epilogue::None, Backend::WgmmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigPassesF16TwoOfFour) {
  check_all_configs(DType::f16, {64, 2, 4}, Epilogue::Silu, Backend::WgmmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigPassesGatedBf16) {
  check_all_configs(DType::bf16, {128, 1, 2}, Epilogue::GatedSilu, Backend::WgmmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigPassesOneOfOneF16) {
  check_all_configs(DType::f16, {128, 1, 1}, Epilogue::None, Backend::WgmmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigPassesOneOfFourV256) {
  check_all_configs(DType::bf16, {256, 1, 4}, Epilogue::Silu, Backend::WgmmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigPassesV32) {
  check_all_configs(DType::f16, {32, 1, 2}, Epilogue::None, Backend::WgmmaSp);
}

TEST_F(ExpertOpsGpu, DownScaledMatchesReferenceAndIsBitIdenticalAcrossRuns) {
  for (DType dt : {DType::f16, DType::bf16})
    for (Epilogue epi : {Epilogue::None, Epilogue::Bias})
      run_down_case({dt, {128, 1, 2}, 512, 1408, 77, 77, epi, std::nullopt});
}

// gpt-oss's gated epilogue at every valid config (row selection N > 1 too):
// the paths the defaults do not take (split-k, stream-K, TMA stores, a
// warpgroup per operand) read the biases at their own rows.
TEST_F(ExpertOpsGpu, EveryValidConfigPassesClampedSwiglu) {
  check_all_configs(DType::bf16, {128, 1, 2}, Epilogue::ClampedSwiglu);
  check_all_configs(DType::f16, {64, 2, 4}, Epilogue::ClampedSwiglu);
}

// A config that reads token tiles by TMA needs rows in order: fixed by the
// caller on a call that gathers by id, it is refused; chosen by the runtime
// (tuned or default), the call runs the choice's gathered config: here the
// gathered default, also where the in-order default is a 64 x 64 tile
// (n = 64) or a 192-row tile, which cannot gather (such a call failed with
// "invalid config" before).
TEST_F(WgmmaSpGpu, TokenTilesByTmaNeedRowsInOrder) {
  Case c{DType::bf16, {128, 1, 2}, 2048, 256, 1000, 1200, Epilogue::None,
         wg("bm128_bn64_bk128_w8x1_s3_xt"), Backend::WgmmaSp};
  Expert w = make_expert(c);
  DeviceBuffer d_x = to_device(random_matrix(c.x_rows, c.k, c.dtype)), d_ids = to_device(random_ids(c.n, c.x_rows));
  PoisonedOutput y(c.n * c.m);
  LaunchOptions opt;
  opt.backend = c.backend;
  opt.config = c.config;
  EXPECT_THROW(ssmm(runtime(), w.device, d_x.data(), c.x_rows, static_cast<const int32_t*>(d_ids.data()), c.n,
                    y.data(), Epilogue::None, opt),
               Error);
  KernelSpec spec;
  spec.backend = Backend::WgmmaSp;
  spec.dtype = c.dtype;
  spec.m = c.m;
  spec.k = c.k;
  spec.sparsity = c.sp;
  const KernelFamily& family = kernel_family(Backend::WgmmaSp);
  const int sms = Device::get().info().sm_count;
  ASSERT_TRUE(family.reads_rows_in_order(family.default_config(spec, c.n, sms)));
  c.config.reset();
  run_case(c);  // the default config reads by TMA; this call gathers
  Case decode{DType::bf16, {128, 1, 2}, 12288, 256, 64, 300, Epilogue::None, std::nullopt, Backend::WgmmaSp};
  spec.m = decode.m;
  spec.k = decode.k;
  EXPECT_EQ(family.default_config(spec, decode.n, sms).block_n, 64) << "not the 64 x 64 tile on this device";
  run_case(decode);
  Case tall{DType::bf16, {128, 1, 2}, 20000, 256, 256, 700, Epilogue::None, std::nullopt, Backend::WgmmaSp};
  spec.m = tall.m;
  EXPECT_EQ(family.default_config(spec, tall.n, sms).block_m, 192) << "not a 192-row tile on this device";
  run_case(tall);
}

// Every wgmma_sp config of the down projection, gathered and by TMA (k not
// a multiple of 64: the token boxes' columns past k must come in as zeros;
// 100 tokens: partial token tiles, whose rows past n must too).
TEST_F(WgmmaSpGpu, EveryValidDownConfigMatchesReference) {
  for (Epilogue epi : {Epilogue::None, Epilogue::Bias}) {  // Bias: gpt-oss's down projection
    KernelSpec spec;
    spec.backend = Backend::WgmmaSp;
    spec.op = Op::Down;
    spec.arch = Device::get().info().arch();
    spec.dtype = DType::bf16;
    spec.m = 320;
    spec.k = 392;
    spec.sparsity = {128, 1, 2};
    spec.epilogue = epi;
    const auto configs = kernel_family(Backend::WgmmaSp).search_space(spec);
    ASSERT_TRUE(
        std::any_of(configs.begin(), configs.end(), [](const TileConfig& c) { return WgmmaSpConfig::of(c).tokens_tma; }));
    parallel_for(configs.size(), 8, [&](size_t i) { runtime().get(spec, configs[i]); });
    for (const auto& cfg : configs)
      run_down_case({spec.dtype, spec.sparsity, spec.m, spec.k, 100, 100, epi, cfg, Backend::WgmmaSp});
  }
}

TEST_F(WgmmaSpGpu, EveryValidConfigPassesClampedSwiglu) {
  check_all_configs(DType::bf16, {128, 1, 2}, Epilogue::ClampedSwiglu, Backend::WgmmaSp);
}

// Tiles stored by TMA (single launches, N = 1, m a multiple of 8): rows past
// m and tokens past n clipped by the output map, the two staging buffers
// taken in turn chunk after chunk and tile after tile, chunks of 64, 32 and
// 16 tokens, 1 to 4 boxes per consumer warpgroup (MGROUP = 1, 2, 4: the
// 2-byte and 4-byte staging writes), one to three consumer warpgroups each
// storing its own boxes, row scales, both epilogues, two operands,
// multicast pairs. The last case runs the first case's kernel with m = 204,
// which stores from registers (a launch with no output map in a kernel that
// has the stores: the failure the first version of this test found).
TEST_F(WgmmaSpGpu, TmaStoredTilesMatchTheReference) {
  run_case({DType::bf16, {128, 1, 2}, 520, 256, 300, 300, Epilogue::Silu,
            wg("bm128_bn64_bk128_w8x1_s4_p_tf"), Backend::WgmmaSp});
  run_case({DType::f16, {128, 1, 4}, 1000, 384, 77, 77, Epilogue::None, wg("bm128_bn64_bk128_w8x1_s3_xt"),
            Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 1000, 256, 150, 150, Epilogue::GatedSilu,
            wg("bm64_bn64_bk128_w4x1_s3_m2_tf"), Backend::WgmmaSp});
  run_down_case({DType::bf16, {128, 1, 2}, 2000, 256, 1200, 1200, Epilogue::None,
                 wg("bm128_bn128_bk128_w8x1_s4_p_xt"), Backend::WgmmaSp});
  // 16 x 19 = 304 tiles: persistent blocks store two or three tiles each.
  run_down_case({DType::f16, {128, 1, 2}, 4096, 256, 2400, 2400, Epilogue::None,
                 wg("bm128_bn128_bk128_w8x1_s4_p_g16_xt"), Backend::WgmmaSp});
  // 192-row tiles (three warpgroups storing their own boxes): 1:1 (one box
  // each, 2-byte writes, chunks of 32), and a down projection of 11 x 19 =
  // 209 tiles (chunks of 16; blocks store one or two tiles).
  run_case({DType::f16, {128, 1, 1}, 1000, 256, 300, 300, Epilogue::Silu,
            wg("bm192_bn128_bk128_w12x1_s3_p_xt"), Backend::WgmmaSp});
  run_down_case({DType::bf16, {128, 1, 2}, 4096, 256, 2400, 2400, Epilogue::None,
                 wg("bm192_bn128_bk128_w12x1_s3_p_xt"), Backend::WgmmaSp});
  // Chunks of 64 tokens (one warpgroup, 64-row tiles), and of 16 in a
  // 32-token tile (one pair of chunks a tile).
  run_case({DType::bf16, {128, 1, 2}, 1000, 384, 300, 300, Epilogue::None,
            wg("bm64_bn128_bk128_w4x1_s4_p_xt"), Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 1000, 256, 150, 150, Epilogue::Silu,
            wg("bm64_bn32_bk128_w4x1_s8_p"), Backend::WgmmaSp});
  run_case({DType::bf16, {128, 1, 2}, 204, 256, 300, 300, Epilogue::Silu,
            wg("bm128_bn64_bk128_w8x1_s4_p_tf"), Backend::WgmmaSp});
}

// A stream-K case must split tiles on the device it runs on (the grid is
// every resident block there), or it would test nothing.
void expect_stream_k_split(const Case& c, Op op) {
  KernelSpec spec;
  spec.op = op;
  spec.backend = Backend::WgmmaSp;
  spec.arch = runtime().device().info().arch();
  spec.dtype = c.dtype;
  spec.m = c.m;
  spec.k = c.k;
  spec.sparsity = c.sp;
  spec.epilogue = c.epi;
  const int grid = runtime().get(spec, *c.config).resident_blocks;
  const auto w = WgmmaSpFamily::stream_k_workspace(spec, *c.config, c.n, grid);
  EXPECT_GE(w.split.parts, 2) << c.name() << ": " << WgmmaSpFamily::tile_count(spec, *c.config, c.n)
                              << " tiles on " << grid << " resident blocks split none";
}

void run_stream_k_case(const Case& c) {
  const bool down = c.epi == Epilogue::None;
  expect_stream_k_split(c, down ? Op::Down : Op::GatedUp);
  if (down)
    run_down_case(c);
  else
    run_case(c);
}

// Stream-K tails in one launch with whole tiles, down projection (row
// scales), each run twice bit for bit (the shares are summed in a fixed
// order). On the H200's 132 blocks: 16 x 9 = 144 tiles of 128 rows, 132
// whole and 12 in four shares (k = 1000: 8 segments); 11 x 13 = 143 tiles of
// 192 rows, 11 in four shares. Other devices split differently; the
// results must not change.
TEST_F(WgmmaSpGpu, StreamKTailsMatchTheReferenceAndRepeatBitForBit) {
  const struct {
    const char* config;
    int64_t n;
  } cases[] = {{"bm128_bn128_bk128_w8x1_s4_p_xt_sk", 1152}, {"bm192_bn128_bk128_w12x1_s3_p_g16_xt_sk", 1664},
               {"bm128_bn128_bk128_w8x1_s4_p_sk", 1152}};
  for (const auto& c : cases)
    run_stream_k_case({DType::bf16, {128, 1, 2}, 4096, 1000, c.n, c.n, Epilogue::None, wg(c.config),
                      Backend::WgmmaSp});
  // Two operands a block (gated up), f16; and V = 256 at 1:4 (k = 1000 is
  // four 256-column segments: four shares of one segment each).
  run_stream_k_case({DType::f16, {128, 1, 2}, 4096, 1000, 576, 576, Epilogue::GatedSilu,
                    wg("bm128_bn64_bk128_w8x1_s4_p_sk"), Backend::WgmmaSp});
  run_stream_k_case({DType::bf16, {256, 1, 4}, 8192, 1000, 576, 576, Epilogue::None,
                    wg("bm128_bn64_bk128_w8x1_s3_p_xt_sk"), Backend::WgmmaSp});
}

// A stream-K launch on a stream it never ran on, inside a CUDA graph
// capture in global mode (as torch.cuda.graph captures) after a warm-up on
// another stream: the capture stream's scratch is allocated and zeroed
// inside the capture. DeepSeek-V3's shared expert at T = 8192 took this
// path, and its capture failed while the scratch synchronized the context.
TEST_F(WgmmaSpGpu, StreamKLaunchCapturesOnAStreamItNeverRanOn) {
  const DriverApi& d = driver();
  const Case c{DType::bf16, {128, 1, 2}, 4096, 1000, 1152, 1152, Epilogue::None,
               wg("bm128_bn128_bk128_w8x1_s4_p_xt_sk"), Backend::WgmmaSp};
  expect_stream_k_split(c, Op::Down);
  Expert w = make_expert(c);
  auto h = random_matrix(c.n, c.k, c.dtype);
  auto p = random_probs(c.n);
  DeviceBuffer d_h = to_device(h), d_p = to_device(p);
  PoisonedOutput eager(c.n * c.m), graphed(c.n * c.m);
  CUstream warm, captured;
  check(d.cuStreamCreate(&warm, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  check(d.cuStreamCreate(&captured, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  LaunchOptions opt;
  opt.backend = c.backend;
  opt.config = c.config;
  opt.stream = warm;
  down_scaled(runtime(), w.device, d_h.data(), c.n, static_cast<const float*>(d_p.data()), eager.data(), opt);
  check(d.cuStreamSynchronize(warm), "sync");
  opt.stream = captured;
  check(d.cuStreamBeginCapture(captured, CU_STREAM_CAPTURE_MODE_GLOBAL), "cuStreamBeginCapture");
  down_scaled(runtime(), w.device, d_h.data(), c.n, static_cast<const float*>(d_p.data()), graphed.data(), opt);
  CUgraph graph;
  check(d.cuStreamEndCapture(captured, &graph), "cuStreamEndCapture");
  CUgraphExec exec;
  check(d.cuGraphInstantiateWithFlags(&exec, graph, 0), "cuGraphInstantiateWithFlags");
  for (int replay = 0; replay < 2; ++replay) check(d.cuGraphLaunch(exec, captured), "cuGraphLaunch");
  check(d.cuStreamSynchronize(captured), "sync");
  EXPECT_EQ(eager.read(), graphed.read());
  d.cuGraphExecDestroy(exec);
  d.cuGraphDestroy(graph);
  d.cuStreamDestroy(captured);
  d.cuStreamDestroy(warm);
}

// Stream-K tails under compute-sanitizer: the same splits as above (144
// tiles of 128 rows on 132 blocks: 12 in four shares) with k = 512, the
// shares' workspace writes, flag handshake and ordered sum.
TEST_F(WgmmaSpGpu, SanitizerStreamKTails) {
  run_stream_k_case({DType::bf16, {128, 1, 2}, 4096, 512, 1152, 1152, Epilogue::None,
                    wg("bm128_bn128_bk128_w8x1_s4_p_xt_sk"), Backend::WgmmaSp});
  run_stream_k_case({DType::bf16, {128, 1, 2}, 4096, 512, 576, 576, Epilogue::GatedSilu,
                    wg("bm128_bn64_bk128_w8x1_s4_p_sk"), Backend::WgmmaSp});
}

TEST_F(ExpertOpsGpu, DownCombineAddsIntoRoutedRowsDeterministically) {
  for (DType dt : {DType::f16, DType::bf16}) {
    const int64_t m = 384, k = 512, n = 300, T = 120;  // ids repeat: several slots per token
    Case c{dt, {128, 1, 2}, m, k, n, n, Epilogue::None, std::nullopt};
    SCOPED_TRACE(c.name());
    Expert w = make_expert(c);
    auto h = random_matrix(n, k, dt);
    auto p = random_probs(n);
    auto ids = random_ids(n, T);
    auto y0 = random_matrix(T, m, dt);
    DeviceBuffer d_h = to_device(h), d_p = to_device(p), d_ids = to_device(ids);
    DeviceBuffer ws(down_combine_workspace_bytes(w.device, n));
    std::vector<std::vector<uint16_t>> runs;
    for (int run = 0; run < 2; ++run) {
      DeviceBuffer d_y = to_device(y0);
      down_combine(runtime(), w.device, d_h.data(), n, static_cast<const int32_t*>(d_ids.data()),
                   static_cast<const float*>(d_p.data()), d_y.data(), T, ws.data());
      Device::get().synchronize();
      runs.emplace_back(size_t(T * m));
      d_y.download(runs.back().data(), runs.back().size() * 2);
    }
    EXPECT_EQ(runs[0], runs[1]) << "combine is not bit-identical across runs";
    DenseF64 ref = to_f64(y0.data(), T, m, dt);
    reference_down_combine(w.decoded, to_f64(h.data(), n, k, dt), ids, p, ref);
    Comparison cmp = compare(runs[0], dt, ref);
    EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
    EXPECT_LE(cmp.rel_error, tolerance(dt));
  }
}

TEST_F(ExpertOpsGpu, CApiGivesTheSameBitsAsTheCppApi) {
  const int64_t m = 256, k = 384, n = 40, T = 64;
  auto dense = random_matrix(m, k, DType::bf16, 0.1f);
  auto x = random_matrix(T, k, DType::bf16);
  auto ids = random_ids(n, T);
  DeviceBuffer d_x = to_device(x), d_ids = to_device(ids), d_dense = to_device(dense);
  samoyeds_runtime* crt = nullptr;
  samoyeds_weights* cw = nullptr;
  ASSERT_EQ(samoyeds_runtime_create(0, nullptr, &crt), SAMOYEDS_OK) << samoyeds_last_error();
  ASSERT_EQ(samoyeds_weights_pack_device(d_dense.data(), m, k, SAMOYEDS_BF16, 128, 1, 2, 0, &cw), SAMOYEDS_OK)
      << samoyeds_last_error();
  EXPECT_GT(samoyeds_weights_device_bytes(cw), 0);
  PoisonedOutput y_c(n * m), y_cpp(n * m);
  ASSERT_EQ(samoyeds_ssmm(crt, cw, d_x.data(), T, static_cast<const int32_t*>(d_ids.data()), n, y_c.data(), 1, nullptr),
            SAMOYEDS_OK)
      << samoyeds_last_error();
  auto w = PackedExpertWeights::pack(dense.data(), m, k, DType::bf16, {128, 1, 2});
  ssmm(runtime(), w, d_x.data(), T, static_cast<const int32_t*>(d_ids.data()), n, y_cpp.data(), Epilogue::Silu);
  Device::get().synchronize();
  EXPECT_EQ(y_c.read(), y_cpp.read());
  // A misaligned pointer is an error code with a message, not a fault.
  EXPECT_EQ(samoyeds_ssmm(crt, cw, static_cast<char*>(d_x.data()) + 2, T, nullptr, n, y_c.data(), 0, nullptr),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("aligned"), std::string::npos);
  samoyeds_weights_destroy(cw);
  samoyeds_runtime_destroy(crt);
}

// The grouped launch over all experts gives exactly the bits of one launch
// per expert (same config): each output row depends only on its own token.
// E experts of a gated MLP (hidden H, ffn I), random 1:2 weights, packed
// (w*) and uploaded grouped (g*).
struct RandomExperts {
  std::vector<PackedWeights> w1, w3, w2;  // gate, up [I, H]; down [H, I]
  GroupedExpertWeights g1, g3, g2;
  RandomExperts(int E, int64_t H, int64_t I, DType dt) {
    const SparsityParams sp{128, 1, 2};
    for (int e = 0; e < E; ++e) {
      auto a = random_matrix(I, H, dt, 0.1f), b = random_matrix(I, H, dt, 0.1f), c = random_matrix(H, I, dt, 0.1f);
      w1.push_back(pack_weights(a.data(), I, H, dt, sp));
      w3.push_back(pack_weights(b.data(), I, H, dt, sp));
      w2.push_back(pack_weights(c.data(), H, I, dt, sp));
    }
    g1 = GroupedExpertWeights::upload(w1);
    g3 = GroupedExpertWeights::upload(w3);
    g2 = GroupedExpertWeights::upload(w2);
  }
};

// The grouped launches' experts: E of I rows, T tokens. Expert 3 gets none,
// expert 0 every token, expert e otherwise a third of them, or (uneven) one
// in e + 1. The float64 check of expert 0 takes its first reference_tokens.
struct GroupedSizes {
  int experts = 5;
  int64_t ffn = 384, tokens = 70;
  bool uneven = false;
  int64_t reference_tokens = 1 << 30;
};

// Grouped launches over the experts of `sizes` against one launch per
// expert, bit for bit, with one backend and config (the down projection's
// own where given), hidden size H.
void check_grouped_equals_per_expert(Backend backend, const TileConfig& config, int64_t H = 256,
                                     std::optional<TileConfig> down_config = std::nullopt,
                                     const GroupedSizes& sizes = {}, const RandomExperts* experts = nullptr) {
  const int E = sizes.experts;
  const int64_t I = sizes.ffn, T = sizes.tokens;
  const DType dt = DType::bf16;
  std::optional<RandomExperts> own;  // unless the caller shares its experts across configs
  if (!experts) experts = &own.emplace(E, H, I, dt);
  const RandomExperts& ex = *experts;
  const auto &w1 = ex.w1, &w3 = ex.w3, &w2 = ex.w2;
  const auto &g1 = ex.g1, &g3 = ex.g3, &g2 = ex.g2;
  std::vector<int32_t> offsets{0}, list;
  for (int e = 0; e < E; ++e) {
    const int64_t every = sizes.uneven ? e + 1 : 3;
    for (int64_t t = 0; t < T; ++t)
      if (e == 0 || (e != 3 && (t * 7 + e) % every == 0)) list.push_back(int32_t(t));
    offsets.push_back(int32_t(list.size()));
  }
  const int64_t rows = int64_t(list.size());
  auto x = random_matrix(T, H, dt);
  auto p = random_probs(rows);
  DeviceBuffer d_x = to_device(x), d_list = to_device(list), d_off = to_device(offsets), d_p = to_device(p);
  DeviceBuffer h(size_t(rows * I * 2)), z(size_t(rows * H * 2));
  LaunchOptions opt, up_opt, grouped_up_opt;
  opt.backend = up_opt.backend = grouped_up_opt.backend = backend;
  opt.config = up_opt.config = grouped_up_opt.config = config;
  // Grouped, a config reading token tiles by TMA copies the tokens into list
  // order first; each expert's own launch gathers them with the same tile,
  // except a 192-row tile, which has no gather: it reads the grouped launch's
  // copy in list order (the float64 check below covers the copy).
  WgmmaSpConfig up = WgmmaSpConfig::of(*up_opt.config);
  const bool gather = backend != Backend::WgmmaSp || up.block_m != 192;
  if (gather) up.tokens_tma = false;
  up_opt.config = up.config();
  // A warpgroup per operand is the up projection's (two operands); the down
  // projection runs the same tile without it.
  WgmmaSpConfig down = WgmmaSpConfig::of(*opt.config);
  down.split_operands = false;
  opt.config = down.config();
  if (down_config) opt.config = down_config;
  DeviceBuffer in_order(size_t(rows * H * 2));
  grouped_gated_up(runtime(), g1, g3, d_x.data(), T, static_cast<const int32_t*>(d_list.data()),
                   static_cast<const int32_t*>(d_off.data()), T, h.data(), grouped_up_opt, {in_order.data(), rows});
  grouped_down_scaled(runtime(), g2, h.data(), rows, static_cast<const int32_t*>(d_off.data()), T,
                      static_cast<const float*>(d_p.data()), z.data(), opt);
  Device::get().synchronize();
  std::vector<uint16_t> got_h(size_t(rows * I)), got_z(size_t(rows * H));
  h.download(got_h.data(), got_h.size() * 2);
  z.download(got_z.data(), got_z.size() * 2);
  for (int e = 0; e < E; ++e) {
    const int64_t n = offsets[size_t(e) + 1] - offsets[size_t(e)];
    if (n == 0) continue;
    SCOPED_TRACE(testing::Message() << "expert " << e);
    const auto e1 = PackedExpertWeights::upload(w1[size_t(e)]), e3 = PackedExpertWeights::upload(w3[size_t(e)]),
               e2 = PackedExpertWeights::upload(w2[size_t(e)]);
    PoisonedOutput he(n * I), ze(n * H);
    const auto* ids = static_cast<const int32_t*>(d_list.data()) + offsets[size_t(e)];
    if (gather)
      gated_up(runtime(), e1, e3, d_x.data(), T, ids, n, he.data(), up_opt);
    else
      gated_up(runtime(), e1, e3, static_cast<const char*>(in_order.data()) + offsets[size_t(e)] * H * 2, n,
               nullptr, n, he.data(), up_opt);
    const auto* h_e = static_cast<const char*>(h.data()) + offsets[size_t(e)] * I * 2;
    down_scaled(runtime(), e2, h_e, n, static_cast<const float*>(d_p.data()) + offsets[size_t(e)], ze.data(), opt);
    Device::get().synchronize();
    const auto ref_h = he.read(), ref_z = ze.read();
    EXPECT_TRUE(std::equal(ref_h.begin(), ref_h.end(), got_h.begin() + offsets[size_t(e)] * I));
    EXPECT_TRUE(std::equal(ref_z.begin(), ref_z.end(), got_z.begin() + offsets[size_t(e)] * H));
  }
  // And against the float64 reference for expert 0 (every token).
  const DenseF64 xf = to_f64(x.data(), T, H, dt);
  const int64_t checked = std::min<int64_t>(offsets[1], sizes.reference_tokens);
  std::vector<int32_t> all(list.begin(), list.begin() + checked);
  const DenseF64 up0{I, H, decode_weights_f64(w3[0])};
  const DenseF64 ref = reference_ssmm(DenseF64{I, H, decode_weights_f64(w1[0])}, xf, all, Epilogue::GatedSilu, &up0);
  std::vector<uint16_t> h0(got_h.begin(), got_h.begin() + checked * I);
  EXPECT_LE(compare(h0, dt, ref).rel_error, tolerance(dt));
}

TEST_F(ExpertOpsGpu, GroupedLaunchesEqualPerExpertLaunchesBitForBit) {
  check_grouped_equals_per_expert(Backend::MmaSp, TileConfig{64, 32, 64, 2, 2, 3});
}
TEST_F(WgmmaSpGpu, GroupedLaunchesEqualPerExpertLaunchesBitForBit) {
  // One tile per block, then each schedule the grouped tile walk must get
  // right: persistent blocks over several experts' tiles, token tiles first,
  // split-k clusters, multicast pairs.
  for (const char* config : {"bm128_bn32_bk128_w8x1_s3", "bm128_bn32_bk128_w8x1_s3_p", "bm64_bn32_bk128_w4x1_s4_p_tf",
                             "bm128_bn64_bk128_w8x1_s3_tf", "bm128_bn32_bk128_w8x1_s4_k2", "bm64_bn64_bk128_w4x1_s3_k4",
                             "bm128_bn64_bk128_w8x1_s3_m2_tf", "bm64_bn64_bk128_w4x1_s4_m2_p_tf",
                             // the down projection's token tiles by TMA, from h's rows past each expert's offset
                             "bm128_bn64_bk128_w8x1_s3_tf_xt", "bm64_bn64_bk128_w4x1_s4_m2_p_tf_xt",
                             // row groups (one short group of 3 row tiles per expert)
                             "bm64_bn32_bk128_w4x1_s3_p_g4", "bm64_bn64_bk128_w4x1_s3_g4_xt",
                             // a warpgroup per up operand: persistent (the hand-off tile after tile),
                             // one tile per block, split-k
                             "bm64_bn128_bk128_w4x1_s3_p_so_xt", "bm64_bn64_bk128_w4x1_s4_p_g4_so",
                             "bm64_bn128_bk128_w4x1_s3_tf_so_xt", "bm64_bn64_bk128_w4x1_s3_k2_so"}) {
    SCOPED_TRACE(config);
    check_grouped_equals_per_expert(Backend::WgmmaSp, wg(config));
  }
  // 192-row down tiles (three consumer warpgroups) over 256 condensed rows an
  // expert: each expert's second row tile reads past its rows (into the next
  // expert's, or past the last), persistent and one tile per block.
  for (const char* down : {"bm192_bn128_bk128_w12x1_s3_p_tf_xt", "bm192_bn64_bk128_w12x1_s4_xt"}) {
    SCOPED_TRACE(down);
    check_grouped_equals_per_expert(Backend::WgmmaSp, wg("bm64_bn128_bk128_w4x1_s3_p_so_xt"), 512,
                                    wg(down));
  }
}

// Every valid config of a backend, grouped as the layer launches it, where
// tiles outnumber the SMs: 9 experts of 1536 rows (12 row tiles of 128, so
// row groups of 4 make three) with uneven token counts (600, 300, 200, 0,
// 120, ...), about 1,550 rows in all: persistent blocks take several tiles,
// over several experts. The down projection takes the same tile where it is
// valid for it, else its default; only expert 0's first 64 tokens go to the
// float64 reference (the rest is checked bit for bit against one launch per
// expert, which the reference grids cover).
void check_every_config_grouped_at_scale(Backend backend) {
  const int64_t H = 1024;
  const GroupedSizes sizes{9, 1536, 600, true, 64};
  KernelSpec up;
  up.backend = backend;
  up.op = Op::GatedUp;
  up.arch = Device::get().info().arch();
  up.dtype = DType::bf16;
  up.m = sizes.ffn;
  up.k = H;
  up.sparsity = {128, 1, 2};
  up.epilogue = Epilogue::GatedSilu;
  KernelSpec down = up;
  down.op = Op::Down;
  down.m = H;
  down.k = sizes.ffn;
  down.epilogue = Epilogue::None;
  const KernelFamily& family = kernel_family(backend);
  const auto configs = family.search_space(up);
  ASSERT_FALSE(configs.empty());
  const RandomExperts experts(sizes.experts, H, sizes.ffn, up.dtype);
  const TileConfig down_default = family.default_config(down, sizes.tokens, Device::get().info().sm_count);
  for (const TileConfig& cfg : configs) {
    SCOPED_TRACE(cfg.to_string());
    WgmmaSpConfig as_down = WgmmaSpConfig::of(cfg);
    as_down.split_operands = false;
    const bool same = !family.invalid_reason(down, backend == Backend::WgmmaSp ? as_down.config() : cfg);
    check_grouped_equals_per_expert(backend, cfg, H, same ? std::nullopt : std::optional<TileConfig>(down_default),
                                    sizes, &experts);
  }
}

TEST_F(ExpertOpsGpu, EveryValidConfigGroupedWithMoreTilesThanSms) {
  check_every_config_grouped_at_scale(Backend::MmaSp);
}
TEST_F(WgmmaSpGpu, EveryValidConfigGroupedWithMoreTilesThanSms) {
  check_every_config_grouped_at_scale(Backend::WgmmaSp);
}

// For compute-sanitizer (scripts/gpu_check.sh): the grouped up projection
// copying its tokens into list order and reading them by TMA, then the down
// projection reading h by TMA.
TEST_F(WgmmaSpGpu, SanitizerGroupedTokensInListOrder) {
  check_grouped_equals_per_expert(Backend::WgmmaSp, wg("bm64_bn64_bk128_w4x1_s3_tf_xt"));
}

TEST_F(ExpertOpsGpu, OutOfRangeIdsRaiseTheErrorFlagWithoutFaulting) {
  Case c{DType::bf16, {128, 1, 2}, 256, 256, 32, 40, Epilogue::None, std::nullopt};
  Expert w = make_expert(c);
  auto x = random_matrix(c.x_rows, c.k, c.dtype);
  auto ids = random_ids(c.n, c.x_rows);
  ids[5] = 1 << 30;
  ids[9] = -3;
  DeviceBuffer d_x = to_device(x), d_ids = to_device(ids), flag(4);
  flag.fill_bytes(0);
  PoisonedOutput y(c.n * c.m);
  LaunchOptions opt;
  opt.error_flag = static_cast<int*>(flag.data());
  ssmm(runtime(), w.device, d_x.data(), c.x_rows, static_cast<const int32_t*>(d_ids.data()), c.n, y.data(),
       Epilogue::None, opt);
  Device::get().synchronize();
  int f = 0;
  flag.download(&f, 4);
  EXPECT_EQ(f & 1, 1);
  auto got = y.read();
  // The bad rows read as zeros; every other row is right.
  std::vector<int32_t> fixed = ids;
  fixed[5] = fixed[9] = 0;
  DenseF64 ref = reference_ssmm(w.decoded, to_f64(x.data(), c.x_rows, c.k, c.dtype), fixed, Epilogue::None);
  for (int64_t r = 0; r < c.m; ++r) ref.data[size_t(5 * c.m + r)] = ref.data[size_t(9 * c.m + r)] = 0.0;
  EXPECT_LE(compare(got, c.dtype, ref).rel_error, tolerance(c.dtype));
}

// A grouped launch whose token list (offsets[experts], on the device) is
// longer than the rows of its compact input would read and write past them:
// it raises bit 1 of the error flag and writes nothing. Down projections on
// both backends (h_rows short), and the up projection copying its tokens into
// list order (ListOrderSpace::rows short).
void check_list_past_rows(Backend backend) {
  const int E = 2;
  const int64_t H = 256, I = 128, T = 50, rows = 80;
  const DType dt = DType::bf16;
  const RandomExperts ex(E, H, I, dt);
  const auto &g1 = ex.g1, &g3 = ex.g3, &g2 = ex.g2;
  std::vector<int32_t> offsets{0, 40, int32_t(rows)}, list;
  for (int64_t i = 0; i < rows; ++i) list.push_back(int32_t(i % T));
  auto x = random_matrix(T, H, dt);
  auto h = random_matrix(rows, I, dt);
  auto p = random_probs(rows);
  DeviceBuffer d_x = to_device(x), d_h = to_device(h), d_list = to_device(list), d_off = to_device(offsets),
               d_p = to_device(p), flag(4), in_order(size_t(rows * H * 2));
  LaunchOptions opt;
  opt.backend = backend;
  opt.error_flag = static_cast<int*>(flag.data());
  auto flag_after = [&](auto&& launch) {
    flag.fill_bytes(0);
    launch();
    Device::get().synchronize();
    int f = 0;
    flag.download(&f, 4);
    return f;
  };
  const auto untouched = [](const std::vector<uint16_t>& v) {
    return std::all_of(v.begin(), v.end(), [](uint16_t u) { return u == 0xffff; });
  };
  {
    PoisonedOutput z(rows * H);
    const int f = flag_after([&] {
      grouped_down_scaled(runtime(), g2, d_h.data(), rows - 20, static_cast<const int32_t*>(d_off.data()), T,
                          static_cast<const float*>(d_p.data()), z.data(), opt);
    });
    EXPECT_EQ(f, 2);
    EXPECT_TRUE(untouched(z.read()));
  }
  {  // the same launch with every row: no flag, every row written
    PoisonedOutput z(rows * H);
    const int f = flag_after([&] {
      grouped_down_scaled(runtime(), g2, d_h.data(), rows, static_cast<const int32_t*>(d_off.data()), T,
                          static_cast<const float*>(d_p.data()), z.data(), opt);
    });
    EXPECT_EQ(f, 0);
    const auto got = z.read();
    EXPECT_EQ(std::count(got.begin(), got.end(), uint16_t(0xffff)), 0);
  }
  if (backend == Backend::WgmmaSp) {
    LaunchOptions up = opt;
    up.config = wg("bm64_bn64_bk128_w4x1_s3_tf_xt");  // reads the list-order copy by TMA
    PoisonedOutput hu(rows * I);
    const int f = flag_after([&] {
      grouped_gated_up(runtime(), g1, g3, d_x.data(), T, static_cast<const int32_t*>(d_list.data()),
                       static_cast<const int32_t*>(d_off.data()), T, hu.data(), up, {in_order.data(), rows - 1});
    });
    EXPECT_EQ(f, 2);
    EXPECT_TRUE(untouched(hu.read()));
  }
}

TEST_F(ExpertOpsGpu, GroupedListPastItsRowsRaisesTheFlagAndWritesNothing) { check_list_past_rows(Backend::MmaSp); }
TEST_F(WgmmaSpGpu, GroupedListPastItsRowsRaisesTheFlagAndWritesNothing) { check_list_past_rows(Backend::WgmmaSp); }

TEST_F(ExpertOpsGpu, MisalignedOrMismatchedArgumentsAreRejected) {
  Case c{DType::bf16, {128, 1, 2}, 128, 128, 8, 8, Epilogue::None, std::nullopt};
  Expert w = make_expert(c);
  Case c16 = c;
  c16.dtype = DType::f16;
  Expert w16 = make_expert(c16);
  DeviceBuffer x(8 * 128 * 2 + 64), y(8 * 128 * 2 + 64);
  auto* xb = static_cast<char*>(x.data());
  try {
    ssmm(runtime(), w.device, xb + 2, 8, nullptr, 8, y.data(), Epilogue::None);
    FAIL() << "misaligned x accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("aligned"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gated_up(runtime(), w.device, w16.device, x.data(), 8, nullptr, 8, y.data()), Error);
  EXPECT_THROW(ssmm(runtime(), w.device, x.data(), 8, nullptr, 8, y.data(), Epilogue::GatedSilu), Error);
  EXPECT_THROW(ssmm(runtime(), w.device, x.data(), 0, nullptr, 8, y.data(), Epilogue::None), Error);
  // k not a multiple of 8: rows of x would start misaligned.
  Case odd{DType::bf16, {128, 1, 2}, 128, 100, 8, 8, Epilogue::None, std::nullopt};
  Expert w_odd = make_expert(odd);
  try {
    ssmm(runtime(), w_odd.device, x.data(), 8, nullptr, 8, y.data(), Epilogue::None);
    FAIL() << "k = 100 accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("multiple of 8"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace samoyeds::test

namespace samoyeds::test {
namespace {

// gpt-oss's experts, one expert and grouped-free: the clamped SwiGLU with its
// gate and up biases, then the down projection with its bias before the
// routing weight, on both backends (wgmma_sp where the GPU has it), against
// the float64 reference with the same float biases. The gate's scale makes
// some values pass the clamp.
TEST_F(ExpertOpsGpu, GptOssEpiloguesMatchTheReference) {
  std::vector<Backend> backends = {Backend::MmaSp};
  if (Device::get().info().arch() == "sm_90a") backends.push_back(Backend::WgmmaSp);
  for (Backend backend : backends)
    for (DType dt : {DType::bf16, DType::f16}) {
      const Case c{dt, {128, 1, 2}, 576, 384, 70, 150, Epilogue::ClampedSwiglu, std::nullopt, backend};
      SCOPED_TRACE(c.name());
      Expert w1 = make_expert(c), w3 = make_expert(c);
      std::vector<float> b1(576), b3(576);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      for (auto& v : b1) v = 3.0f * nd(rng());
      for (auto& v : b3) v = 3.0f * nd(rng());
      auto x = random_matrix(c.x_rows, c.k, dt, 4.0f);
      auto ids = random_ids(c.n, c.x_rows);
      DeviceBuffer d_x = to_device(x), d_ids = to_device(ids), d_b1 = to_device(b1), d_b3 = to_device(b3);
      PoisonedOutput h(c.n * c.m);
      LaunchOptions opt;
      opt.backend = backend;
      opt.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
      opt.bias[0] = static_cast<const float*>(d_b1.data());
      opt.bias[1] = static_cast<const float*>(d_b3.data());
      gated_up(runtime(), w1.device, w3.device, d_x.data(), c.x_rows, static_cast<const int32_t*>(d_ids.data()), c.n,
               h.data(), opt);
      Device::get().synchronize();
      EpilogueInputs in;
      in.bias.assign(b1.begin(), b1.end());
      in.up_bias.assign(b3.begin(), b3.end());
      const DenseF64 ref =
          reference_ssmm(w1.decoded, to_f64(x.data(), c.x_rows, c.k, dt), ids, Epilogue::ClampedSwiglu, &w3.decoded, in);
      const std::vector<uint16_t> got = h.read();
      Comparison cmp = compare(got, dt, ref);
      EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
      EXPECT_LE(cmp.rel_error, tolerance(dt));
      // The clamp must be exercised: some pre-activation gate above 7 or up beyond +-7.
      const DenseF64 xf = to_f64(x.data(), c.x_rows, c.k, dt);
      EpilogueInputs g_in, u_in;
      g_in.bias = in.bias;
      u_in.bias = in.up_bias;
      const DenseF64 g = reference_ssmm(w1.decoded, xf, ids, Epilogue::Bias, nullptr, g_in);
      const DenseF64 u = reference_ssmm(w3.decoded, xf, ids, Epilogue::Bias, nullptr, u_in);
      int clamped = 0;
      for (size_t i = 0; i < g.data.size(); ++i) clamped += g.data[i] > 7.0 || std::abs(u.data[i]) > 7.0;
      EXPECT_GT(clamped, 0) << "no value reached the clamp: the test would not see it";

      // Down: z = p * (h . W2^T + b2), with h the kernel's own output.
      const Case d{dt, {128, 1, 2}, 384, 576, 70, 70, Epilogue::Bias, std::nullopt, backend};
      Expert w2 = make_expert(d);
      std::vector<float> b2(384);
      for (auto& v : b2) v = nd(rng());
      auto p = random_probs(d.n);
      DeviceBuffer d_h = to_device(got), d_p = to_device(p), d_b2 = to_device(b2);
      PoisonedOutput z(d.n * d.m);
      LaunchOptions dopt;
      dopt.backend = backend;
      dopt.bias[0] = static_cast<const float*>(d_b2.data());
      down_scaled(runtime(), w2.device, d_h.data(), d.n, static_cast<const float*>(d_p.data()), z.data(), dopt);
      Device::get().synchronize();
      std::vector<int32_t> iota(size_t(d.n));
      for (int64_t i = 0; i < d.n; ++i) iota[size_t(i)] = int32_t(i);
      EpilogueInputs din;
      din.bias.assign(b2.begin(), b2.end());
      DenseF64 dref = reference_ssmm(w2.decoded, to_f64(got.data(), d.n, d.k, dt), iota, Epilogue::Bias, nullptr, din);
      for (int64_t i = 0; i < d.n; ++i)
        for (int64_t r = 0; r < d.m; ++r) dref.data[size_t(i * d.m + r)] *= p[size_t(i)];
      cmp = compare(z.read(), dt, dref);
      EXPECT_EQ(cmp.non_finite, 0) << cmp.first_non_finite;
      EXPECT_LE(cmp.rel_error, tolerance(dt));
    }
  // Biases the chosen epilogue would drop, or the clamped SwiGLU without them, are refused.
  const Case c{DType::bf16, {128, 1, 2}, 128, 128, 4, 4, Epilogue::GatedSilu, std::nullopt};
  Expert w1 = make_expert(c), w3 = make_expert(c);
  DeviceBuffer x(4 * 128 * 2), y(4 * 128 * 2), b(128 * 4);
  LaunchOptions opt;
  opt.bias[0] = opt.bias[1] = static_cast<const float*>(b.data());
  EXPECT_THROW(gated_up(runtime(), w1.device, w3.device, x.data(), 4, nullptr, 4, y.data(), opt), Error);
  opt = {};
  opt.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
  EXPECT_THROW(gated_up(runtime(), w1.device, w3.device, x.data(), 4, nullptr, 4, y.data(), opt), Error);
}

}  // namespace
}  // namespace samoyeds::test
