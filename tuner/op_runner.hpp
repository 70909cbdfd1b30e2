// The one runner of the expert ops on a GPU, shared by the tuner, `samoyeds
// bench` and the benchmark executables: it prepares a spec's inputs, runs a
// candidate (spec's op and backend, a config) through the public ops,
// checks it against the float64 reference and times it (CUDA-event medians
// over weights rotated past L2), with cuBLAS and cuSPARSELt beside it.
// A grouped spec (spec.grouped, spec.experts experts) is tuned as MoeLayer
// launches it: every expert's weights, a batch of `tokens` tokens routed to
// top_k experts each (tuner/random_routing.hpp), one grouped launch; its
// baseline is cuBLAS expert by expert on the same routing.
#pragma once
#include <map>
#include <memory>
#include <mutex>

#include "samoyeds/kernel_runtime.hpp"
#include "tuner/autotuner.hpp"
#include "tuner/cublas_baseline.hpp"
#include "tuner/cusparselt_baseline.hpp"

namespace samoyeds {

class PackedExpertWeights;  // samoyeds/expert_ops.hpp
struct EpilogueData;        // op_runner.cpp: biases of the biased epilogues

class OpRunner final : public CandidateRunner {
 public:
  // max_tokens: the largest bucket that will be timed (sizes the buffers).
  // top_k: experts per token in the routing of grouped specs.
  OpRunner(KernelRuntime& rt, int64_t max_tokens, int top_k = 1);
  ~OpRunner() override;

  DeviceFingerprint device() override;
  void prepare(const KernelSpec& spec, const TileConfig& config) override;
  // On a small shape with partial row and token tiles: the kernels take the
  // shape at run time (it is not in their source), so a config that is right
  // there runs the same machine code on the real shape.
  bool verify(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* why) override;
  // On the timing data (the spec's shape, the bucket's routing, the launch
  // time_ms runs) into a poisoned output; sampled rows against float64.
  bool verify_at_bucket(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* path,
                        std::string* why) override;
  double time_ms(const KernelSpec& spec, const TileConfig& config, int64_t tokens) override;
  double baseline_ms(const KernelSpec& spec, int64_t tokens) override;
  // cuSPARSELt 2:4 on the same dense weights and gathered tokens (plan built
  // and algorithm searched once per shape); negative when the library is
  // absent (or the spec is grouped), with the reason in *why.
  double cusparselt_ms(const KernelSpec& spec, int64_t tokens, std::string* why);
  // Frees the device data prepared for `spec` (any backend): a benchmark
  // going through many shapes keeps one shape's at a time.
  void release(const KernelSpec& spec);

 private:
  struct Problem;
  struct Grouped;       // a grouped spec's weights and its routings, for timing
  struct GroupedCheck;  // small experts, a routing and their float64 reference, for checking
  struct SingleCheck;   // one small expert, gathered rows and their float64 reference, for checking
  SingleCheck& single_check(const KernelSpec& spec, int64_t tokens);
  Problem& problem(const KernelSpec& spec);
  Grouped& grouped(const KernelSpec& spec);
  GroupedCheck& grouped_check(const KernelSpec& spec, int64_t tokens);
  bool verify_grouped(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* why);
  void launch(const KernelSpec& spec, const TileConfig& config, Problem& p, int copy, int64_t tokens);
  // The one place a candidate runs (checked and timed alike): spec's op, its
  // backend and this config. w1 only for the gated op, p only for down.
  // x_in_order: x's rows ids[0..tokens) in order, which a config that reads
  // token tiles by TMA takes instead of gathering (as a call with rows in
  // order, e.g. a shared expert's, would give it).
  void run_candidate(const KernelSpec& spec, const TileConfig& config, const PackedExpertWeights& w0,
                     const PackedExpertWeights* w1, const void* x, int64_t x_rows, const int32_t* ids,
                     const void* x_in_order, const float* p, int64_t tokens, void* y, void* stream,
                     const EpilogueData& epi);

  KernelRuntime& rt_;
  int64_t max_tokens_;
  int top_k_;
  void* stream_ = nullptr;
  tuning::CublasBaseline cublas_;
  std::unique_ptr<tuning::CusparseLtBaseline> cusparselt_;
  std::string cusparselt_absent_;  // why it is absent, once looked for
  bool cusparselt_looked_ = false;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Problem>> problems_;
  std::map<std::string, std::unique_ptr<Grouped>> grouped_;
  std::map<std::string, std::unique_ptr<GroupedCheck>> checks_;
  std::map<std::string, std::unique_ptr<SingleCheck>> single_checks_;
};

}  // namespace samoyeds
