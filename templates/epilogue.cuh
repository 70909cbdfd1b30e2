// Epilogues: what happens to a finished f32 output element before it is
// stored. Pure functions of the staged accumulators, so a new epilogue never
// touches the main loop.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

enum EpilogueKind { kEpiNone = 0, kEpiSilu = 1, kEpiGatedSilu = 2 };

template <int EPI>
struct Epilogue;

template <>
struct Epilogue<kEpiNone> {
  static constexpr int kOperands = 1;
  static __device__ __forceinline__ float apply(float a, float) { return a; }
};
template <>
struct Epilogue<kEpiSilu> {
  static constexpr int kOperands = 1;
  static __device__ __forceinline__ float apply(float a, float) { return silu(a); }
};
// H = silu(X W1^T) * (X W3^T): operand 0 is the gate projection, 1 the up projection.
template <>
struct Epilogue<kEpiGatedSilu> {
  static constexpr int kOperands = 2;
  static __device__ __forceinline__ float apply(float gate, float up) { return silu(gate) * up; }
};

}  // namespace samoyeds
