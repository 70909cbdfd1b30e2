// The samoyeds command's arguments, end to end through the binary: typed
// options naming themselves in errors, usage errors on stderr with exit 2,
// --version, help that lists the presets, file errors that say what is wrong.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <fmt/format.h>

#include "cli/progress.hpp"

namespace samoyeds {
namespace {

namespace fs = std::filesystem;

struct CliRun {
  int rc;
  std::string out;  // stdout, or stdout and stderr together
};
// `streams`: "2>&1" for both, "2>/dev/null" for stdout only, "2>&1 >/dev/null" for stderr only.
CliRun run(const std::string& args, const std::string& streams = "2>&1") {
  std::string out;
  FILE* f = popen((std::string(SAMOYEDS_CLI_PATH) + " " + args + " " + streams).c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return {WEXITSTATUS(pclose(f)), out};
}

class CliArgs : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::path(::testing::TempDir()) / fmt::format("samoyeds_cliargs_{}_{}", getpid(),
                                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
  fs::path dir;
};

TEST_F(CliArgs, CliRejectsNonNumericJobs) {
  const CliRun r = run("compile --jobs abc");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("--jobs"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("abc"), std::string::npos) << r.out;
}

TEST_F(CliArgs, UsageErrorsGoToStderrWithExit2) {
  for (const char* args : {"compile --bogus", "compile --jobs=0", "tune --model mixtral-8x7b --max-configs -5",
                           "tune --model mixtral-8x7b --buckets ''", "tune --model mixtral-8x7b --buckets 1,x",
                           "tune --model mixtral-8x7b --buckets 1,,2", "tune --model mixtral-8x7b --buckets 1,2,",
                           "tune --model mixtral-8x7b --buckets 99999999999999999999",
                           "bench", "run-moe --model mixtral-8x7b", "cache", "compile --configs some"}) {
    const CliRun out = run(args, "2>/dev/null");
    EXPECT_EQ(out.rc, 2) << args;
    EXPECT_EQ(out.out, "") << args << ": a usage error printed on stdout";
    const CliRun err = run(args, "2>&1 >/dev/null");
    EXPECT_FALSE(err.out.empty()) << args << ": nothing on stderr";
  }
}

TEST_F(CliArgs, ListErrorsNameTheOptionAndTheItem) {
  const CliRun r = run("run-moe --model mixtral-8x7b --tokens=16,,64");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_NE(r.out.find("--tokens: '' in '16,,64' is not an integer from 1 to"), std::string::npos) << r.out;
}

TEST_F(CliArgs, OptionsTakeFlagEqualsValue) {
  // The value reaches --model: the file it names is missing (exit 1), not an unknown option (exit 2).
  const CliRun r = run(fmt::format("compile --model={}", path("missing.json")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("missing.json': no such file"), std::string::npos) << r.out;
}

TEST_F(CliArgs, VersionNamesLibraryNvrtcDriverAndCacheSchema) {
  for (const char* args : {"--version", "compile --version"}) {
    const CliRun r = run(args, "2>/dev/null");
    EXPECT_EQ(r.rc, 0) << args;
    EXPECT_NE(r.out.find("samoyeds "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("NVRTC "), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("driver"), std::string::npos) << r.out;  // "driver X.Y" or "no driver"
    EXPECT_NE(r.out.find("cache schema "), std::string::npos) << r.out;
  }
}

TEST_F(CliArgs, EachCommandsHelpListsThePresetsAndWhatModelTakes) {
  for (const char* cmd : {"compile", "tune", "bench", "run-moe"}) {
    const CliRun r = run(fmt::format("{} --help", cmd), "2>/dev/null");
    EXPECT_EQ(r.rc, 0) << cmd;
    EXPECT_NE(r.out.find("mixtral-8x7b"), std::string::npos) << cmd << ":\n" << r.out;
    EXPECT_NE(r.out.find("qwen1.5-moe-a2.7b"), std::string::npos) << cmd << ":\n" << r.out;
    EXPECT_NE(r.out.find("a preset name, a preset .yaml file or a Hugging Face config.json"), std::string::npos)
        << cmd << ":\n" << r.out;
  }
}

TEST_F(CliArgs, MissingJsonModelSaysNoSuchFile) {
  const CliRun r = run(fmt::format("compile --model {}", path("config.json")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("no such file"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("unknown model"), std::string::npos) << r.out;
}

TEST_F(CliArgs, FolderGivenAsModelFileSaysItIsAFolder) {
  const CliRun r = run(fmt::format("compile --model {}", dir.string()));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("is a folder"), std::string::npos) << r.out;
}

TEST_F(CliArgs, SweepThatIsMissingOrAFolderSaysSo) {
  CliRun r = run(fmt::format("tune --sweep {}", path("sweep.yaml")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("sweep.yaml': no such file"), std::string::npos) << r.out;
  r = run(fmt::format("tune --sweep {}", dir.string()));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("is a folder"), std::string::npos) << r.out;
}

TEST_F(CliArgs, EmitCubinsIntoAnUnwritableFolderFailsWithExit1) {
  std::ofstream(path("a_file")) << "x";  // a folder cannot be made under a file, even by root
  const CliRun r = run(fmt::format("compile --model openmoe-8b --cache {} --emit-cubins {}", path("c.sqlite"),
                                   path("a_file/cubins")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("--emit-cubins"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(path("c.sqlite"))) << "the command failed before its work";
}

TEST_F(CliArgs, CacheLsOfAMistypedPathCreatesNothing) {
  const CliRun r = run(fmt::format("cache ls --cache {}", path("no/such/folder/samoyeds.sqlite")));
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("no such file"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(path("no"))) << "cache ls created a folder";
  const CliRun folder = run(fmt::format("cache ls --cache={}", dir.string()));
  EXPECT_EQ(folder.rc, 1) << folder.out;
  EXPECT_NE(folder.out.find("is a folder"), std::string::npos) << folder.out;
}

TEST_F(CliArgs, ModelFileErrorsNameTheFileOnce) {
  std::ofstream(path("m.yaml")) << "name: x\nhidden_size: 8\nffn_size: 8\nexperts: 4294967304\ntop_k: 2\n";
  const CliRun r = run(fmt::format("compile --model {}", path("m.yaml")));
  EXPECT_EQ(r.rc, 2) << r.out;
  const std::string where = path("m.yaml") + ":4: 'experts'";
  const size_t at = r.out.find(where);
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(path("m.yaml"), at + 1), std::string::npos) << "named twice: " << r.out;
}

TEST(Progress, ReportsAtEveryTenthAndAtTheEnd) {
  int lines = 0;
  for (long done = 1; done <= 100; ++done) lines += cli::at_a_tenth(done, 100);
  EXPECT_EQ(lines, 10);
  lines = 0;
  for (long done = 1; done <= 7; ++done) lines += cli::at_a_tenth(done, 7);
  EXPECT_EQ(lines, 7);  // fewer items than tenths: each one
  EXPECT_TRUE(cli::at_a_tenth(3, 3));
  EXPECT_NE(cli::eta_text(10.0, 5, 10).find("ETA 10s"), std::string::npos);
}

}  // namespace
}  // namespace samoyeds
