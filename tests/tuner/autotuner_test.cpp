// The tuner's logic with an injected backend: timing is a deterministic
// function of the config, one candidate fails to compile and the fastest one
// computes wrong answers.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "samoyeds/config_selector.hpp"
#include "samoyeds/error.hpp"
#include "test_util/processes.hpp"
#include "tuner/autotuner.hpp"

namespace samoyeds {
namespace {

KernelSpec spec(int64_t m = 4096) {
  KernelSpec s;
  s.op = Op::Ssmm;
  s.dtype = DType::bf16;
  s.m = m;
  s.k = 4096;
  s.sparsity = {128, 1, 2};
  return s;
}

class FakeBackend : public CandidateRunner {
 public:
  explicit FakeBackend(const KernelSpec& s) {
    const auto all = kernel_family(Backend::MmaSp).search_space(s);
    broken = all[0];
    wrong = all[1];
  }
  DeviceFingerprint device() override { return {"Fake GPU", 9, 0, 132, 13000, "13.0", library_version()}; }
  void prepare(const KernelSpec& s, const TileConfig& c) override {
    std::lock_guard<std::mutex> lock(mu);
    prepared.insert(fmt::format("{}/{}", backend_name(s.backend), c.to_string()));
    if (s.backend == Backend::MmaSp && c == broken) throw Error(ErrorCode::CompileError, "NVRTC failed\nlong log");
  }
  bool verify(const KernelSpec& s, const TileConfig& c, int64_t, std::string* why) override {
    if (s.backend == Backend::MmaSp && c == wrong) {
      *why = "relative error 0.4";
      return false;
    }
    return true;
  }
  // Fastest: the wrong config, then large tiles matching the bucket.
  double time_ms(const KernelSpec& s, const TileConfig& c, int64_t tokens) override {
    ++timings;
    if (s.backend == Backend::MmaSp && c == wrong) return 0.001;
    if (s.backend == Backend::WgmmaSp) return wgmma_ms(tokens);
    return 1.0 + std::abs(c.block_n - std::min<int64_t>(tokens, 128)) * 0.01 + (128 - c.block_m) * 0.001 +
           c.stages * 0.0001 + c.block_k * 1e-6 + c.warps_m * 1e-7;
  }
  double baseline_ms(const KernelSpec&, int64_t) override { return 2.0; }
  bool verify_at_bucket(const KernelSpec& s, const TileConfig& c, int64_t tokens, std::string* path,
                        std::string* why) override {
    const std::string name = fmt::format("{}/{}", backend_name(s.backend), c.to_string());
    {
      std::lock_guard<std::mutex> lock(mu);
      checked_at_bucket.push_back(fmt::format("{} at {}", name, tokens));
    }
    *path = fmt::format("fake launch, {} tokens", tokens);
    if (wrong_at_bucket.count(name)) {
      *why = "relative error 0.2";
      return false;
    }
    return verify(s, c, tokens, why);
  }

  // Right on the small check, wrong on the real shape ("backend/config").
  std::set<std::string> wrong_at_bucket;
  std::vector<std::string> checked_at_bucket;

  // wgmma_sp loses by default (as it does on the H200 today); tests may make it win.
  std::function<double(int64_t)> wgmma_ms = [](int64_t) { return 100.0; };
  TileConfig broken, wrong;
  std::mutex mu;
  std::set<std::string> prepared;
  int timings = 0;
};

std::string fresh(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / fmt::format("samoyeds_tune_{}_{}", name, getpid());
  std::filesystem::remove_all(dir);
  return (dir / "samoyeds.sqlite").string();
}

TEST(Autotuner, WinnerIsTheFastestCorrectCandidateAndFailuresAreSkipped) {
  SqliteStore db(fresh("winner"));
  RecordStore rs(db);
  FakeBackend fake(spec());
  TuneOptions opt;
  opt.buckets = {16, 64, 1024};
  opt.jobs = 4;
  std::vector<std::string> lines;
  TuneLog log;
  log.line = [&](const std::string& l) { lines.push_back(l); };
  const TuneReport rep = tune_spec(spec(), fake, &rs, opt, log);
  KernelSpec wg = spec();
  wg.backend = Backend::WgmmaSp;
  EXPECT_EQ(rep.candidates, int(kernel_family(Backend::MmaSp).search_space(spec()).size() +
                                kernel_family(Backend::WgmmaSp).search_space(wg).size()))
      << "both backends compete on sm_90a";
  EXPECT_EQ(int(fake.prepared.size()), rep.candidates) << "every candidate is compiled";
  EXPECT_EQ(rep.compile_failures, 1);
  EXPECT_EQ(rep.wrong_answers, 1);
  ASSERT_EQ(rep.records.size(), 3u);
  for (const auto& r : rep.records) {
    EXPECT_FALSE(r.config == fake.wrong) << "a candidate with wrong output won";
    EXPECT_FALSE(r.config == fake.broken);
    ASSERT_FALSE(r.runner_up_ms.empty());
    EXPECT_LE(r.time_ms, r.runner_up_ms[0]);
    EXPECT_TRUE(std::is_sorted(r.runner_up_ms.begin(), r.runner_up_ms.end()));
    EXPECT_DOUBLE_EQ(r.baseline_ms, 2.0);
    auto stored = rs.get(r.key);
    ASSERT_TRUE(stored);
    EXPECT_EQ(stored->config, r.config);
    EXPECT_EQ(stored->backend, Backend::MmaSp);
    EXPECT_TRUE(stored->verified());
    EXPECT_EQ(stored->verified_tokens, r.key.bucket) << "verified at its own bucket";
    EXPECT_EQ(stored->verified_path, fmt::format("fake launch, {} tokens", r.key.bucket));
  }
  EXPECT_EQ(rep.records[0].config.block_n, 32);  // 16 tokens: narrowest tiles
  EXPECT_EQ(rep.records[2].config.block_n, 128);
  bool mentions_skip = false;
  for (const auto& l : lines) mentions_skip |= l.find("skip mma_sp/" + fake.broken.to_string()) != std::string::npos;
  EXPECT_TRUE(mentions_skip);
}

std::string name_of(const TuningRecord& r) { return fmt::format("{}/{}", backend_name(r.backend), r.config.to_string()); }

// The fastest candidate loses its bucket where its output is wrong on the
// real shape at that bucket, though right on the small check.
TEST(Autotuner, ACandidateWrongAtItsBucketNeverWinsIt) {
  TuneOptions opt;
  opt.buckets = {64, 1024};
  opt.jobs = 2;
  FakeBackend first(spec());
  const TuneReport before = tune_spec(spec(), first, nullptr, opt, {});
  ASSERT_EQ(before.records.size(), 2u);

  SqliteStore db(fresh("wrong_at_bucket"));
  RecordStore rs(db);
  FakeBackend fake(spec());
  fake.wrong_at_bucket.insert(name_of(before.records[1]));  // the 1024-token winner
  std::vector<std::string> lines;
  TuneLog log;
  log.line = [&](const std::string& l) { lines.push_back(l); };
  const TuneReport rep = tune_spec(spec(), fake, &rs, opt, log);
  ASSERT_EQ(rep.records.size(), 2u);
  EXPECT_NE(name_of(rep.records[1]), name_of(before.records[1]));
  EXPECT_EQ(rep.records[1].time_ms, before.timed[1][1].ms) << "the next fastest wins";
  EXPECT_EQ(rep.wrong_answers, 2) << "one on the small check, one at the bucket";
  EXPECT_TRUE(rs.get(rep.records[1].key)->verified());
  bool said = false;
  for (const auto& l : lines)
    said |= l.find("skip " + name_of(before.records[1]) + " at 1024 tokens: output check on the real shape failed") !=
            std::string::npos;
  EXPECT_TRUE(said);
  // Each bucket checks only what could win it, at that bucket.
  for (const auto& c : fake.checked_at_bucket)
    EXPECT_TRUE(c.find(" at 64") != std::string::npos || c.find(" at 1024") != std::string::npos) << c;
  EXPECT_EQ(fake.checked_at_bucket.size(), 3u);
}

// A winner that reads its token rows in order (wgmma_sp's token tiles by
// TMA): the record also holds the config gathered calls run, verified and
// timed at the bucket, and dispatch gives gathered calls that one.
TEST(Autotuner, AnInOrderWinnerRecordsAVerifiedGatheredConfig) {
  struct InOrderWins : FakeBackend {
    using FakeBackend::FakeBackend;
    double time_ms(const KernelSpec& s, const TileConfig& c, int64_t tokens) override {
      if (s.backend != Backend::WgmmaSp) return FakeBackend::time_ms(s, c, tokens);
      ++timings;
      return kernel_family(Backend::WgmmaSp).reads_rows_in_order(c) ? 0.4 : 0.5 + c.block_n * 1e-4;
    }
  };
  TuneOptions opt;
  opt.buckets = {256};
  opt.jobs = 2;
  KernelSpec wg = spec();
  wg.backend = Backend::WgmmaSp;
  const KernelFamily& family = kernel_family(Backend::WgmmaSp);

  SqliteStore db(fresh("in_order"));
  RecordStore rs(db);
  InOrderWins fake(spec());
  const TuneReport rep = tune_spec(spec(), fake, &rs, opt, {});
  ASSERT_EQ(rep.records.size(), 1u);
  const TuningRecord& r = rep.records[0];
  ASSERT_EQ(r.backend, Backend::WgmmaSp);
  ASSERT_TRUE(family.reads_rows_in_order(r.config));
  ASSERT_TRUE(r.gathered);
  EXPECT_EQ(*r.gathered, family.gathered_config(wg, r.config, true, 256, 132)) << "its gathering twin";
  EXPECT_FALSE(family.reads_rows_in_order(*r.gathered));
  EXPECT_GT(r.gathered_ms, 0.4);
  const std::string twin = fmt::format("wgmma_sp/{}", r.gathered->to_string());
  EXPECT_NE(std::find(fake.checked_at_bucket.begin(), fake.checked_at_bucket.end(), twin + " at 256"),
            fake.checked_at_bucket.end());
  ConfigSelector sel(&rs, fake.device(), opt.buckets);
  const ConfigChoice c = sel.choose(spec(), 200);
  EXPECT_EQ(c.config, r.config);
  EXPECT_TRUE(c.gathered_tuned);
  EXPECT_EQ(c.gathered, *r.gathered);

  // Its twin wrong at the bucket: the fastest gathering candidate that is right stands in.
  SqliteStore db2(fresh("in_order_twin_wrong"));
  RecordStore rs2(db2);
  InOrderWins fake2(spec());
  fake2.wrong_at_bucket.insert(twin);
  const TuneReport rep2 = tune_spec(spec(), fake2, &rs2, opt, {});
  ASSERT_EQ(rep2.records.size(), 1u);
  ASSERT_TRUE(rep2.records[0].gathered);
  EXPECT_NE(*rep2.records[0].gathered, *r.gathered);
  EXPECT_FALSE(family.reads_rows_in_order(*rep2.records[0].gathered));
  EXPECT_EQ(rs2.get(rep2.records[0].key)->gathered, rep2.records[0].gathered);
}

// Each bucket keeps the backend that won it, and dispatch follows the record.
TEST(Autotuner, EachBucketRecordsTheBackendThatWonAndDispatchFollowsIt) {
  SqliteStore db(fresh("backends"));
  RecordStore rs(db);
  FakeBackend fake(spec());
  fake.wgmma_ms = [](int64_t tokens) { return tokens >= 1024 ? 0.5 : 100.0; };
  TuneOptions opt;
  opt.buckets = {512, 1024};
  opt.jobs = 2;
  const TuneReport rep = tune_spec(spec(), fake, &rs, opt, {});
  ASSERT_EQ(rep.records.size(), 2u);
  EXPECT_EQ(rep.records[0].backend, Backend::MmaSp);
  EXPECT_EQ(rep.records[1].backend, Backend::WgmmaSp);
  EXPECT_EQ(rs.get(rep.records[1].key)->backend, Backend::WgmmaSp) << "the backend survives the store";

  ConfigSelector sel(&rs, fake.device(), opt.buckets);
  const ConfigChoice big = sel.choose(spec(), 1000);
  EXPECT_EQ(big.backend, Backend::WgmmaSp);
  EXPECT_EQ(big.config, rep.records[1].config);
  EXPECT_EQ(sel.choose(spec(), 400).backend, Backend::MmaSp);
  // A caller that fixes the backend gets that backend's nearest record, or its heuristic.
  const ConfigChoice fixed = sel.choose(spec(), 1000, Backend::MmaSp);
  EXPECT_EQ(fixed.backend, Backend::MmaSp);
  EXPECT_EQ(fixed.config, rep.records[0].config);
  EXPECT_EQ(fixed.source, ConfigChoice::Source::NearestBucket);
  // Where wgmma_sp does not exist, its records are never chosen.
  KernelSpec hopper_without_a = spec();
  hopper_without_a.arch = "sm_90";
  EXPECT_EQ(sel.choose(hopper_without_a, 1000).backend, Backend::MmaSp);
}

TEST(Autotuner, OnlyMmaSpCompetesBelowSm90a) {
  SqliteStore db(fresh("sm90"));
  RecordStore rs(db);
  KernelSpec s = spec();
  s.arch = "sm_90";
  FakeBackend fake(s);
  TuneOptions opt;
  opt.buckets = {64};
  const TuneReport rep = tune_spec(s, fake, &rs, opt, {});
  EXPECT_EQ(rep.candidates, int(kernel_family(Backend::MmaSp).search_space(s).size()));
  EXPECT_EQ(rep.records.at(0).backend, Backend::MmaSp);
}

TEST(Autotuner, NothingUsableIsAnError) {
  SqliteStore db(fresh("nothing"));
  RecordStore rs(db);
  struct AllBroken : FakeBackend {
    using FakeBackend::FakeBackend;
    void prepare(const KernelSpec&, const TileConfig&) override { throw Error(ErrorCode::CompileError, "no"); }
  } fake(spec());
  TuneOptions opt;
  opt.buckets = {64};
  EXPECT_THROW(tune_spec(spec(), fake, &rs, opt, {}), Error);
  EXPECT_TRUE(rs.list().empty());
}

TEST(Autotuner, TwoProcessesTuningIntoOneFileLoseNothing) {
  const std::string path = fresh("two_processes");
  { SqliteStore init(path); }
  const int failed = test::run_in_processes(2, [&](int p) {
    SqliteStore db(path);
    RecordStore rs(db);
    FakeBackend fake(spec(4096 + 1024 * p));
    TuneOptions opt;
    opt.buckets = default_token_buckets();
    opt.jobs = 1;
    tune_spec(spec(4096 + 1024 * p), fake, &rs, opt, {});
  });
  EXPECT_EQ(failed, 0);
  SqliteStore db(path);
  RecordStore rs(db);
  EXPECT_EQ(rs.list().size(), 2 * default_token_buckets().size());
}

// The benchmark's modes: each bucket times the defaults of that bucket only,
// and named configs of another backend are skipped with a line, not an error.
TEST(Autotuner, DefaultsModeTimesEachBucketsOwnDefault) {
  FakeBackend fake(spec());
  TuneOptions opt;
  opt.buckets = {16, 1024};
  opt.candidates = TuneOptions::Candidates::Defaults;
  const TuneReport rep = tune_spec(spec(), fake, nullptr, opt, {});
  ASSERT_EQ(rep.records.size(), 2u);
  for (size_t i = 0; i < rep.records.size(); ++i) {
    const int64_t bucket = rep.records[i].key.bucket;
    for (const TimedCandidate& t : rep.timed[i])
      EXPECT_EQ(t.config, kernel_family(t.spec.backend).default_config(t.spec, bucket, 132))
          << backend_name(t.spec.backend) << " at " << bucket << ": " << t.config.to_string();
    EXPECT_LE(rep.timed[i].size(), all_backends().size());
  }
}

TEST(Autotuner, NamedModeSkipsNamesAnotherBackendOwns) {
  FakeBackend fake(spec());
  TuneOptions opt;
  opt.buckets = {64};
  opt.candidates = TuneOptions::Candidates::Named;
  opt.named = {"bm128_bn64_bk128_w8x1_s4_p_tf", "bm128_bn64_bk64_w2x2_s3"};
  std::vector<std::string> lines;
  TuneLog log;
  log.line = [&](const std::string& l) { lines.push_back(l); };
  const TuneReport rep = tune_spec(spec(), fake, nullptr, opt, log);
  ASSERT_EQ(rep.records.size(), 1u);
  bool skipped = false;
  for (const auto& l : lines) skipped |= l.find("skip mma_sp/bm128_bn64_bk128_w8x1_s4_p_tf") != std::string::npos;
  EXPECT_TRUE(skipped) << "a wgmma_sp schedule is not an mma_sp config";
  for (const TimedCandidate& t : rep.timed[0])
    EXPECT_TRUE(t.config.to_string() == opt.named[0] || t.config.to_string() == opt.named[1]) << t.config.to_string();
}

// A candidate's re-timed figure goes first even where it came out slower
// than another candidate's quick pass: the winner is always re-timed.
TEST(Autotuner, AQuickPassNeverOvertakesARetimedFigure) {
  struct SlowerOnRetime : FakeBackend {
    using FakeBackend::FakeBackend;
    std::map<std::string, int> calls;
    double time_ms(const KernelSpec& s, const TileConfig& c, int64_t tokens) override {
      const double base = FakeBackend::time_ms(s, c, tokens);
      const int n = calls[fmt::format("{}/{}", backend_name(s.backend), c.to_string())]++;
      return n == 0 ? base : base * 10;  // every re-time is ten times its quick pass
    }
  } fake(spec());
  fake.wgmma_ms = [](int64_t) { return 0.5; };
  TuneOptions opt;
  opt.buckets = {64};
  opt.retime_top = 1;
  const TuneReport rep = tune_spec(spec(), fake, nullptr, opt, {});
  ASSERT_EQ(rep.records.size(), 1u);
  const auto& timed = rep.timed[0];
  ASSERT_GE(timed.size(), 3u);
  // One re-timed candidate per backend leads the list, each at its second figure.
  EXPECT_EQ(fake.calls.at(fmt::format("{}/{}", backend_name(timed[0].spec.backend), timed[0].config.to_string())), 2);
  EXPECT_EQ(fake.calls.at(fmt::format("{}/{}", backend_name(timed[1].spec.backend), timed[1].config.to_string())), 2);
  EXPECT_NE(timed[0].spec.backend, timed[1].spec.backend);
  EXPECT_EQ(rep.records[0].time_ms, timed[0].ms);
  EXPECT_LE(timed[0].ms, timed[1].ms);
}

}  // namespace
}  // namespace samoyeds
