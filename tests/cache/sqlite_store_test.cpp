// Opening the cache file when it cannot be written, or is damaged: the cache
// keeps working and never stops a command.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "runtime/kernel_builder.hpp"
#include "samoyeds/error.hpp"
#include "test_util/fixtures.hpp"
#include "test_util/processes.hpp"

namespace samoyeds {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / fmt::format("samoyeds_store_{}_{}", name, getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

using test::blob_record;

TuningRecord tuning_record(int64_t bucket) {
  TuningRecord r;
  r.key.device = {"NVIDIA H200", 9, 0, 132, 13000, "13.0", library_version()};
  r.key.op = Op::GatedUp;
  r.key.epilogue = Epilogue::GatedSilu;
  r.key.dtype = DType::bf16;
  r.key.m = 14336;
  r.key.k = 4096;
  r.key.experts = 8;
  r.key.bucket = bucket;
  r.config = TileConfig{64, 32, 64, 4, 1, 4};
  r.time_ms = 0.5;
  r.baseline_ms = 1.0;
  return r;
}

// A cache of `n` binaries (each spanning a few pages) and three records.
void fill(const std::string& path, int n) {
  SqliteStore store(path);
  BinaryCache bins(store);
  for (int i = 0; i < n; ++i) bins.put(blob_record(fmt::format("k{:03}", i), 6000));
  RecordStore recs(store);
  for (int64_t b : {1, 64, 4096}) recs.put(tuning_record(b));
}

int count_lines_with(const std::string& file, const std::string& what) {
  std::ifstream in(file);
  int n = 0;
  for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos;
  return n;
}

TEST(SqliteStore, CacheOpensReadOnlyWhenItCannotWrite) {
  const fs::path dir = fresh_dir("readonly");
  const std::string path = (dir / "samoyeds.sqlite").string();
  fill(path, 3);
  // The folder and the file read-only; as root (CI) the child also drops to
  // nobody, since root writes through permission bits.
  fs::permissions(path, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                           fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  const std::string log_file = (dir.parent_path() / fmt::format("samoyeds_store_readonly_{}.log", getpid())).string();
  { std::ofstream(log_file).flush(); }
  fs::permissions(log_file, fs::perms::all);
  const int failed = test::run_in_processes(1, [&](int) {
    if (geteuid() == 0 && setuid(kNobody) != 0) throw std::runtime_error("setuid");
    const int fd = open(log_file.c_str(), O_WRONLY | O_APPEND);
    dup2(fd, 2);
    auto expect = [](bool ok, const char* what) {
      if (!ok) {
        fprintf(stderr, "CHECK FAILED: %s\n", what);
        throw std::runtime_error(what);
      }
    };
    SqliteStore store(path);
    expect(store.read_only(), "opened read-only");
    BinaryCache bins(store);
    auto hit = bins.get("k001");
    expect(hit && hit->blob == blob_record("k001", 6000).blob, "a stored binary loads");
    expect(RecordStore(store).get(tuning_record(64).key).has_value(), "a tuning record is used");
    expect(RecordStore(store).list().size() == 3, "every tuning record is listed");
    // A new kernel is compiled in memory: nothing stored, no error.
    KernelSpec s;
    s.arch = "sm_90a";
    s.m = s.k = 256;
    const BuiltKernel k = build_kernel(s, TileConfig{64, 32, 64, 2, 2, 2}, &bins);
    expect(!k.from_cache && !k.binary.blob.empty(), "a new kernel compiles in memory");
    expect(bins.list().size() == 3, "nothing was stored");
  });
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::add);
  std::ifstream in(log_file);
  const std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(failed, 0) << log;
  EXPECT_EQ(count_lines_with(log_file, "using it read-only"), 1) << log;
  EXPECT_EQ(log.find("delete"), std::string::npos) << log;
}

// Overwrites pages first..last (1-based) of the file with random bytes.
void scribble_pages(const std::string& path, int first, int last) {
  int page_size = 4096;
  {
    SqliteStore s(path, OpenMode::Inspect);
    Statement q(s, "PRAGMA page_size");
    if (q.step()) page_size = int(q.integer(0));
  }
  std::mt19937 rng(7);
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string bytes(size_t(page_size) * size_t(last - first + 1), '\0');
  for (auto& c : bytes) c = char(rng());
  f.seekp(std::streamoff(page_size) * (first - 1));
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

void expect_moved_aside_and_fresh(const std::string& path) {
  SqliteStore store(path);
  EXPECT_FALSE(store.read_only());
  ASSERT_FALSE(store.moved_aside_to().empty()) << "the damaged file was not moved aside";
  EXPECT_TRUE(fs::exists(store.moved_aside_to()));
  EXPECT_NE(store.moved_aside_to().find(path + ".corrupt-"), std::string::npos) << store.moved_aside_to();
  BinaryCache bins(store);
  EXPECT_TRUE(bins.list().empty());
  bins.put(blob_record("new", 1000));
  EXPECT_TRUE(bins.get("new"));
  EXPECT_EQ(store.integrity_check(), "ok");
}

TEST(SqliteStore, CacheMovesADamagedFileAsideAndCarriesOn) {
  const fs::path dir = fresh_dir("damaged");
  {
    SCOPED_TRACE("random bytes over database pages");
    const std::string path = (dir / "pages.sqlite").string();
    fill(path, 40);
    scribble_pages(path, 2, 6);
    EXPECT_NE(cache_damage(path), "");
    expect_moved_aside_and_fresh(path);
  }
  {
    SCOPED_TRACE("truncated file");
    const std::string path = (dir / "truncated.sqlite").string();
    fill(path, 40);
    fs::resize_file(path, fs::file_size(path) / 2);
    EXPECT_NE(cache_damage(path), "");
    expect_moved_aside_and_fresh(path);
  }
  {
    SCOPED_TRACE("garbage file");
    const std::string path = (dir / "garbage.sqlite").string();
    std::ofstream(path) << std::string(8192, 'x');
    EXPECT_NE(cache_damage(path), "");
    expect_moved_aside_and_fresh(path);
  }
}

TEST(SqliteStore, DamagedFileOpenedForInspectionIsReportedAndLeftInPlace) {
  const fs::path dir = fresh_dir("inspect");
  const std::string path = (dir / "samoyeds.sqlite").string();
  std::ofstream(path) << std::string(8192, 'x');
  try {
    SqliteStore store(path, OpenMode::Inspect);
    FAIL() << "opened a garbage file";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::CacheError);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("verify --repair"), std::string::npos) << e.what();
  }
  EXPECT_EQ(fs::file_size(path), 8192u);
}

TEST(SqliteStore, AnotherApplicationsDatabaseIsNeverTurnedIntoACache) {
  const fs::path dir = fresh_dir("foreign");
  const std::string path = (dir / "other.sqlite").string();
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada')", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  EXPECT_THROW(SqliteStore store(path), Error);
  EXPECT_THROW(SqliteStore store(path, OpenMode::Foreign), Error);
}

}  // namespace
}  // namespace samoyeds
