// Runs fn(i) in `count` real child processes at once (fork) and returns how
// many of them failed (threw or exited non-zero): for tests of several
// processes sharing one cache file.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <vector>

namespace samoyeds::test {

inline int run_in_processes(int count, const std::function<void(int)>& fn) {
  std::vector<pid_t> kids;
  int failed = 0;
  for (int i = 0; i < count; ++i) {
    const pid_t pid = fork();
    if (pid < 0) {
      ++failed;
      continue;
    }
    if (pid == 0) {
      int rc = 0;
      try {
        fn(i);
      } catch (...) {
        rc = 1;
      }
      _exit(rc);  // no atexit handlers, no gtest teardown in the child
    }
    kids.push_back(pid);
  }
  for (pid_t pid : kids) {
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  return failed;
}

}  // namespace samoyeds::test
