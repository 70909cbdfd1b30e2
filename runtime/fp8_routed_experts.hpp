// A MoE layer's routed experts in FP8 (MoeLayerSpec::fp8_experts,
// docs/fp8.md): E4M3 weights with 128 x 128 block scales, all experts of a
// projection in one grouped launch of the FP8 kernel. The routed tokens are
// gathered and quantized per 1 x 128 group in one pass; the gated
// activation h is written in bf16 and quantized by a pass of its own (the
// gated epilogue does not write FP8 yet).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "backends/wgmma_sp/fp8_projection.hpp"
#include "generator/generated_kernel.hpp"
#include "runtime/fp8_weights.hpp"
#include "samoyeds/kernel_runtime.hpp"

namespace samoyeds {

class Fp8RoutedExperts {
 public:
  // w1, w3 [ffn, hidden], w2 [hidden, ffn] per expert, one shape and pattern each.
  Fp8RoutedExperts(const std::vector<PackedFp8Weights>& w1, const std::vector<PackedFp8Weights>& w3,
                   const std::vector<PackedFp8Weights>& w2);
  int64_t weight_bytes() const;
  // The FP8 projection kernels forward() loads, by the keys it loads them
  // under, and their source: `samoyeds compile --dtype e4m3` builds them
  // into the cache ahead of time.
  struct Kernel {
    std::string key;
    Fp8Tile tile;
  };
  static std::vector<Kernel> kernels();
  static GeneratedKernel generate(const Fp8Tile& tile);
  // Scratch for `rows` list rows: their codes and transposed scales.
  static size_t scratch_bytes(int64_t rows, int64_t hidden, int64_t ffn);
  // For list row i < rows (expert e's rows are offsets[e] .. offsets[e+1]-1):
  //   h[i] = silu(x[list_token[i]] W1^T) * (x[list_token[i]] W3^T)   [rows, ffn] bf16
  //   z[i] = list_weight[i] * (h[i] W2^T)                             [rows, hidden] bf16
  // x [x_rows, hidden] bf16. Enqueued on `stream`; no host synchronization.
  void forward(KernelRuntime& rt, const void* x, int64_t x_rows, const int32_t* list_token, const int32_t* offsets,
               const float* list_weight, int64_t rows, void* h, void* z, void* scratch, void* stream,
               int* error_flag) const;

 private:
  int experts_ = 0;
  int64_t hidden_ = 0, ffn_ = 0;
  Fp8DeviceWeights w1_, w3_, w2_;
};

}  // namespace samoyeds
