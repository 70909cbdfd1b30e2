// samoyeds: one binary, one subcommand per job. Exit codes: 0 success,
// 1 the job failed, 2 usage error.
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cache/sqlite_store.hpp"
#include "cli/cli_options.hpp"
#include "core/cuda_driver.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds::cli {
int cmd_compile(const std::vector<std::string>& args);
int cmd_tune(const std::vector<std::string>& args);
int cmd_cache(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_run_moe(const std::vector<std::string>& args);
int cmd_pack(const std::vector<std::string>& args);

std::string version_text() {
  std::string driver = "no driver";
  try {
    int v = 0;
    if (samoyeds::driver().cuDriverGetVersion(&v) == CUDA_SUCCESS)
      driver = fmt::format("driver {}.{}", v / 1000, v % 1000 / 10);
  } catch (const samoyeds::Error&) {
  }
  return fmt::format("samoyeds {} (NVRTC {}, {}, cache schema {})", samoyeds::library_version(),
                     samoyeds::nvrtc_version(), driver, samoyeds::SqliteStore::kSchemaVersion);
}
}

static void usage(std::FILE* to) {
  std::fputs(
      "usage: samoyeds <command> [options]\n"
      "\n"
      "commands:\n"
      "  compile   generate and NVRTC-compile a model's expert kernels into the cache (no GPU needed)\n"
      "  tune      tune a model's (or a YAML sweep's) expert kernels on this GPU into the cache\n"
      "  cache     ls | export | import | verify | prune the cache file\n"
      "  bench     time a model's kernels as dispatch picks them (tuned or heuristic) against cuBLAS\n"
      "  run-moe   build a model's whole MoE layer with random weights, check it, time it against dense cuBLAS\n"
      "  pack      prune and pack a Hugging Face checkpoint's expert weights into a packed checkpoint\n"
      "\n"
      "Run 'samoyeds <command> --help' for a command's options; 'samoyeds --version' for the versions.\n"
      "Environment: SAMOYEDS_CACHE_DIR (cache folder), SAMOYEDS_LOG (error|warn|info|debug).\n", to);
}

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::string(argv[1]) == "--version" || std::string(argv[1]) == "-V") {
    std::printf("%s\n", samoyeds::cli::version_text().c_str());
    return 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (cmd == "compile") return samoyeds::cli::cmd_compile(rest);
    if (cmd == "tune") return samoyeds::cli::cmd_tune(rest);
    if (cmd == "cache") return samoyeds::cli::cmd_cache(rest);
    if (cmd == "bench") return samoyeds::cli::cmd_bench(rest);
    if (cmd == "run-moe") return samoyeds::cli::cmd_run_moe(rest);
    if (cmd == "pack") return samoyeds::cli::cmd_pack(rest);
    std::fprintf(stderr, "samoyeds: unknown command '%s'\n", cmd.c_str());
    usage(stderr);
    return 2;
  } catch (const samoyeds::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return e.code() == samoyeds::ErrorCode::InvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "samoyeds: %s\n", e.what());
    return 1;
  }
}
