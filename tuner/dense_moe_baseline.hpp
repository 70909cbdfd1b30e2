// Dense MoE baselines on the same routing, for `samoyeds run-moe`: the three
// GEMMs of every expert with cuBLAS, one expert after another (the classic
// per-expert loop, each shape with the fastest of cublasLt's candidates) or
// all experts at once with cublasGemmGroupedBatchedEx.
// Shared experts take every token, as in the layer. GEMMs only: the routing,
// the activation and the combine are left out, so the dense time is a lower
// bound and our ratio against it is conservative.
// Weights on the device (DenseExpert::on_device) are used where they are,
// not copied: the caller keeps them alive (bench/moe_peers.py shares one
// copy with PyTorch's peer).
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "samoyeds/device.hpp"
#include "samoyeds/moe_layer.hpp"
#include "samoyeds/moe_reference.hpp"

namespace samoyeds::tuning {

class DenseMoeBaseline {
 public:
  // Uploads host weights once (DenseExpert::ffn 0 = `ffn`).
  DenseMoeBaseline(DType dtype, int64_t hidden, int64_t ffn, const std::vector<DenseExpert>& routed,
                   const std::vector<DenseExpert>& shared);
  ~DenseMoeBaseline();
  int64_t hidden() const;
  // Gathers each expert's tokens of x [tokens, hidden] (host) for `routing`.
  void set_tokens(const std::vector<uint16_t>& x, const Routing& routing);
  // One run of the GEMMs, enqueued on `stream`, for a caller that times it.
  void enqueue_loop(void* stream);
  void enqueue_grouped(void* stream);
  // Median ms of runs back to back (tuner/timing.hpp).
  double loop_ms(void* stream);
  double grouped_ms(void* stream);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samoyeds::tuning
