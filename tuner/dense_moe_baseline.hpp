// Dense MoE baselines on the same routing, for `samoyeds run-moe`: the three
// GEMMs of every expert with cuBLAS, one expert after another (the classic
// per-expert loop) or all experts at once with cublasGemmGroupedBatchedEx.
// GEMMs only: the activation and the combine are left out, so the dense time
// is a lower bound and our ratio against it is conservative.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "samoyeds/device.hpp"
#include "samoyeds/moe_reference.hpp"

namespace samoyeds::tuning {

class DenseMoeBaseline {
 public:
  // experts: host weights per expert {w1 [ffn, hidden], w3 [ffn, hidden], w2 [hidden, ffn]};
  // x: host [tokens, hidden]; routing: who goes where.
  DenseMoeBaseline(DType dtype, int64_t hidden, int64_t ffn,
                   const std::vector<std::vector<const uint16_t*>>& experts, const std::vector<uint16_t>& x,
                   const Routing& routing);
  ~DenseMoeBaseline();
  double loop_ms(void* stream);
  double grouped_ms(void* stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samoyeds::tuning
