// wgmma_sp's family on the CPU: its schedules and what the kernel can do
// with them, its defaults against the measured winners, the TMA bytes and
// stores its source asserts.
#include <gtest/gtest.h>

#include <algorithm>

#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "format/device_layout.hpp"
#include "samoyeds/error.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

using test::wg;

KernelSpec spec() { return test::mixtral_ssmm(); }

TEST(WgmmaSpFamily, StreamKSplitsOnlyTheLastRound) {
  const auto is = [](StreamKSplit s, int full, int rest, int parts) {
    return s.full == full && s.rest == rest && s.parts == parts;
  };
  EXPECT_TRUE(is(stream_k_split(448, 132, 32), 396, 52, 2));   // Mixtral up n = 1024, 128-row tiles
  EXPECT_TRUE(is(stream_k_split(1216, 132, 32), 1188, 28, 4));  // n = 4096, 192-row tiles: at most four
  EXPECT_TRUE(is(stream_k_split(144, 132, 2), 132, 12, 2));     // no more shares than k-segments
  EXPECT_TRUE(is(stream_k_split(264, 132, 32), 264, 0, 1));     // whole rounds: nothing to split
  EXPECT_TRUE(is(stream_k_split(100, 132, 32), 100, 0, 1));     // no room for two shares each
  EXPECT_TRUE(is(stream_k_split(8, 132, 1), 8, 0, 1));          // one segment
  EXPECT_TRUE(is(stream_k_split(2, 132, 4), 0, 2, 4));          // fewer tiles than blocks

  KernelSpec s = spec();
  s.backend = Backend::WgmmaSp;
  s.arch = "sm_90a";
  const auto& family = kernel_family(Backend::WgmmaSp);
  WgmmaSpConfig c = wg("bm128_bn128_bk128_w8x1_s4_p_xt_sk");
  EXPECT_EQ(family.invalid_reason(s, c), std::nullopt);
  c.persistent = false;  // only persistent blocks have a last round to split
  EXPECT_NE(family.invalid_reason(s, c), std::nullopt);
  c.persistent = true;
  c.multicast = 2;
  EXPECT_NE(family.invalid_reason(s, c), std::nullopt);
  c.multicast = 1;
  KernelSpec g = s;
  g.grouped = true;
  g.experts = 8;
  EXPECT_NE(family.invalid_reason(g, c), std::nullopt);
  // The launch's workspace: a partial tile for every share but the first, a flag per consumer warp.
  s.m = 4096;
  s.k = 1000;  // 8 segments of 128
  const auto w = WgmmaSpFamily::stream_k_workspace(s, c, 1152, 132);  // 16 x 9 tiles
  EXPECT_TRUE(is(w.split, 132, 12, 4));
  EXPECT_EQ(w.partial_floats, int64_t(12) * 3 * 128 * 256);
  EXPECT_EQ(w.flags, 12 * 8);
  EXPECT_TRUE(family.worth_timing(s, c, 1152, 132));
  EXPECT_FALSE(family.worth_timing(s, c, 1024, 132));  // 128 tiles: one round, no room for two shares each
  // Among the candidates, next to the same schedule without it.
  const auto space = family.search_space(s);
  EXPECT_NE(std::find(space.begin(), space.end(), c), space.end());
}

TEST(WgmmaSpFamily, SchedulesAreWgmmaSpOnlyAndCheckedForWhatTheKernelCanDo) {
  KernelSpec s = spec();
  WgmmaSpConfig split{64, 32, 64, 2, 2, 3};
  split.split_k = 2;
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(s, split), std::nullopt);
  s.backend = Backend::WgmmaSp;
  s.arch = "sm_90a";
  WgmmaSpConfig w{128, 64, 128, 8, 1, 3};
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  w.split_k = 3;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  w.split_k = 2;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  w.persistent = true;  // the split-k epilogue stages through the stages' shared memory
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  w.split_k = 1;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  s.sparsity = {64, 2, 4};  // N > 1: several threads add into one output row, through shared memory
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, w), std::nullopt);
  // A split kernel is a cluster; the others are not.
  WgmmaSpConfig k4{64, 32, 128, 4, 1, 3};
  k4.split_k = 4;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).generate(s, k4).source.find("__cluster_dims__(4, 1, 1)"),
            std::string::npos);
  k4.split_k = 1;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).generate(s, k4).source.find("__cluster_dims__"), std::string::npos);
  // Multicast: a pair of blocks, never with split-k, never on mma_sp.
  WgmmaSpConfig m2{128, 64, 128, 8, 1, 3};
  m2.multicast = 2;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, m2), std::nullopt);
  EXPECT_NE(kernel_family(Backend::WgmmaSp).generate(s, m2).source.find("__cluster_dims__(2, 1, 1)"),
            std::string::npos);
  m2.split_k = 2;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, m2), std::nullopt);
  m2.split_k = 1;
  m2.multicast = 4;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, m2), std::nullopt);
  m2.multicast = 2;
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(spec(), m2), std::nullopt);
  // 192-row tiles (three consumer warpgroups): token tiles by TMA, N = 1, no split-k, no multicast, one operand
  // per warpgroup, and experts of more than 128 condensed rows.
  WgmmaSpConfig t192{192, 128, 128, 12, 1, 3};
  s.sparsity = {128, 1, 2};
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, t192), std::nullopt);  // gathering
  t192.tokens_tma = true;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, t192), std::nullopt);
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).generate(s, t192).threads, 512);
  for (auto change : {+[](WgmmaSpConfig& c) { c.split_k = 2; }, +[](WgmmaSpConfig& c) { c.multicast = 2; },
                      +[](WgmmaSpConfig& c) { c.warps_m = 8; }}) {
    WgmmaSpConfig bad = t192;
    change(bad);
    EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, bad), std::nullopt) << bad.to_string();
  }
  KernelSpec small = s;
  small.m = 256;  // 128 condensed rows: one 128-row tile holds them
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(small, t192), std::nullopt);
  KernelSpec gated192 = s;
  gated192.op = Op::GatedUp;
  gated192.epilogue = Epilogue::GatedSilu;  // 256 accumulators a thread
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(gated192, t192), std::nullopt);
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(spec(), TileConfig{192, 64, 64, 4, 2, 3}), std::nullopt);
  // Token tiles by TMA: every op (the call decides whether its rows are in order), only on wgmma_sp.
  WgmmaSpConfig xt{128, 64, 128, 8, 1, 3};
  xt.tokens_tma = true;
  s.sparsity = {128, 1, 2};
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, xt), std::nullopt);
  KernelSpec down = s;
  down.op = Op::Down;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(down, xt), std::nullopt);
  WgmmaSpConfig mma_xt{64, 32, 64, 2, 2, 3};
  mma_xt.tokens_tma = true;
  KernelSpec mma_down = spec();
  mma_down.op = Op::Down;
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(mma_down, mma_xt), std::nullopt);
  // The tuner times split-k only where tiles leave SMs idle, persistent
  // blocks only where tiles outnumber SMs.
  s.sparsity = {128, 1, 2};
  s.m = 1408;
  s.k = 2048;
  k4.split_k = 4;
  EXPECT_TRUE(kernel_family(Backend::WgmmaSp).worth_timing(s, k4, 64, 132));     // 11 x 2 tiles
  EXPECT_FALSE(kernel_family(Backend::WgmmaSp).worth_timing(s, k4, 4096, 132));  // 11 x 128 tiles
  WgmmaSpConfig p{128, 64, 128, 8, 1, 3};
  p.persistent = true;
  EXPECT_FALSE(kernel_family(Backend::WgmmaSp).worth_timing(s, p, 64, 132));
  EXPECT_TRUE(kernel_family(Backend::WgmmaSp).worth_timing(s, p, 4096, 132));
  // Row groups: row-first only, of 4, 8 or 16 row tiles, timed only where
  // there are more row tiles than one group (otherwise the order is row-first's).
  WgmmaSpConfig g{128, 64, 128, 8, 1, 3};
  g.persistent = true;
  g.row_group = 16;
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(s, g), std::nullopt);
  EXPECT_FALSE(kernel_family(Backend::WgmmaSp).worth_timing(s, g, 4096, 132));  // 6 row tiles
  KernelSpec wide = s;
  wide.m = 14336;  // 56 row tiles
  EXPECT_TRUE(kernel_family(Backend::WgmmaSp).worth_timing(wide, g, 4096, 132));
  g.row_group = 12;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, g), std::nullopt);
  g.row_group = 8;
  g.tokens_first = true;
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, g), std::nullopt);
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(spec(), wg("bm64_bn32_bk64_w2x2_s3_g8")),
            std::nullopt);
  // A warpgroup per operand: the gated op's, at 64-row tiles, wgmma_sp only;
  // it halves the accumulators per thread (a 128-token tile fits) and adds
  // a consumer warpgroup and, for the epilogue from registers, the exchange.
  KernelSpec gated = s;
  gated.op = Op::GatedUp;
  gated.epilogue = Epilogue::GatedSilu;
  const WgmmaSpConfig so = wg("bm64_bn128_bk128_w4x1_s3_so");
  EXPECT_EQ(kernel_family(Backend::WgmmaSp).invalid_reason(gated, so), std::nullopt);
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(gated, wg("bm64_bn128_bk128_w4x1_s3")),
            std::nullopt);  // 256 accumulators per thread
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(s, so), std::nullopt);  // one operand
  EXPECT_NE(kernel_family(Backend::WgmmaSp).invalid_reason(gated, wg("bm128_bn64_bk128_w8x1_s3_so")),
            std::nullopt);
  EXPECT_NE(kernel_family(Backend::MmaSp).invalid_reason(spec(), wg("bm64_bn32_bk64_w2x2_s3_so")),
            std::nullopt);
  const auto& wf = kernel_family(Backend::WgmmaSp);
  const GeneratedKernel split_kernel = wf.generate(gated, so);
  EXPECT_EQ(split_kernel.threads, 384);
  // Against the same tile as one 64-token warpgroup: 64 tokens of stages
  // fewer, the exchange (two halves of 128 accumulators and 2 states each,
  // of 128 threads; four mbarriers) more.
  // (Single launches of the narrow tile would add the output boxes of TMA stores: grouped ones have none.)
  KernelSpec gated_grouped = gated;
  gated_grouped.grouped = true;
  gated_grouped.experts = 8;
  EXPECT_EQ(wf.generate(gated_grouped, so).smem_bytes, split_kernel.smem_bytes);
  const GeneratedKernel narrow = wf.generate(gated_grouped, wg("bm64_bn64_bk128_w4x1_s3"));
  EXPECT_EQ(narrow.threads, 256);
  EXPECT_EQ(split_kernel.smem_bytes - narrow.smem_bytes, 3 * 64 * 128 * 2 + 64 * 4 + 2 * (64 + 2) * 128 * 4 + 32);
  KernelSpec gated_n2 = gated;
  gated_n2.sparsity = {128, 2, 4};  // N = 2: the epilogue goes through the f32 tile in the stages, no exchange
  WgmmaSpConfig so_n2 = so;
  so_n2.block_n = 32;  // 4 slots: one warpgroup holds both operands only at 32 tokens
  WgmmaSpConfig one_n2 = so_n2;
  one_n2.split_operands = false;
  EXPECT_EQ(wf.generate(gated_n2, so_n2).smem_bytes, wf.generate(gated_n2, one_n2).smem_bytes);
  const auto space = kernel_family(Backend::WgmmaSp).search_space(gated);
  EXPECT_TRUE(std::any_of(space.begin(), space.end(), [](const TileConfig& c) { return WgmmaSpConfig::of(c).split_operands; }));
  // A multicast pair needs a second token tile to share its weights with.
  m2.block_n = 64;
  EXPECT_FALSE(kernel_family(Backend::WgmmaSp).worth_timing(s, m2, 64, 132));
  EXPECT_TRUE(kernel_family(Backend::WgmmaSp).worth_timing(s, m2, 65, 132));
  // and counts its blocks in pairs: 704/128 = 6 row tiles x 2 pairs x 2
  EXPECT_EQ(WgmmaSpFamily::tile_count(s, m2, 129), 24);
  // The schedule follows the launch's tile count: one expert at 8 tokens
  // (11 tiles) splits k; the grouped launch of 64 experts (704 tiles) runs
  // persistent blocks in token-first order.
  KernelSpec grouped = s;
  grouped.grouped = true;
  grouped.experts = 64;
  const WgmmaSpConfig one = WgmmaSpConfig::of(kernel_family(Backend::WgmmaSp).default_config(s, 8, 132));
  const WgmmaSpConfig all = WgmmaSpConfig::of(kernel_family(Backend::WgmmaSp).default_config(grouped, 8, 132));
  EXPECT_GT(one.split_k, 1) << one.to_string();
  EXPECT_EQ(all.split_k, 1) << all.to_string();
  EXPECT_TRUE(all.persistent && all.tokens_first) << all.to_string();
}

TEST(WgmmaSpFamily, GatheredDefaultsAreValidAndGather) {
  const auto& w = static_cast<const WgmmaSpFamily&>(kernel_family(Backend::WgmmaSp));
  const int64_t shapes[][2] = {{14336, 4096}, {16384, 6144}, {12288, 3072}, {8192, 2048}, {5760, 2304},
                               {1408, 2048},  {4096, 14336}, {2048, 1408},  {20000, 256}};
  int differ = 0;
  for (const auto& sh : shapes)
    for (Op op : {Op::Ssmm, Op::GatedUp, Op::Down})
      for (bool grouped : {false, true})
        for (int64_t n : {1, 8, 48, 64, 256, 1024, 4096, 16384}) {
          KernelSpec s = spec();
          s.backend = Backend::WgmmaSp;
          s.arch = "sm_90a";
          s.op = op;
          s.epilogue = op == Op::GatedUp ? Epilogue::GatedSilu : Epilogue::None;
          s.m = sh[0];
          s.k = sh[1];
          s.grouped = grouped;
          s.experts = grouped ? 8 : 1;
          const WgmmaSpConfig g = WgmmaSpConfig::of(w.gathered_default_config(s, n, kReferenceSmCount));
          SCOPED_TRACE(s.to_string() + " n " + std::to_string(n) + ": " + g.to_string());
          EXPECT_FALSE(g.tokens_tma);
          EXPECT_EQ(w.invalid_reason(s, g), std::nullopt);
          if (!(g == w.default_config(s, n, kReferenceSmCount))) ++differ;
        }
  EXPECT_GT(differ, 0);  // the in-order defaults do read by TMA somewhere
}

TEST(WgmmaSpFamily, DefaultsFollowTheMeasuredWinners) {
  auto expert = [](int64_t m, int64_t k) {
    KernelSpec s = spec();
    s.backend = Backend::WgmmaSp;
    s.arch = "sm_90a";
    s.m = m;
    s.k = k;
    return s;
  };
  const auto& w = static_cast<const WgmmaSpFamily&>(kernel_family(Backend::WgmmaSp));
  const KernelSpec mixtral = expert(14336, 4096), deepseek = expert(1408, 2048), openmoe = expert(12288, 3072);
  const int sms = kReferenceSmCount;
  // Each default is the H200 winner of its cell or within a few % of it ("the winner", "+1%"), in the sweeps that
  // set its rule: docs/perf-log.md, 2026-11-29 (3092a23, 76426db, 474575d) and 2026-11-30 (47f8cc2).
  // 33-64 tokens in order take 64 x 64 tiles by TMA where their row tiles make 0.7 of a wave; a call that gathers
  // keeps 128 x 32 (the gathered 64 x 64 tile is slower); OpenMoE-8B's 64 row tiles keep the narrower tiles.
  EXPECT_EQ(w.default_config(mixtral, 64, sms).to_string(), "bm64_bn64_bk128_w4x1_s8_xt");
  EXPECT_EQ(w.default_config(mixtral, 48, sms).to_string(), "bm64_bn64_bk128_w4x1_s8_xt");
  EXPECT_EQ(w.gathered_default_config(mixtral, 64, sms).to_string(), "bm128_bn32_bk128_w8x1_s8_tf");  // the winner
  EXPECT_EQ(w.default_config(mixtral, 32, sms).to_string(), "bm64_bn32_bk128_w4x1_s8_tf");  // not below 33
  EXPECT_EQ(w.default_config(expert(8192, 2048), 64, sms).to_string(), "bm64_bn32_bk128_w4x1_s8_tf");
  EXPECT_EQ(w.default_config(mixtral, 256, sms).to_string(), "bm128_bn128_bk128_w8x1_s4_tf_xt");   // the winner
  // Stream-K tails where the last round is at most half full (7627402; 448 tiles on 132 SMs leave 52, in two
  // shares each; 1216 192-row tiles leave 28, in four): docs/perf-log.md, 2026-11-30, 38a20c2..508e639.
  EXPECT_EQ(w.default_config(mixtral, 1024, sms).to_string(), "bm128_bn128_bk128_w8x1_s4_p_g16_xt_sk");
  // 192-row tiles where they take fewer waves at 1.35x a 128-row tile's time (312452a, the winners of the
  // 2026-11-30 quick pass), also for DeepSeek n = 4096 (not in that pass; 1 wave against 2).
  EXPECT_EQ(w.default_config(mixtral, 4096, sms).to_string(), "bm192_bn128_bk128_w12x1_s3_p_g16_xt_sk");
  EXPECT_EQ(w.default_config(openmoe, 64, sms).to_string(), "bm64_bn64_bk128_w4x1_s8_xt");
  EXPECT_EQ(w.gathered_default_config(openmoe, 64, sms).to_string(), "bm128_bn32_bk128_w8x1_s8_tf");  // the winner
  EXPECT_EQ(w.default_config(openmoe, 256, sms).to_string(), "bm128_bn128_bk128_w8x1_s4_tf_xt");   // +1%
  // The gated projection's tails were not timed: DeepSeek's shared experts (2816 rows, 704 tiles of 128 x 64 at
  // n = 4096, a last round of 44) keep whole tiles.
  KernelSpec shared_gated = expert(2816, 2048);
  shared_gated.op = Op::GatedUp;
  shared_gated.epilogue = Epilogue::GatedSilu;
  EXPECT_EQ(w.default_config(shared_gated, 4096, sms).to_string(), "bm128_bn64_bk128_w8x1_s4_p_xt");
  // 256 tiles on 132 SMs: a last round of 124, too full to split.
  EXPECT_EQ(w.default_config(openmoe, 1024, sms).to_string(), "bm192_bn128_bk128_w12x1_s3_p_g16_xt");  // winner
  EXPECT_EQ(w.default_config(openmoe, 4096, sms).to_string(), "bm192_bn128_bk128_w12x1_s3_p_g16_xt");  // winner
  EXPECT_EQ(w.default_config(deepseek, 64, sms).to_string(), "bm64_bn32_bk128_w4x1_s8_k4");        // +3%
  EXPECT_EQ(w.default_config(deepseek, 256, sms).to_string(), "bm64_bn32_bk128_w4x1_s8_tf");       // the winner
  EXPECT_EQ(w.default_config(deepseek, 1024, sms).to_string(), "bm128_bn64_bk128_w8x1_s6_tf_xt");  // the winner
  EXPECT_EQ(w.default_config(deepseek, 4096, sms).to_string(), "bm192_bn128_bk128_w12x1_s3_tf_xt");
  // The down projection takes its tokens by TMA where tiles are 64 or 128 wide (not at 32).
  KernelSpec mixtral_down = expert(4096, 14336);
  mixtral_down.op = Op::Down;
  EXPECT_EQ(w.default_config(mixtral_down, 4096, sms).to_string(), "bm128_bn128_bk128_w8x1_s4_p_xt");  // +1%
  // The small expert's down projection (11 k-tiles) keeps 3 stages; grouped launches keep the MoE layer's schedule.
  KernelSpec deepseek_down = expert(2048, 1408);
  deepseek_down.op = Op::Down;
  EXPECT_EQ(w.default_config(deepseek_down, 4096, sms).to_string(), "bm128_bn128_bk128_w8x1_s3_p_xt");  // the winner
  KernelSpec grouped_down = mixtral_down;
  grouped_down.grouped = true;
  grouped_down.experts = 8;
  // ... with 192-row tiles where they take fewer waves (Mixtral's and OpenMoE-34B's tuning winners at bucket 4096,
  // 2026-11-30, e09fcce), not for DeepSeek's 1024 condensed rows (6 such tiles against 8).
  EXPECT_EQ(w.default_config(grouped_down, 4096, sms).to_string(), "bm192_bn128_bk128_w12x1_s3_p_tf_xt");
  KernelSpec grouped_small_down = deepseek_down;
  grouped_small_down.grouped = true;
  grouped_small_down.experts = 64;
  EXPECT_EQ(w.default_config(grouped_small_down, 4096, sms).block_m, 128);
  // The grouped gated up projection: a warpgroup per operand from 4096 tokens (the winner at bucket 4096; it lost
  // by 3% at 1024), in row groups where there are more than 16 row tiles (Mixtral's 112); experts under 4096 rows
  // gather their tokens instead of copying them into list order (DeepSeek's 1408: the winner at bucket 4096).
  KernelSpec grouped_up = mixtral;
  grouped_up.op = Op::GatedUp;
  grouped_up.epilogue = Epilogue::GatedSilu;
  grouped_up.grouped = true;
  grouped_up.experts = 8;
  EXPECT_EQ(w.default_config(grouped_up, 4096, sms).to_string(), "bm64_bn128_bk128_w4x1_s3_p_g16_so_xt");
  EXPECT_FALSE(WgmmaSpConfig::of(w.default_config(grouped_up, 1024, sms)).split_operands);
  KernelSpec small_up = grouped_up;
  small_up.m = 1408;
  small_up.k = 2048;
  small_up.experts = 64;
  EXPECT_EQ(w.default_config(small_up, 4096, sms).to_string(), "bm128_bn64_bk128_w8x1_s4_p_tf");
  EXPECT_FALSE(WgmmaSpConfig::of(w.default_config(small_up, 256, sms)).tokens_tma);
  EXPECT_TRUE(WgmmaSpConfig::of(w.default_config(grouped_up, 1024, sms)).tokens_tma);
  KernelSpec two_of_four = grouped_up;
  two_of_four.sparsity = {128, 2, 4};  // N = 2: not persistent, so not this tile
  EXPECT_FALSE(WgmmaSpConfig::of(w.default_config(two_of_four, 4096, sms)).split_operands);
  EXPECT_FALSE(WgmmaSpConfig::of(w.default_config(mixtral_down, 64, sms)).tokens_tma);
  // Fewer SMs: the same 22 tiles only split in two.
  EXPECT_EQ(w.default_config(deepseek, 64, 60).to_string(), "bm64_bn32_bk128_w4x1_s8_k2");
  for (int64_t n : {1, 7, 16, 64, 300, 4096})
    for (const KernelSpec& s : {mixtral, deepseek})
      EXPECT_FALSE(w.invalid_reason(s, w.default_config(s, n, sms))) << n;
  EXPECT_EQ(default_backend(mixtral), Backend::WgmmaSp);
  KernelSpec ampere = mixtral;
  ampere.arch = "sm_80";
  EXPECT_EQ(default_backend(ampere), Backend::MmaSp);
}

// The producer's expect_tx and the host's TMA boxes must agree or the
// consumers wait forever: the generated source asserts it at compile time.
TEST(WgmmaSpFamily, SourceAssertsTheTmaBytesOfTheHostBoxes) {
  KernelSpec s = spec();
  s.backend = Backend::WgmmaSp;
  s.op = Op::GatedUp;
  s.epilogue = Epilogue::GatedSilu;
  s.sparsity = {64, 1, 2};
  const WgmmaSpConfig c{128, 64, 128, 8, 1, 3};
  const auto g = kernel_family(Backend::WgmmaSp).generate(s, c);
  // Per operand: values 128 x 64 x 2 B, metadata 8 x 64 x 4 B, selectors 2 segments x 128 B; two operands.
  EXPECT_NE(g.source.find("static_assert(Kernel::kTxBytes == " + std::to_string(2 * (16384 + 2048 + 256))),
            std::string::npos)
      << g.source;
  EXPECT_NE(g.source.find("const __grid_constant__ samoyeds::TmaWeightMaps maps"), std::string::npos) << g.source;
  // Token tiles by TMA (down projection) add the token boxes: 2 columns of 64 tokens x 128 bytes.
  KernelSpec d = spec();
  d.backend = Backend::WgmmaSp;
  d.op = Op::Down;
  d.sparsity = {64, 1, 2};
  WgmmaSpConfig x = c;
  x.tokens_tma = true;
  EXPECT_NE(kernel_family(Backend::WgmmaSp)
                .generate(d, x)
                .source.find("static_assert(Kernel::kTxBytes == " + std::to_string(16384 + 2048 + 256 + 2 * 64 * 128)),
            std::string::npos);
}

// Which kernels store their tiles by TMA: single launches of N = 1 without
// split-k or a warpgroup per operand, and only where two buffers of staging
// boxes fit beside the stages (else from registers, the config staying
// valid); chunks of at most half the tile's tokens, the largest that fit.
// Not a function of m: kernels serve every shape.
TEST(WgmmaSpFamily, StoresTilesByTmaWhereTheBoxesFit) {
  KernelSpec s = spec();
  s.backend = Backend::WgmmaSp;
  s.arch = "sm_90a";
  s.m = 14336;
  s.k = 4096;
  const auto& w = static_cast<const WgmmaSpFamily&>(kernel_family(Backend::WgmmaSp));
  const WgmmaSpConfig t = wg("bm128_bn128_bk128_w8x1_s4_p_g16_xt");
  EXPECT_TRUE(WgmmaSpFamily::tma_store(s, t));
  // Two buffers of 4 boxes of 64 rows by 16 tokens (16 KB) beside 200 KB of stages; 32 tokens would not fit.
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(s, t), 16);
  EXPECT_NE(w.generate(s, t).source.find(", false, 16>"), std::string::npos);  // ..., STREAM_K, OUT_CHUNK
  // Three stages leave room for chunks of 64 (64 KB).
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(s, wg("bm128_bn128_bk128_w8x1_s3_p_xt")), 64);
  // At most half the tile's tokens: a 32-token tile stores in two chunks of 16.
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(s, wg("bm64_bn32_bk128_w4x1_s8_tf")), 16);
  KernelSpec odd = s;  // the same kernel: such a launch stores from registers (SsmmArgs::out_by_tma = 0)
  odd.m = 14332;
  EXPECT_TRUE(WgmmaSpFamily::tma_store(odd, t));
  EXPECT_EQ(w.generate(odd, t).source, w.generate(s, t).source);
  // 192-row tiles: two buffers of 6 boxes by 16 tokens (24 KB).
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(s, wg("bm192_bn128_bk128_w12x1_s3_p_g16_xt")), 16);
  KernelSpec grouped = s;
  grouped.grouped = true;
  grouped.experts = 8;
  EXPECT_FALSE(WgmmaSpFamily::tma_store(grouped, t));
  KernelSpec two_of_four = s;
  two_of_four.sparsity = {128, 2, 4};
  EXPECT_FALSE(WgmmaSpFamily::tma_store(two_of_four, wg("bm128_bn128_bk128_w8x1_s3_xt")));
  EXPECT_FALSE(WgmmaSpFamily::tma_store(s, wg("bm64_bn32_bk128_w4x1_s8_k4")));
  // Two operands at 4 stages of 128 x 64: 212 KB of stages leave room for two buffers of 8 tokens only,
  // and chunks of 8 lost to the epilogue from registers: from registers, the config staying valid.
  KernelSpec gated = s;
  gated.op = Op::GatedUp;
  gated.epilogue = Epilogue::GatedSilu;
  const WgmmaSpConfig full = wg("bm128_bn64_bk128_w8x1_s4_p");
  EXPECT_FALSE(WgmmaSpFamily::tma_store(gated, full));
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(gated, full), 0);
  EXPECT_EQ(w.invalid_reason(gated, full), std::nullopt);
  EXPECT_EQ(WgmmaSpFamily::tma_store_chunk_tokens(gated, wg("bm128_bn64_bk128_w8x1_s3_p")), 32);
}

}  // namespace
}  // namespace samoyeds
