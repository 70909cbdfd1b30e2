// samoyeds cache export / import / verify / prune, end to end through the CLI.
#include <gtest/gtest.h>

#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_config.hpp"
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

using test::wg;

namespace fs = std::filesystem;

using test::CliRun;
test::CliRun run(const std::string& args) { return test::run_cli(args); }

class CacheCli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) / fmt::format("samoyeds_cachecli_{}_{}", getpid(),
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }

  static DeviceFingerprint fake_gpu() { return {"Fake GPU", 9, 0, 132, 13000, nvrtc_version(), library_version()}; }
  static TuningRecord record(int64_t bucket, double ms, const std::string& cfg = "bm64_bn32_bk64_w4x1_s4") {
    TuningRecord r;
    r.key.device = fake_gpu();
    r.key.op = Op::GatedUp;
    r.key.epilogue = Epilogue::GatedSilu;
    r.key.dtype = DType::bf16;
    r.key.m = 14336;
    r.key.k = 4096;
    r.key.experts = 8;
    r.key.bucket = bucket;
    r.config = wg(cfg);
    r.time_ms = ms;
    r.baseline_ms = 2 * ms;
    return r;
  }
  static BinaryRecord binary(const std::string& key) {
    BinaryRecord b;
    b.key = key;
    b.arch = "sm_90a";
    b.nvrtc = nvrtc_version();
    b.library = library_version();
    b.kernel_name = "k";
    b.description = "test " + key;
    b.blob.assign(3000, 'x');
    return b;
  }
  fs::path dir;
};

TEST_F(CacheCli, ExportThenImportIntoAnEmptyCacheTakesEverything) {
  {
    SqliteStore a(path("a.sqlite"));
    RecordStore rs(a);
    for (int64_t b : {1, 64, 4096}) rs.put(record(b, 0.1 * double(b)));
    BinaryCache(a).put(binary("k1"));
  }
  CliRun r = run(fmt::format("cache export {} --binaries --cache {}", path("out.sqlite"), path("a.sqlite")));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("exported 3 tuning records and 1 binaries"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(path("out.sqlite.partial")));
  r = run(fmt::format("cache export {} --cache {}", path("out.sqlite"), path("a.sqlite")));
  EXPECT_NE(r.rc, 0) << "export over an existing file without --force";
  r = run(fmt::format("cache import {} --cache {}", path("out.sqlite"), path("b.sqlite")));
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("imported 3 records"), std::string::npos) << r.out;
  SqliteStore b(path("b.sqlite"));
  EXPECT_EQ(RecordStore(b).list().size(), 3u);
  auto bin = BinaryCache(b).get("k1");
  ASSERT_TRUE(bin);
  EXPECT_EQ(bin->blob, binary("k1").blob);
  r = run(fmt::format("cache ls --cache {}", path("b.sqlite")));
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("1 binaries, 3 tuning records"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("test k1"), std::string::npos) << "ls lists each binary, not only their count:\n" << r.out;
}

TEST_F(CacheCli, ImportKeepsTheFasterRecordOnConflict) {
  {
    SqliteStore a(path("a.sqlite"));
    RecordStore rs(a);
    rs.put(record(64, 1.0, "bm64_bn64_bk64_w2x2_s3"));  // slower than the target's
    rs.put(record(128, 0.5, "bm64_bn64_bk64_w2x2_s3"));  // faster than the target's
    SqliteStore c(path("c.sqlite"));
    RecordStore rc(c);
    rc.put(record(64, 0.8));
    rc.put(record(128, 0.9));
  }
  ASSERT_EQ(run(fmt::format("cache export {} --cache {}", path("out.sqlite"), path("a.sqlite"))).rc, 0);
  CliRun r = run(fmt::format("cache import {} --cache {}", path("out.sqlite"), path("c.sqlite")));
  ASSERT_EQ(r.rc, 0) << r.out;
  SqliteStore c(path("c.sqlite"));
  RecordStore rs(c);
  EXPECT_DOUBLE_EQ(rs.get(record(64, 0).key)->time_ms, 0.8);
  EXPECT_DOUBLE_EQ(rs.get(record(128, 0).key)->time_ms, 0.5);
  EXPECT_EQ(rs.get(record(128, 0).key)->config.to_string(), "bm64_bn64_bk64_w2x2_s3");
}

TEST_F(CacheCli, MismatchedVersionsAreRefusedUnlessForced) {
  {
    SqliteStore a(path("a.sqlite"));
    TuningRecord old = record(64, 1.0);
    old.key.device.library_version = "0.0.1";
    RecordStore(a).put(old);
    BinaryRecord b = binary("old");
    b.nvrtc = "11.8";
    BinaryCache(a).put(b);
  }
  ASSERT_EQ(run(fmt::format("cache export {} --binaries --cache {}", path("out.sqlite"), path("a.sqlite"))).rc, 0);
  CliRun r = run(fmt::format("cache import {} --cache {}", path("out.sqlite"), path("b.sqlite")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("refused"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("samoyeds 0.0.1"), std::string::npos) << r.out;
  {
    SqliteStore b(path("b.sqlite"));
    EXPECT_TRUE(RecordStore(b).list().empty());
    EXPECT_TRUE(BinaryCache(b).list().empty());
  }
  r = run(fmt::format("cache import {} --force --cache {}", path("out.sqlite"), path("b.sqlite")));
  EXPECT_EQ(r.rc, 0) << r.out;
  r = run(fmt::format("cache verify --cache {}", path("b.sqlite")));
  EXPECT_EQ(r.rc, 1) << "a stale record and binary are problems: " << r.out;
  r = run(fmt::format("cache prune --cache {}", path("b.sqlite")));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("pruned 1 binaries and 1 tuning records"), std::string::npos) << r.out;
  r = run(fmt::format("cache verify --cache {}", path("b.sqlite")));
  EXPECT_EQ(r.rc, 0) << r.out;
}

TEST_F(CacheCli, VerifyReportsACorruptBlobAndPruneRemovesIt) {
  {
    SqliteStore a(path("a.sqlite"));
    BinaryCache(a).put(binary("good"));
    BinaryCache(a).put(binary("bad"));
    a.exec("UPDATE binaries SET blob = substr(blob, 1, 10) WHERE key = 'bad'");
  }
  CliRun r = run(fmt::format("cache verify --cache {}", path("a.sqlite")));
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("corrupt binary"), std::string::npos) << r.out;
  EXPECT_EQ(run(fmt::format("cache prune --cache {}", path("a.sqlite"))).rc, 0);
  EXPECT_EQ(run(fmt::format("cache verify --cache {}", path("a.sqlite"))).rc, 0);
  SqliteStore a(path("a.sqlite"));
  EXPECT_TRUE(BinaryCache(a).get("good"));
}

TEST_F(CacheCli, TuneWithoutAGpuSaysSoAndUsageErrorsExitTwo) {
  CliRun r = run(fmt::format("tune --model mixtral-8x7b --buckets 1,2 --cache {}", path("t.sqlite")));
  if (r.out.find("tuning needs a GPU") == std::string::npos) GTEST_SKIP() << "a GPU is present: " << r.out;
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(run("tune").rc, 2);
  EXPECT_EQ(run("tune --model mixtral-8x7b --sweep x.yaml").rc, 2);
  EXPECT_EQ(run("cache frobnicate").rc, 2);
  EXPECT_EQ(run("cache import").rc, 2);
}

}  // namespace
}  // namespace samoyeds

namespace samoyeds {
namespace {

// --cache none compiles and stores nothing (it once made a file named none).
TEST(CompileCli, CacheNoneStoresNothing) {
  namespace fs = std::filesystem;
  fs::remove("none");
  const auto r = test::run_cli("compile --model minicpm-moe-8x2b --arch sm_80 --dtype f16 --cache none");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("compiled"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists("none"));
}

}  // namespace
}  // namespace samoyeds
