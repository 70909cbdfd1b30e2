// The autotuner: for a kernel spec and a grid of token buckets, enumerate the
// valid configs of every backend, compile them in parallel, let only candidates whose
// output matches the reference compete, time the survivors and record as
// each bucket's winner the fastest one whose output also matches at that
// bucket on the real shape, with the runner-ups and the baseline measured
// beside it, and what was verified.
//
// The tuner knows nothing about PTX or devices: it talks to a CandidateRunner
// (compile / verify / time). tuner/op_runner.hpp is the real one;
// tests inject a fake.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cache/record_store.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds {

class CandidateRunner {
 public:
  virtual ~CandidateRunner() = default;
  virtual DeviceFingerprint device() = 0;
  // Compile and load; throws Error on failure. Called from several threads.
  virtual void prepare(const KernelSpec& spec, const TileConfig& config) = 0;
  // Output against the reference on fresh data; false (with why) = wrong answer.
  virtual bool verify(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* why) = 0;
  // The same check on the spec's own shape at a bucket's token count,
  // through the launch dispatch takes there (grouped over the spec's
  // experts, token rows gathered or in order as the config reads them,
  // persistent blocks over as many tiles as the shape has); sampled output
  // rows are enough. *path says which launch ran.
  virtual bool verify_at_bucket(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* path,
                                std::string* why) = 0;
  // Median time of one launch, ms.
  virtual double time_ms(const KernelSpec& spec, const TileConfig& config, int64_t tokens) = 0;
  // The dense baseline (cuBLAS) on the same tokens, ms.
  virtual double baseline_ms(const KernelSpec& spec, int64_t tokens) = 0;
};

struct TuneOptions {
  std::vector<int64_t> buckets = default_token_buckets();
  // Which configs compete: every valid one of each backend's search space;
  // at each bucket, each backend's untuned default for that bucket (what a
  // user gets without tuning); or the named ones (text names).
  enum class Candidates { SearchSpace, Defaults, Named };
  Candidates candidates = Candidates::SearchSpace;
  std::vector<std::string> named;
  // Backends whose search spaces compete; each bucket's record keeps the
  // winner's backend. Those the arch lacks contribute nothing.
  std::vector<Backend> backends = all_backends();
  int jobs = 0;          // parallel compiles; 0 = hardware threads
  int max_configs = 0;   // 0 = the whole search space
  int retime_top = 3;    // candidates of each backend re-timed before a winner is picked
  int runner_ups = 3;    // runner-up times kept in the record
};

// How the tuner reports: lines (winners, skipped candidates) and progress
// (phase, done, total); the CLI draws a bar on a terminal, plain lines elsewhere.
struct TuneLog {
  std::function<void(const std::string&)> line = [](const std::string&) {};
  std::function<void(const std::string& phase, int done, int total)> progress = [](const std::string&, int, int) {};
  // Every candidate's first timing at a bucket (before the best are re-timed).
  std::function<void(const KernelSpec& candidate, const TileConfig& config, int64_t bucket, double ms)> timed =
      [](const KernelSpec&, const TileConfig&, int64_t, double) {};
};

// One candidate's time at a bucket (after re-timing, for the best of each backend).
struct TimedCandidate {
  KernelSpec spec;  // its backend
  TileConfig config;
  double ms = 0.0;
};

struct TuneReport {
  std::vector<TuningRecord> records;  // one per bucket (defaults and named: per bucket one ran at)
  // Per record (bucket): the re-timed candidates fastest first, then the
  // others by their quick pass.
  std::vector<std::vector<TimedCandidate>> timed;
  int candidates = 0;
  int compile_failures = 0;
  int wrong_answers = 0;
  double seconds = 0.0;
};

// store may be null: the records are then only reported (benchmarks).
TuneReport tune_spec(const KernelSpec& spec, CandidateRunner& runner, RecordStore* store, const TuneOptions& options,
                     const TuneLog& log);

}  // namespace samoyeds
