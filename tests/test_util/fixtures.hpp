// Fixtures several test files share: a fresh database path, an H200
// fingerprint, Mixtral's specs, a tuning record, a binary, a wgmma_sp config by name.
#pragma once
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <string>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "backends/backend.hpp"
#include "backends/wgmma_sp/wgmma_sp_config.hpp"
#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"

namespace samoyeds::test {

// A database path in a directory that does not exist yet.
inline std::string fresh_db(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / fmt::format("samoyeds_db_{}_{}", name, getpid());
  std::filesystem::remove_all(dir);
  return (dir / "samoyeds.sqlite").string();
}

inline DeviceFingerprint h200() { return {"NVIDIA H200", 9, 0, 132, 13000, "13.0", library_version()}; }

// Mixtral's gated up-projection over 8 experts, 1:2 at 128 rows.
inline KernelSpec mixtral_gated_up() {
  KernelSpec s;
  s.op = Op::GatedUp;
  s.epilogue = Epilogue::GatedSilu;
  s.dtype = DType::bf16;
  s.m = 14336;
  s.k = 4096;
  s.sparsity = {128, 1, 2};
  s.experts = 8;
  return s;
}

// Mixtral's up-projection on sm_90a, one expert, no epilogue.
inline KernelSpec mixtral_ssmm() {
  KernelSpec s;
  s.op = Op::Ssmm;
  s.arch = "sm_90a";
  s.dtype = DType::bf16;
  s.m = 14336;
  s.k = 4096;
  s.sparsity = {128, 1, 2};
  return s;
}

inline TuningRecord record(int64_t bucket, TileConfig cfg, double ms, DeviceFingerprint dev = h200()) {
  TuningRecord r;
  r.key = TuningKey::of(dev, mixtral_gated_up(), bucket);
  r.config = cfg;
  r.time_ms = ms;
  r.runner_up_ms = {ms * 1.1, ms * 1.2};
  r.baseline_ms = ms * 1.5;
  r.verified_tokens = bucket;
  r.verified_path = "grouped launch over 8 experts";
  return r;
}

// The same as a cache tuned before records said what was verified holds it.
inline TuningRecord unverified(TuningRecord r) {
  r.verified_tokens = 0;
  r.verified_path.clear();
  return r;
}

// A binary of `bytes` bytes whose content follows from its key.
inline BinaryRecord blob_record(const std::string& key, size_t bytes) {
  BinaryRecord r;
  r.key = key;
  r.arch = "sm_90a";
  r.nvrtc = "13.0";
  r.library = "test";
  r.kernel_name = "k";
  r.description = "test blob " + key;
  r.blob.resize(bytes);
  for (size_t i = 0; i < bytes; ++i) r.blob[i] = char((i * 131 + key.size()) & 0xff);
  return r;
}

// A config by its text name, schedule suffixes as wgmma_sp names them.
inline WgmmaSpConfig wg(const std::string& text) { return WgmmaSpConfig::of(parse_config(text, Backend::WgmmaSp)); }

#ifdef SAMOYEDS_CLI_PATH
// The samoyeds command with `args` (shell words), its exit code and its
// stdout and stderr together.
struct CliRun {
  int rc;
  std::string out;
};
inline CliRun run_cli(const std::string& args) {
  std::string out;
  FILE* f = popen((std::string(SAMOYEDS_CLI_PATH) + " " + args + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
  return {WEXITSTATUS(pclose(f)), out};
}
#endif

}  // namespace samoyeds::test
