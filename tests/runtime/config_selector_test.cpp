// The config selector over a real record store: tuned bucket, nearest
// bucket, heuristic; foreign and stale records; gathered choices.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "cache/record_store.hpp"
#include "samoyeds/config_selector.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

using test::fresh_db;
using test::h200;
using test::record;
KernelSpec spec() { return test::mixtral_gated_up(); }
using test::wg;

// sel's choice for spec() at `tokens`, with what it logged (its warnings).
ConfigChoice choose_logging(ConfigSelector& sel, int64_t tokens, std::string* log) {
  ::testing::internal::CaptureStderr();
  const ConfigChoice c = sel.choose(spec(), tokens);
  *log = ::testing::internal::GetCapturedStderr();
  return c;
}

const TileConfig kA{64, 32, 64, 4, 1, 4}, kB{64, 64, 64, 2, 2, 3}, kC{64, 128, 64, 2, 4, 3};

TEST(ConfigSelector, ExactBucketThenNearestWithinAnOctaveThenHeuristic) {
  SqliteStore db(fresh_db("selector_selector"));
  RecordStore rs(db);
  rs.put(record(64, kA, 1.0));
  rs.put(record(1024, kC, 1.0));
  ConfigSelector sel(&rs, h200());
  auto c = sel.choose(spec(), 50);  // bucket 64
  EXPECT_EQ(c.source, ConfigChoice::Source::Tuned);
  EXPECT_EQ(c.config, kA);
  c = sel.choose(spec(), 100);  // bucket 128: nearest tuned is 64
  EXPECT_EQ(c.source, ConfigChoice::Source::NearestBucket);
  EXPECT_EQ(c.bucket, 64);
  EXPECT_EQ(c.config, kA);
  c = sel.choose(spec(), 300);  // bucket 512: nearest is 1024
  EXPECT_EQ(c.config, kC);
  rs.put(record(4096, kA, 1.0));
  ConfigSelector sel2(&rs, h200());  // a fresh memo
  c = sel2.choose(spec(), 2048);  // bucket 2048: 1024 and 4096 are both 1 octave away -> the larger
  EXPECT_EQ(c.bucket, 4096);
  EXPECT_EQ(c.config, kA);
  c = sel2.choose(spec(), 256);  // bucket 256: 64 and 1024 are 2 octaves away, too far -> the heuristic
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
  c = sel2.choose(spec(), 8);  // 3 octaves below 64
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
  KernelSpec other = spec();
  other.m = 1408;
  c = sel.choose(other, 64);
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
}

TEST(ConfigSelector, RecordsOfAnotherDeviceOrVersionAreNeverUsed) {
  SqliteStore db(fresh_db("selector_foreign"));
  RecordStore rs(db);
  DeviceFingerprint h100 = h200();
  h100.gpu_name = "NVIDIA H100";
  h100.sm_count = 114;
  rs.put(record(64, kC, 1.0, h100));
  DeviceFingerprint old_lib = h200();
  old_lib.library_version = "0.0.1";
  rs.put(record(64, kC, 1.0, old_lib));
  ConfigSelector sel(&rs, h200());
  const ConfigChoice c = sel.choose(spec(), 64);
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
}

// A shipped cache may name a config a later library no longer runs (the
// search space shrank, e.g. mma_sp's register rule in sp_tc.v2): the launch
// falls back, and says which record it ignored and why.
TEST(ConfigSelector, RecordsOfConfigsTheLibraryNoLongerRunsAreSkippedWithAWarning) {
  SqliteStore db(fresh_db("selector_invalid"));
  RecordStore rs(db);
  TuningRecord r = record(64, TileConfig{64, 64, 64, 3, 1, 4}, 1.0);  // 64 rows over 3 warps: never valid
  r.backend = Backend::MmaSp;
  rs.put(r);
  ConfigSelector sel(&rs, h200());
  std::string err;
  const ConfigChoice c = choose_logging(sel, 64, &err);
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
  EXPECT_NE(err.find("ignoring 1 tuning record(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("bm64_bn64_bk64_w3x1_s4"), std::string::npos) << err;
  EXPECT_NE(err.find("warp tile rows must be a multiple of 16"), std::string::npos) << err;
}

TEST(ConfigSelector, PinnedAnswersDoNotChangeWhenRecordsArriveLater) {
  SqliteStore db(fresh_db("selector_pinned"));
  RecordStore rs(db);
  rs.put(record(64, kA, 1.0));
  ConfigSelector sel(&rs, h200());
  EXPECT_EQ(sel.choose(spec(), 64).config, kA);
  rs.put(record(64, kC, 0.5));  // another process tunes meanwhile
  EXPECT_EQ(sel.choose(spec(), 64).config, kA);
  ConfigSelector fresh_process(&rs, h200());
  EXPECT_EQ(fresh_process.choose(spec(), 64).config, kC);
}

TEST(ConfigSelector, GroupedLaunchesUseTheirGroupedRecordAsTuned) {
  SqliteStore db(fresh_db("selector_grouped"));
  RecordStore rs(db);
  KernelSpec g = spec();
  g.arch = "sm_90a";
  g.m = 1408;
  g.k = 2048;
  g.experts = 64;
  g.grouped = true;
  // Tuned on the grouped launch of 64 experts at 8 tokens (schedule included).
  TuningRecord r = record(8, wg("bm64_bn32_bk128_w4x1_s6_p_tf"), 0.05);
  r.key = TuningKey::of(h200(), g, 8);
  r.backend = Backend::WgmmaSp;
  rs.put(r);
  ConfigSelector sel(&rs, h200());
  const ConfigChoice c = sel.choose(g, 8);
  EXPECT_EQ(c.source, ConfigChoice::Source::Tuned);
  EXPECT_EQ(c.backend, Backend::WgmmaSp);
  EXPECT_EQ(c.config.to_string(), "bm64_bn32_bk128_w4x1_s6_p_tf");
  // One expert's launch of the same shape (experts = 1) is another kernel: the heuristic.
  KernelSpec one = g;
  one.grouped = false;
  one.experts = 1;
  EXPECT_EQ(sel.choose(one, 8).source, ConfigChoice::Source::Heuristic);
}

// Only a record verified at its bucket may run there: an older cache's
// records are skipped with one warning that says to tune again.
TEST(ConfigSelector, RecordsNotVerifiedAtTheirBucketAreSkippedWithAWarning) {
  SqliteStore db(fresh_db("selector_unverified"));
  RecordStore rs(db);
  rs.put(test::unverified(record(64, kC, 1.0)));
  ConfigSelector sel(&rs, h200());
  std::string err;
  const ConfigChoice c = choose_logging(sel, 64, &err);
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
  EXPECT_NE(err.find("ignoring 1 tuning record(s)"), std::string::npos) << err;
  EXPECT_NE(err.find("not verified at their bucket"), std::string::npos) << err;
  rs.put(record(64, kC, 1.0));
  EXPECT_EQ(ConfigSelector(&rs, h200()).choose(spec(), 64).source, ConfigChoice::Source::Tuned);
}

// A choice that reads the token rows in order (tokens by TMA) carries what a
// call that gathers them runs: the record's gathered config, verified and
// timed by the tuner; the gathered default where the record has none, and
// for the heuristic.
TEST(ConfigSelector, ChoicesThatReadRowsInOrderCarryWhatAGatheringCallRuns) {
  SqliteStore db(fresh_db("selector_gathered"));
  RecordStore rs(db);
  KernelSpec one = spec();
  one.op = Op::Ssmm;
  one.epilogue = Epilogue::None;
  one.arch = "sm_90a";
  one.experts = 1;
  const auto tuned = [&](int64_t bucket, const char* cfg, const char* gathered) {
    TuningRecord r = record(bucket, wg(cfg), 0.1);
    r.key = TuningKey::of(h200(), one, bucket);
    r.backend = Backend::WgmmaSp;
    if (gathered) r.gathered = wg(gathered);
    rs.put(r);
  };
  tuned(1024, "bm128_bn128_bk128_w8x1_s4_p_g16_xt", "bm128_bn64_bk128_w8x1_s4_p_g16");
  tuned(4096, "bm192_bn128_bk128_w12x1_s3_p_g16_xt", nullptr);
  tuned(8, "bm64_bn32_bk128_w4x1_s8_tf", nullptr);
  ConfigSelector sel(&rs, h200());
  const auto& w = static_cast<const WgmmaSpFamily&>(kernel_family(Backend::WgmmaSp));
  ConfigChoice c = sel.choose(one, 1024);
  EXPECT_EQ(c.gathered.to_string(), "bm128_bn64_bk128_w8x1_s4_p_g16");  // the record's
  EXPECT_TRUE(c.gathered_tuned);
  c = sel.choose(one, 4096);
  EXPECT_EQ(c.gathered, w.gathered_default_config(one, 4096, 132));  // none recorded: the untuned default
  EXPECT_FALSE(c.gathered_tuned);
  EXPECT_FALSE(WgmmaSpConfig::of(c.gathered).tokens_tma);
  EXPECT_EQ(sel.choose(one, 8).gathered, sel.choose(one, 8).config);  // it gathers already
  c = sel.choose(one, 64);  // no record within an octave: the heuristic, 64 x 64 tiles by TMA
  EXPECT_EQ(c.source, ConfigChoice::Source::Heuristic);
  EXPECT_TRUE(WgmmaSpConfig::of(c.config).tokens_tma);
  EXPECT_EQ(c.gathered.to_string(), "bm128_bn32_bk128_w8x1_s8_tf");
}

TEST(TokenBuckets, RoundUpToTheGridAndClampAtTheTop) {
  const auto b = default_token_buckets();
  EXPECT_EQ(b.front(), 1);
  EXPECT_EQ(b.back(), 8192);
  EXPECT_EQ(token_bucket(1, b), 1);
  EXPECT_EQ(token_bucket(3, b), 4);
  EXPECT_EQ(token_bucket(1024, b), 1024);
  EXPECT_EQ(token_bucket(100000, b), 8192);
}

}  // namespace
}  // namespace samoyeds
