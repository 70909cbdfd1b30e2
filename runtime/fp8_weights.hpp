// FP8 weights and tokens on the device, as the FP8 projection reads them
// (backends/wgmma_sp/fp8_projection.hpp): the weights in the FP8 device
// layout with their block scales transposed ([k-block][16-row tile], so TMA
// brings a k-block's scales of a tile in one box), the tokens as E4M3 codes
// with their 1 x 128 group scales transposed ([group][token], rows of
// fp8_token_scale_ld tokens: a stage's scales of consecutive tokens lie
// together, one coalesced load by the kernel's producer threads).
#pragma once
#include <cstdint>
#include <vector>

#include "backends/wgmma_sp/fp8_projection.hpp"
#include "format/fp8_device_layout.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/kernel_runtime.hpp"

namespace samoyeds {

struct Fp8DeviceWeights {
  int64_t m = 0, k = 0, rows_pad = 0, k_phys = 0;
  DeviceBuffer values, meta, sel, scale_inv;
  static Fp8DeviceWeights upload(const PackedFp8Weights& packed);
  // Experts of one shape and pattern back to back, as a grouped launch's
  // maps see them: values, metadata and selectors expert after expert, the
  // scales [k-block][expert's 16-row tiles]. InvalidArgument if they differ.
  static Fp8DeviceWeights upload_experts(const std::vector<PackedFp8Weights>& experts);
  PackedFp8WeightView view() const { return {values.data(), meta.data(), sel.data(), scale_inv.data()}; }
};

// The call that multiplies n token rows (E4M3 codes [n, a.k], scales
// [ceil(k/128)][scale_ld]) by one operand of these weights, or two (gated:
// b), into y [n, a.m] bf16. Grouped, routing weights: set on the result.
Fp8ProjectionCall fp8_projection_call(const Fp8DeviceWeights& a, const Fp8DeviceWeights* b, const void* codes,
                                      const void* scale_inv, int64_t scale_ld, int64_t n, void* y);

// Floats per row of the transposed token scales of n tokens (16-byte rows).
inline int64_t fp8_token_scale_ld(int64_t n) { return (n + 3) / 4 * 4; }

struct Fp8DeviceTokens {
  int64_t n = 0, k = 0, scale_ld = 0;
  DeviceBuffer codes, scale_inv;
  // Throws InvalidArgument unless the tokens are scaled per 1 x 128 group.
  static Fp8DeviceTokens upload(const Fp8Weights& tokens);
  // On the GPU, from 16-bit tokens x [x_rows, k] on the device: rows ids[i]
  // (null: i) for i < n, as quantize_e4m3 rounds them; enqueued on `stream`.
  // An id out of range gives zeros and ORs kErrorBadTokenId into error_flag.
  static Fp8DeviceTokens quantize(KernelRuntime& rt, const void* x, int64_t x_rows, const int32_t* ids, int64_t n,
                                  int64_t k, DType dtype, void* stream, int* error_flag = nullptr);
};

}  // namespace samoyeds
