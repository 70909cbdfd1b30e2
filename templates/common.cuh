// Basic types, 16-bit element conversions and small PTX helpers. No CUDA
// toolkit headers: NVRTC at run time needs nothing but these embedded files.
#pragma once

namespace samoyeds {

typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;
typedef unsigned long long u64;

template <int A, int B>
struct ConstMax {
  static constexpr int value = A > B ? A : B;
};

// std::conditional, which NVRTC's headers do not give us.
template <bool C, class A, class B>
struct ConstIf {
  typedef A type;
};
template <class A, class B>
struct ConstIf<false, A, B> {
  typedef B type;
};

struct F16 {};
struct BF16 {};
// E4M3 operands (weights and tokens, each with its scales) and bfloat16
// outputs: the FP8 expert projection (docs/fp8.md).
struct E4M3 {};

template <class T>
struct Elem;

// kOperandBytes: bytes per operand value (shared-memory tiles, k per MMA
// step); pack2: two outputs into one 32-bit word of the output type.
template <>
struct Elem<F16> {
  static constexpr const char* mma_type = "f16";
  static constexpr int kOperandBytes = 2;
  // cvt packs its first source into the upper half.
  static __device__ __forceinline__ u32 pack2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
};

template <>
struct Elem<BF16> {
  static constexpr const char* mma_type = "bf16";
  static constexpr int kOperandBytes = 2;
  static __device__ __forceinline__ u32 pack2(float lo, float hi) {
    u32 r;
    asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
  }
};

template <>
struct Elem<E4M3> {
  static constexpr const char* mma_type = "e4m3";
  static constexpr int kOperandBytes = 1;
  static __device__ __forceinline__ u32 pack2(float lo, float hi) { return Elem<BF16>::pack2(lo, hi); }
};

// A 16-bit value of type T as a float (exact).
template <class T>
struct ToFloat;
template <>
struct ToFloat<F16> {
  static __device__ __forceinline__ float run(u16 v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v));
    return f;
  }
};
template <>
struct ToFloat<BF16> {
  static __device__ __forceinline__ float run(u16 v) {
    float f;
    asm("mov.b32 %0, %1;" : "=f"(f) : "r"(u32(v) << 16));
    return f;
  }
};

__device__ __forceinline__ u32 smem_addr(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}

// Stores to shared memory by 32-bit address: the epilogue's staging writes
// keep one register per address, not a 64-bit generic pointer's two.
__device__ __forceinline__ void st_shared_u32(u32 addr, u32 v) {
  asm volatile("st.shared.u32 [%0], %1;" ::"r"(addr), "r"(v) : "memory");
}
__device__ __forceinline__ void st_shared_u16(u32 addr, u16 v) {
  asm volatile("st.shared.u16 [%0], %1;" ::"r"(addr), "h"(v) : "memory");
}

__device__ __forceinline__ void global_or(int* p, int bits) {
  asm volatile("red.global.or.b32 [%0], %1;" ::"l"(p), "r"(bits) : "memory");
}

// A flag between blocks of one launch: the writer's earlier stores (its own,
// and those of threads it synchronized with) become visible, GPU-wide, to
// whoever sees the flag grow; the reader's loads after seeing it observe
// them. Loads of what other blocks wrote go through L2 (.cg): L1 is not
// coherent across SMs.
__device__ __forceinline__ void global_add_release(int* p, int v) {
  asm volatile("fence.acq_rel.gpu; red.relaxed.gpu.global.add.s32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ int global_load_acquire(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ float global_load_l2(const float* p) {
  float v;
  asm volatile("ld.global.cg.f32 %0, [%1];" : "=f"(v) : "l"(p) : "memory");
  return v;
}

// First thing every kernel runs, in every block, before any early return
// (core/kernel_launch.hpp): wait until the previous kernel in the stream
// has completed and its writes are visible. Unconditional in every block, so
// that completion stays ordered down the stream: a kernel completes only
// after all its blocks waited. No griddepcontrol.launch_dependents: the
// next kernel may start as each block exits. Triggering it here instead
// (its blocks resident early, waiting) made the H200's MoE layers 4-5%
// slower at T = 4096 (docs/perf-log.md, 2026-11-29, 7af0259). A no-op when
// the launch did not ask for programmatic dependence, and before sm_90.
__device__ __forceinline__ void grid_dependency_begin() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// The fast division (2 ulp, no IEEE slow path): the kernels run without
// fast-math, and x / y cost a reciprocal plus a range check and a call per
// element, which a gated epilogue of 16K elements per tile felt. For x below
// about -88 the divisor is inf and the result 0 (true value below 1e-36).
__device__ __forceinline__ float silu(float x) { return __fdividef(x, 1.0f + __expf(-x)); }

}  // namespace samoyeds
