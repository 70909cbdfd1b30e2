// Epilogues: what happens to a finished f32 output element before it is
// stored. Pure functions of the staged accumulators (and, for the biased
// kinds, of the output row's bias), so a new epilogue never touches the main
// loop; the kinds without bias compile to what they did before biases existed.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

// In samoyeds::Epilogue's order (generator/ssmm_pipeline_source.cpp maps them).
enum EpilogueKind { kEpiNone = 0, kEpiSilu = 1, kEpiGatedSilu = 2, kEpiBias = 3, kEpiClampedSwiglu = 4 };

template <int EPI>
struct Epilogue;

template <>
struct Epilogue<kEpiNone> {
  static constexpr int kOperands = 1;
  static constexpr bool kBias = false;
  static __device__ __forceinline__ float apply(float a, float, const SsmmArgs&) { return a; }
};
template <>
struct Epilogue<kEpiSilu> {
  static constexpr int kOperands = 1;
  static constexpr bool kBias = false;
  static __device__ __forceinline__ float apply(float a, float, const SsmmArgs&) { return silu(a); }
};
// H = silu(X W1^T) * (X W3^T): operand 0 is the gate projection, 1 the up projection.
template <>
struct Epilogue<kEpiGatedSilu> {
  static constexpr int kOperands = 2;
  static constexpr bool kBias = false;
  static __device__ __forceinline__ float apply(float gate, float up, const SsmmArgs&) { return silu(gate) * up; }
};
// Y = X W^T + b (gpt-oss's down projection, before the routing weight).
template <>
struct Epilogue<kEpiBias> {
  static constexpr int kOperands = 1;
  static constexpr bool kBias = true;
  static __device__ __forceinline__ float apply(float a, float, const SsmmArgs&) { return a; }
};
// gpt-oss's experts: g = X W1^T + b1, u = X W3^T + b3, both clamped at
// act_limit (g from above only), then (u + 1) * g * sigmoid(act_alpha * g).
template <>
struct Epilogue<kEpiClampedSwiglu> {
  static constexpr int kOperands = 2;
  static constexpr bool kBias = true;
  // Clamped by comparison, not fminf/fmaxf: a NaN stays NaN (as torch.clamp
  // keeps it) instead of becoming the limit, so a poisoned input shows.
  static __device__ __forceinline__ float apply(float gate, float up, const SsmmArgs& a) {
    const float L = a.act_limit;
    const float g = gate > L ? L : gate, u = up > L ? L : (up < -L ? -L : up);
    return (u + 1.0f) * g / (1.0f + __expf(-a.act_alpha * g));
  }
};

// The epilogue of original output row `row` (biases added first where the
// kind has them). Rows past m are never stored: their bias read is clamped
// into the array instead of predicated (no extra registers in the store loops).
template <int EPI>
__device__ __forceinline__ float epilogue_at(const SsmmArgs& a, int row, float x0, float x1) {
  if constexpr (Epilogue<EPI>::kBias) {
    const int r = row < a.m ? row : a.m - 1;
    x0 += __ldg(a.bias[0] + r);
    if constexpr (Epilogue<EPI>::kOperands > 1) x1 += __ldg(a.bias[1] + r);
  }
  return Epilogue<EPI>::apply(x0, x1, a);
}

}  // namespace samoyeds
