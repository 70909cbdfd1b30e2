// The cache under faults, end to end through the CLI: a file that cannot be
// written, a damaged file, a foreign file, several processes at once, a full
// disk and killed processes. Bounded in time; no test asserts a duration.
#include <gtest/gtest.h>
#include <grp.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <thread>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "runtime/nvrtc_compiler.hpp"

namespace samoyeds {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;
// The hammer's length and width: 15 s of five processes in the suite (two
// cores); SAMOYEDS_HAMMER_SECONDS=60 SAMOYEDS_HAMMER_COPIES=2 runs the full
// one (eight processes: three compile, two import, two prune, one verify).
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}
const int kHammerSeconds = env_int("SAMOYEDS_HAMMER_SECONDS", 15);
const int kHammerCopies = std::max(1, env_int("SAMOYEDS_HAMMER_COPIES", 1));

struct ChildOptions {
  bool as_nobody = false;      // drop root (CI) so that permission bits hold
  rlim_t max_file_bytes = 0;   // RLIMIT_FSIZE: the disk "fills" at this size
};

struct Child {
  pid_t pid = -1;
  std::string out_file;
};

// `samoyeds ARGS` in a child process, output to out_file.
Child start(const std::string& args, const std::string& out_file, ChildOptions o = {}) {
  Child c;
  c.out_file = out_file;
  c.pid = fork();
  if (c.pid == 0) {
    if (o.as_nobody && geteuid() == 0) {
      if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) _exit(120);
    }
    if (o.max_file_bytes) {
      signal(SIGXFSZ, SIG_IGN);  // a write past the limit then fails with EFBIG, as on a full disk
      rlimit lim{o.max_file_bytes, o.max_file_bytes};
      setrlimit(RLIMIT_FSIZE, &lim);
    }
    const std::string cmd = fmt::format("exec {} {} > '{}' 2>&1", SAMOYEDS_CLI_PATH, args, out_file);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return c;
}

std::string read_text(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

struct Result {
  int rc;
  std::string out;
};
Result finish(const Child& c) {
  int status = 0;
  waitpid(c.pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text(c.out_file)};
}

class CacheFaults : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) / fmt::format("samoyeds_faults_{}_{}", getpid(),
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::all);  // output files of a child running as nobody
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir, fs::perms::all, ec);
    for (const auto& e : fs::recursive_directory_iterator(dir, ec)) fs::permissions(e.path(), fs::perms::all, ec);
    fs::remove_all(dir, ec);
  }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  Result cli(const std::string& args, ChildOptions o = {}) {
    return finish(start(args, path(fmt::format("out{}.txt", ++runs)), o));
  }

  static TuningRecord record(int64_t bucket) {
    TuningRecord r;
    r.key.device = {"Fake GPU", 9, 0, 132, 13000, nvrtc_version(), library_version()};
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
  static BinaryRecord binary(const std::string& key, size_t bytes) {
    BinaryRecord b;
    b.key = key;
    b.arch = "sm_90a";
    b.nvrtc = nvrtc_version();
    b.library = library_version();
    b.kernel_name = "k";
    b.description = "test " + key;
    b.blob.resize(bytes);
    std::mt19937 rng(uint32_t(std::hash<std::string>()(key)));
    for (auto& c : b.blob) c = char(rng());
    return b;
  }
  // A cache with `n` binaries of `bytes` each and three tuning records.
  void fill(const std::string& file, int n, size_t bytes, const std::string& prefix = "k") {
    SqliteStore s(file);
    BinaryCache bins(s);
    for (int i = 0; i < n; ++i) bins.put(binary(fmt::format("{}{:04}", prefix, i), bytes));
    RecordStore recs(s);
    for (int64_t b : {1, 64, 4096}) recs.put(record(b));
  }
  static size_t binaries_in(const std::string& file) {
    SqliteStore s(file);
    return BinaryCache(s).list().size();
  }
  static size_t records_in(const std::string& file) {
    SqliteStore s(file);
    return RecordStore(s).list().size();
  }
  static std::string integrity(const std::string& file) {
    SqliteStore s(file, OpenMode::Inspect);
    return s.integrity_check();
  }
  // "compiled N new kernels" of a compile run's output, -1 if absent.
  static int compiled_of(const std::string& out) {
    std::smatch m;
    return std::regex_search(out, m, std::regex("compiled (\\d+) new kernels")) ? std::stoi(m[1]) : -1;
  }
  static int kernels_of(const std::string& out) {
    std::smatch m;
    return std::regex_search(out, m, std::regex("\\), (\\d+) kernels for")) ? std::stoi(m[1]) : -1;
  }
  static int count(const std::string& text, const std::string& what) {
    int n = 0;
    for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
  }

  fs::path dir;
  int runs = 0;
};

// Enough for every test: 19 kernels (Mixtral 8x7B, f16, default configs).
const char* kCompileArgs = "compile --dtype f16";

TEST_F(CacheFaults, CacheLsAndExportWorkOnAReadOnlyCache) {
  const fs::path ro = dir / "ro";
  fs::create_directories(ro);
  const std::string cache = (ro / "samoyeds.sqlite").string();
  fill(cache, 2, 3000);
  fs::permissions(cache, fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec);
  const ChildOptions nobody{true, 0};
  Result r = cli(fmt::format("cache ls --cache {}", cache), nobody);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("2 binaries, 3 tuning records"), std::string::npos) << r.out;
  EXPECT_EQ(count(r.out, "using it read-only"), 1) << r.out;
  EXPECT_EQ(r.out.find("delete"), std::string::npos) << r.out;
  r = cli(fmt::format("cache export {} --binaries --cache {}", path("out.sqlite"), cache), nobody);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("exported 3 tuning records and 2 binaries"), std::string::npos) << r.out;
  r = cli(fmt::format("cache verify --cache {}", cache), nobody);
  EXPECT_EQ(r.rc, 0) << r.out;
  r = cli(fmt::format("cache import {} --cache {}", path("out.sqlite"), cache), nobody);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("read-only"), std::string::npos) << r.out;
}

// Overwrites `count` pages from byte offset `at` (rounded to a page) with random bytes.
void scribble(const std::string& file, size_t at, int count) {
  constexpr size_t kPage = 4096;
  std::mt19937 rng(11);
  std::string bytes(kPage * size_t(count), '\0');
  for (auto& c : bytes) c = char(rng());
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(std::streamoff(at / kPage * kPage));
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

TEST_F(CacheFaults, VerifyReportsADamagedFileAndRepairSalvagesWhatIsReadable) {
  const std::string cache = path("samoyeds.sqlite");
  constexpr int kBinaries = 60;
  fill(cache, kBinaries, 6000);
  { SqliteStore(cache).exec("PRAGMA wal_checkpoint(TRUNCATE)"); }
  const size_t size = fs::file_size(cache);
  scribble(cache, size * 2 / 5, 4);
  Result r = cli(fmt::format("cache verify --cache {}", cache));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("damaged database"), std::string::npos) << r.out;
  EXPECT_EQ(fs::file_size(cache), size) << "verify without --repair changed the file";
  r = cli(fmt::format("cache verify --repair --cache {}", cache));
  EXPECT_EQ(r.rc, 0) << r.out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.out, m, std::regex("saved (\\d+) binaries and (\\d+) tuning records"))) << r.out;
  const int saved = std::stoi(m[1]);
  fmt::print("repair figures: {} of {} binaries and {} of 3 records saved ({})\n", saved, kBinaries,
             std::stoi(m[2]), r.out.substr(r.out.find("repaired")));
  EXPECT_GT(saved, kBinaries / 2) << r.out;
  EXPECT_LT(saved, kBinaries) << "nothing was damaged?";
  EXPECT_EQ(std::stoi(m[2]), 3) << r.out;
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(binaries_in(cache), size_t(saved));
  bool moved = false;
  for (const auto& e : fs::directory_iterator(dir)) moved |= e.path().filename().string().rfind("samoyeds.sqlite.corrupt-", 0) == 0;
  EXPECT_TRUE(moved) << "the damaged file was not kept aside";
  EXPECT_EQ(cli(fmt::format("cache ls --cache {}", cache)).rc, 0);
}

TEST_F(CacheFaults, EveryCommandCarriesOnAfterTheCacheIsDamaged) {
  const std::string truncated = path("truncated.sqlite");
  fill(truncated, 40, 6000);
  { SqliteStore(truncated).exec("PRAGMA wal_checkpoint(TRUNCATE)"); }
  fs::resize_file(truncated, fs::file_size(truncated) / 2);
  Result r = cli(fmt::format("cache ls --cache {}", truncated));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(count(r.out, "moved it to"), 1) << r.out;
  EXPECT_NE(r.out.find("0 binaries, 0 tuning records"), std::string::npos) << r.out;
  EXPECT_EQ(cli(fmt::format("cache verify --cache {}", truncated)).rc, 0);

  const std::string garbage = path("garbage.sqlite");
  std::ofstream(garbage) << std::string(20000, 'x');
  r = cli(fmt::format("cache prune --cache {}", garbage));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(count(r.out, "moved it to"), 1) << r.out;
  std::ofstream(garbage, std::ios::trunc) << std::string(20000, 'y');
  r = cli(fmt::format("cache export {} --cache {}", path("out.sqlite"), garbage));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(integrity(garbage), "ok");
}

TEST_F(CacheFaults, ImportRefusesAForeignDatabaseAndLeavesItUnchanged) {
  const std::string cache = path("samoyeds.sqlite");
  const std::string other = path("other_app.sqlite"), no_tables = path("no_tables.sqlite"), empty = path("empty.db"),
                    text = path("notes.txt"), good = path("export.sqlite");
  {
    sqlite3* db = nullptr;
    sqlite3_open(other.c_str(), &db);
    sqlite3_exec(db, "CREATE TABLE people (name TEXT); INSERT INTO people VALUES ('ada')", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    sqlite3_open(no_tables.c_str(), &db);
    sqlite3_exec(db, "PRAGMA user_version = 7", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  std::ofstream(empty).flush();
  std::ofstream(text) << "not a database at all\n" << std::string(5000, 'z');
  fill(path("source.sqlite"), 2, 3000);
  ASSERT_EQ(cli(fmt::format("cache export {} --binaries --cache {}", good, path("source.sqlite"))).rc, 0);
  // Old mtimes, so that a rewrite within the same second still shows.
  const auto old = fs::file_time_type::clock::now() - std::chrono::hours(1);
  for (const auto& f : {other, no_tables, empty, text, good}) fs::last_write_time(f, old);

  for (const auto& f : {other, no_tables, empty, text, good}) {
    SCOPED_TRACE(f);
    const std::string bytes = read_text(f);
    const Result r = cli(fmt::format("cache import {} --cache {}", f, cache));
    if (f == good) {
      EXPECT_EQ(r.rc, 0) << r.out;
      EXPECT_NE(r.out.find("imported 3 records"), std::string::npos) << r.out;
    } else {
      EXPECT_EQ(r.rc, 1) << r.out;
      EXPECT_TRUE(r.out.find("not a samoyeds") != std::string::npos || r.out.find("damaged") != std::string::npos)
          << r.out;
    }
    EXPECT_EQ(read_text(f), bytes) << "the imported file changed";
    EXPECT_EQ(fs::last_write_time(f), old) << "the imported file was written";
    for (const char* side : {"-wal", "-shm", "-journal"}) EXPECT_FALSE(fs::exists(f + side)) << side;
  }
  EXPECT_EQ(records_in(cache), 3u);
  EXPECT_EQ(binaries_in(cache), 2u);
}

TEST_F(CacheFaults, FourProcessesCompileEachKernelAboutOnce) {
  const std::string cache = path("samoyeds.sqlite");
  constexpr int kProcs = 4;
  std::vector<Child> kids;
  for (int i = 0; i < kProcs; ++i)
    kids.push_back(start(fmt::format("{} --jobs {} --cache {}", kCompileArgs, 1 + i % 2, cache),
                         path(fmt::format("compile{}.txt", i))));
  int compiles = 0, kernels = -1;
  for (const auto& k : kids) {
    const Result r = finish(k);
    EXPECT_EQ(r.rc, 0) << r.out;
    EXPECT_GE(compiled_of(r.out), 0) << r.out;
    compiles += compiled_of(r.out);
    kernels = kernels_of(r.out);
  }
  const size_t stored = binaries_in(cache);
  fmt::print("{} processes: {} compiles for {} kernels ({} stored)\n", kProcs, compiles, kernels, stored);
  EXPECT_EQ(stored, size_t(kernels));
  EXPECT_GE(compiles, kernels);
  EXPECT_LE(compiles, kernels + 2) << "kernels compiled more than about once";
}

TEST_F(CacheFaults, AFullDiskDuringACompileOrAnImportGivesAClearErrorAndTheCacheVerifies) {
  const std::string cache = path("samoyeds.sqlite");
  { SqliteStore empty(cache); }  // an empty cache (`cache ls` never creates one)
  // A cubin here is ~240 KB: the limit holds about two.
  Result r = cli(fmt::format("{} --jobs 2 --cache {}", kCompileArgs, cache), {false, 600 * 1024});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("out of disk space"), std::string::npos) << r.out;
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(cli(fmt::format("cache verify --cache {}", cache)).rc, 0);
  const size_t after_compile = binaries_in(cache);

  fill(path("source.sqlite"), 30, 100 * 1000, "imp");
  ASSERT_EQ(cli(fmt::format("cache export {} --binaries --cache {}", path("export.sqlite"), path("source.sqlite"))).rc, 0);
  r = cli(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache),
          {false, rlim_t(fs::file_size(cache) + 1024 * 1024)});
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("out of disk space"), std::string::npos) << r.out;
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(cli(fmt::format("cache verify --cache {}", cache)).rc, 0);
  fmt::print("full disk: {} binaries stored before the compile failed; import stopped at {} of 30\n", after_compile,
             binaries_in(cache) - after_compile);
  r = cli(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(binaries_in(cache), after_compile + 30);
}

// Waits (bounded) until `ready` holds; false if it never did.
bool wait_until(const std::function<bool()>& ready, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST_F(CacheFaults, AKilledCompileOrImportLeavesACacheThatVerifiesAndTheNextRunCompletes) {
  const std::string cache = path("samoyeds.sqlite");
  { SqliteStore empty(cache); }  // an empty cache (`cache ls` never creates one)
  Child c = start(fmt::format("{} --jobs 2 --cache {}", kCompileArgs, cache), path("compile.txt"));
  EXPECT_TRUE(wait_until([&] { return binaries_in(cache) >= 2; }, std::chrono::seconds(60)));
  kill(c.pid, SIGKILL);
  Result r = finish(c);
  EXPECT_EQ(r.rc, 128 + SIGKILL) << r.out;
  const size_t before = binaries_in(cache);
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(cli(fmt::format("cache verify --cache {}", cache)).rc, 0);
  // The killed process's claims (kernels it was compiling) are taken over.
  r = cli(fmt::format("{} --jobs 2 --cache {}", kCompileArgs, cache));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(binaries_in(cache), size_t(kernels_of(r.out)));
  fmt::print("killed compile: {} binaries stored before SIGKILL, {} compiled by the next run\n", before,
             compiled_of(r.out));

  fill(path("source.sqlite"), 300, 100 * 1000, "imp");
  ASSERT_EQ(cli(fmt::format("cache export {} --binaries --cache {}", path("export.sqlite"), path("source.sqlite"))).rc, 0);
  const size_t compiled = binaries_in(cache);
  c = start(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache), path("import.txt"));
  wait_until([&] { return binaries_in(cache) > compiled; }, std::chrono::seconds(60));
  kill(c.pid, SIGKILL);
  r = finish(c);
  const size_t imported_before_kill = binaries_in(cache) - compiled;
  fmt::print("killed import: {} of 300 binaries in (exit {})\n", imported_before_kill, r.rc);
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(cli(fmt::format("cache verify --cache {}", cache)).rc, 0);
  r = cli(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(binaries_in(cache), compiled + 300);
  EXPECT_EQ(records_in(cache), 3u);
}

TEST_F(CacheFaults, SeveralProcessesHammeringOneCacheLoseNothing) {
  const std::string cache = path("samoyeds.sqlite");
  fill(path("source.sqlite"), 20, 50 * 1000, "imp");
  ASSERT_EQ(cli(fmt::format("cache export {} --binaries --cache {}", path("export.sqlite"), path("source.sqlite"))).rc, 0);
  // The cache exists before the loops start: `cache verify` of a missing
  // file is an error, and on a loaded machine its first run once came before
  // any other loop had created the file. Importing again later adds nothing.
  ASSERT_EQ(cli(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache)).rc, 0);
  // Each loop runs its command again and again until the deadline (a run
  // under way finishes), then prints how many runs failed.
  auto loop = [&](const std::string& args, const std::string& name) {
    const std::string cmd = fmt::format(
        "end=$(( $(date +%s) + {} )); n=0; f=0; while [ $(date +%s) -lt $end ]; do {} {} >>'{}' 2>&1 || f=$((f+1)); "
        "n=$((n+1)); done; echo \"runs=$n failed=$f\"",
        kHammerSeconds, SAMOYEDS_CLI_PATH, args, path(name + ".log"));
    Child c;
    c.out_file = path(name + ".txt");
    c.pid = fork();
    if (c.pid == 0) {
      const std::string full = cmd + " > '" + c.out_file + "' 2>&1";
      execl("/bin/sh", "sh", "-c", full.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    return c;
  };
  std::vector<std::pair<std::string, Child>> loops;
  std::vector<std::string> compile_logs;
  for (int i = 0; i <= kHammerCopies; ++i) {
    compile_logs.push_back(fmt::format("compile_{}", i));
    loops.emplace_back(compile_logs.back(),
                       loop(fmt::format("{} --jobs 1 --cache {}", kCompileArgs, cache), compile_logs.back()));
  }
  for (int i = 0; i < kHammerCopies; ++i) {
    const std::string imp = fmt::format("import_{}", i), prn = fmt::format("prune_{}", i);
    loops.emplace_back(imp, loop(fmt::format("cache import {} --cache {}", path("export.sqlite"), cache), imp));
    loops.emplace_back(prn, loop(fmt::format("cache prune --cache {}", cache), prn));
  }
  loops.emplace_back("verify", loop(fmt::format("cache verify --cache {}", cache), "verify"));
  for (auto& [name, c] : loops) {
    const Result r = finish(c);
    EXPECT_EQ(r.rc, 0) << name;
    EXPECT_NE(r.out.find("failed=0"), std::string::npos) << name << ": " << r.out << read_text(path(name + ".log"));
    fmt::print("hammer {}: {}", name, r.out);
  }
  const int kernels = kernels_of(read_text(path("compile_0.log")));
  EXPECT_EQ(integrity(cache), "ok");
  EXPECT_EQ(binaries_in(cache), size_t(kernels + 20));
  EXPECT_EQ(records_in(cache), 3u);
  int compiles = 0;
  const std::regex compiled_line("compiled (\\d+) new kernels");
  for (const std::string& log : compile_logs) {
    const std::string text = read_text(path(log + ".log"));
    for (std::sregex_iterator it(text.begin(), text.end(), compiled_line), end; it != end; ++it)
      compiles += std::stoi((*it)[1]);
  }
  fmt::print("hammer: {} processes for {} s, {} compiles for {} kernels; {} binaries, {} records after (expected {} "
             "and 3)\n",
             loops.size(), kHammerSeconds, compiles, kernels, binaries_in(cache), records_in(cache), kernels + 20);
  EXPECT_LE(compiles, kernels + 2);
}

}  // namespace
}  // namespace samoyeds
