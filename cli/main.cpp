// samoyeds: one binary, one subcommand per job. Exit codes: 0 success,
// 1 the job failed, 2 usage error.
#include <cstdio>
#include <string>
#include <vector>

#include "samoyeds/error.hpp"

namespace samoyeds::cli {
int cmd_compile(const std::vector<std::string>& args);
int cmd_tune(const std::vector<std::string>& args);
int cmd_cache(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_run_moe(const std::vector<std::string>& args);
}

static void usage() {
  std::puts(
      "usage: samoyeds <command> [options]\n"
      "\n"
      "commands:\n"
      "  compile   generate and NVRTC-compile a model's expert kernels into the cache (no GPU needed)\n"
      "  tune      tune a model's (or a YAML sweep's) expert kernels on this GPU into the cache\n"
      "  cache     ls | export | import | verify | prune the cache file\n"
      "  bench     time a model's kernels as dispatch picks them (tuned or heuristic) against cuBLAS\n"
      "  run-moe   build a model's whole MoE layer with random weights, check it, time it against dense cuBLAS\n"
      "\n"
      "Run 'samoyeds <command> --help' for a command's options.\n"
      "Environment: SAMOYEDS_CACHE_DIR (cache folder), SAMOYEDS_LOG (error|warn|info|debug).");
}

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string cmd = argv[1];
  const std::vector<std::string> rest(argv + 2, argv + argc);
  try {
    if (cmd == "compile") return samoyeds::cli::cmd_compile(rest);
    if (cmd == "tune") return samoyeds::cli::cmd_tune(rest);
    if (cmd == "cache") return samoyeds::cli::cmd_cache(rest);
    if (cmd == "bench") return samoyeds::cli::cmd_bench(rest);
    if (cmd == "run-moe") return samoyeds::cli::cmd_run_moe(rest);
    std::fprintf(stderr, "samoyeds: unknown command '%s'\n", cmd.c_str());
    usage();
    return 2;
  } catch (const samoyeds::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return e.code() == samoyeds::ErrorCode::InvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "samoyeds: %s\n", e.what());
    return 1;
  }
}
