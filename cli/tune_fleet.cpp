#include "cli/tune_fleet.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#include <fmt/format.h>

#include "cli/work_counter.hpp"
#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"

extern char** environ;

namespace samoyeds::cli {
namespace {

std::string device_type(int ordinal) {
  const DriverApi& d = driver();
  CUdevice dev;
  check(d.cuDeviceGet(&dev, ordinal), "cuDeviceGet");
  char name[256] = {};
  check(d.cuDeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
  int major = 0, minor = 0;
  check(d.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev), "attribute");
  check(d.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev), "attribute");
  return fmt::format("{} (sm_{}{})", name, major, minor);
}

// Ordinal g of this process as the worker's CUDA_VISIBLE_DEVICES: the g-th
// entry of the caller's own list where it set one.
std::string visible_device(int g) {
  const char* own = std::getenv("CUDA_VISIBLE_DEVICES");
  if (!own || !*own) return std::to_string(g);
  std::vector<std::string> entries;
  std::stringstream in(own);
  for (std::string e; std::getline(in, e, ',');) entries.push_back(e);
  return size_t(g) < entries.size() ? entries[size_t(g)] : std::to_string(g);
}

}  // namespace

std::vector<int> parse_gpu_list(const std::string& text) {
  int count = 0;
  check(driver().cuDeviceGetCount(&count), "cuDeviceGetCount");
  std::vector<int> gpus;
  if (text == "all") {
    for (int g = 0; g < count; ++g) gpus.push_back(g);
  } else {
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');) {
      char* end = nullptr;
      const long g = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || g < 0 || g >= count)
        throw Error(ErrorCode::InvalidArgument,
                    fmt::format("--gpus {}: '{}' is not a GPU of this machine (0 to {})", text, item, count - 1));
      if (std::find(gpus.begin(), gpus.end(), int(g)) != gpus.end())
        throw Error(ErrorCode::InvalidArgument, fmt::format("--gpus {}: GPU {} twice", text, g));
      gpus.push_back(int(g));
    }
  }
  if (gpus.empty()) throw Error(ErrorCode::InvalidArgument, fmt::format("--gpus {}: no GPU", text));
  const std::string first = device_type(gpus[0]);
  for (int g : gpus)
    if (device_type(g) != first)
      throw Error(ErrorCode::Unsupported, fmt::format("--gpus: GPU {} is {}, GPU {} is {}: records are kept per GPU "
                                                      "type, so tune each type in a run of its own",
                                                      g, device_type(g), gpus[0], first));
  return gpus;
}

namespace {

// The workers' pids, for the signal handler: SIGINT or SIGTERM to this
// process is passed on to them, and the wait below still reaps them.
constexpr int kMaxWorkers = 1024;
volatile sig_atomic_t g_worker_count = 0;
pid_t g_workers[kMaxWorkers];

void forward_signal(int sig) {
  for (int i = 0; i < g_worker_count; ++i) ::kill(g_workers[i], sig);
}

int reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace

int run_tune_fleet(const std::vector<std::string>& args, const std::vector<int>& gpus, const std::string& cache_path,
                   int jobs_per_worker) {
  const auto start = std::chrono::steady_clock::now();
  if (gpus.size() > size_t(kMaxWorkers)) throw Error(ErrorCode::InvalidArgument, "--gpus: too many GPUs");
  // The counter and the workers' output in a folder of their own, removed at the end.
  std::string dir = (std::filesystem::temp_directory_path() / "samoyeds-tune-XXXXXX").string();
  if (!::mkdtemp(dir.data())) throw Error(ErrorCode::IoError, "--gpus: cannot make a folder under " + std::filesystem::temp_directory_path().string());
  const std::string queue = dir + "/queue";
  WorkCounter::create(queue);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("CUDA_VISIBLE_DEVICES=", 0) != 0) env.push_back(*e);
  std::string listed;
  for (int g : gpus) listed += (listed.empty() ? "" : ", ") + std::to_string(g);
  fmt::print("samoyeds tune: {} worker processes, one per GPU ({}), {} compile jobs each, into {}\n", gpus.size(),
             listed, jobs_per_worker, cache_path);
  std::fflush(stdout);
  struct Worker {
    int gpu;
    pid_t pid;
    std::string log;
  };
  std::vector<Worker> workers;
  struct sigaction forward {}, old_int {}, old_term {};
  forward.sa_handler = forward_signal;
  sigemptyset(&forward.sa_mask);
  ::sigaction(SIGINT, &forward, &old_int);
  ::sigaction(SIGTERM, &forward, &old_term);
  std::string spawn_error;
  for (int g : gpus) {
    // The caller's arguments, its --jobs replaced by each worker's share.
    std::vector<std::string> argv = {"samoyeds", "tune"};
    for (size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--jobs") {
        ++i;
        continue;
      }
      if (args[i].rfind("--jobs=", 0) != 0) argv.push_back(args[i]);
    }
    argv.insert(argv.end(), {"--worker-queue", queue, "--jobs", std::to_string(jobs_per_worker)});
    std::vector<char*> cargv, cenv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    std::vector<std::string> wenv = env;
    wenv.push_back("CUDA_VISIBLE_DEVICES=" + visible_device(g));
    for (auto& e : wenv) cenv.push_back(e.data());
    cenv.push_back(nullptr);
    Worker w{g, 0, fmt::format("{}/gpu{}.log", dir, g)};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, w.log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int rc = posix_spawn(&w.pid, "/proc/self/exe", &actions, nullptr, cargv.data(), cenv.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      spawn_error = fmt::format("--gpus: cannot start the worker for GPU {}: {}", g, std::strerror(rc));
      forward_signal(SIGTERM);
      break;
    }
    workers.push_back(w);
    g_workers[g_worker_count] = w.pid;
    g_worker_count = g_worker_count + 1;
  }
  int failed = 0;
  for (const Worker& w : workers) {
    const int code = reap(w.pid);
    failed += code != 0;
    fmt::print("== GPU {} (CUDA_VISIBLE_DEVICES={}): exit {}\n", w.gpu, visible_device(w.gpu), code);
    std::ifstream log(w.log);
    fmt::print("{}", std::string(std::istreambuf_iterator<char>(log), {}));
  }
  g_worker_count = 0;
  ::sigaction(SIGINT, &old_int, nullptr);
  ::sigaction(SIGTERM, &old_term, nullptr);
  std::filesystem::remove_all(dir);
  if (!spawn_error.empty()) throw Error(ErrorCode::IoError, spawn_error);
  fmt::print("{} of {} workers succeeded in {:.1f} s\n", workers.size() - size_t(failed), workers.size(),
             std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return failed ? 1 : 0;
}

void become_worker() {
  // A worker ends with its parent (which forwards signals while it waits).
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() == 1) std::_Exit(1);
}

}  // namespace samoyeds::cli
