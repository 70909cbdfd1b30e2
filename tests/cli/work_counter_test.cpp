// The counter `samoyeds tune --gpus` hands projections out with: processes
// taking indices at once get each index exactly once.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/work_counter.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds::cli {
namespace {

namespace fs = std::filesystem;

TEST(WorkCounter, ProcessesTakingAtOnceGetEachIndexOnce) {
  const fs::path dir = fs::path(::testing::TempDir()) / fmt::format("samoyeds_counter_{}", getpid());
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "queue").string();
  WorkCounter::create(path);
  constexpr int kProcesses = 4, kTotal = 400;
  // The children start together: each waits for the pipe to close.
  int gate[2];
  ASSERT_EQ(pipe(gate), 0);
  std::vector<pid_t> children;
  for (int p = 0; p < kProcesses; ++p) {
    const pid_t pid = fork();
    if (pid == 0) {  // each child writes the indices it took, one per line
      close(gate[1]);
      char c;
      while (read(gate[0], &c, 1) > 0) {
      }
      try {
        std::ofstream out(dir / fmt::format("taken{}", p));
        const WorkCounter counter(path);
        for (int64_t i = counter.next(); i < kTotal; i = counter.next()) out << i << "\n";
        out.flush();
        _exit(out ? 0 : 1);
      } catch (...) {
        _exit(2);  // never back into the test runner
      }
    }
    if (pid > 0) children.push_back(pid);
  }
  close(gate[0]);
  close(gate[1]);
  EXPECT_EQ(children.size(), size_t(kProcesses)) << "fork failed";
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::multiset<int64_t> taken;
  int busy = 0;
  for (int p = 0; p < kProcesses; ++p) {
    std::ifstream in(dir / fmt::format("taken{}", p));
    int64_t n = 0, mine = 0;
    while (in >> n) taken.insert(n), ++mine;
    busy += mine > 0;
  }
  EXPECT_EQ(taken.size(), size_t(kTotal));
  for (int64_t i = 0; i < kTotal; ++i) EXPECT_EQ(taken.count(i), 1u) << "index " << i;
  EXPECT_GE(busy, 1);  // how many took part depends on the scheduler; the indices may not
  // A fresh create starts again at 0; a missing file is an error naming it.
  WorkCounter::create(path);
  EXPECT_EQ(WorkCounter(path).next(), 0);
  EXPECT_EQ(WorkCounter(path).next(), 1);
  try {
    WorkCounter((dir / "missing").string()).next();
    ADD_FAILURE() << "no error for a missing counter file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace samoyeds::cli
