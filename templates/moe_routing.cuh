// MoE routing on the GPU with no host round trip and no floating-point
// atomics: each token's top-k experts by its model's routing method
// (route_topk.cuh), then per-expert token lists by an ordered
// counting sort (counts and writes in token order), so every run builds the
// same lists, and a combine that gathers each token's expert outputs in slot
// order (same bits every run).
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"
#include "samoyeds/route_topk.cuh"
#include "samoyeds/scatter_add_rows.cuh"

namespace samoyeds {


// Token lists: an ordered counting sort of the n = tokens * top_k entries by
// expert id, in one launch of experts x splits blocks as large as a block
// can be (1024 threads: utility_kernel_threads, the kThreads below).
// Block (e, s) counts, over every entry, the valid ids below e (where e's
// list starts) and e's entries before its split, then writes e's entries of
// split s. Every load is independent of the last, so a block waits about
// one memory latency per chunk, not one per entry; the splits give the grid
// enough blocks to fill the GPU when there are few experts
// (launch_token_lists in runtime/utility_launch.cpp picks them).

__device__ __forceinline__ bool bad_expert_id(int id, int experts) { return id < 0 || id >= experts; }

// Block-wide sums. Within a warp a shuffle scan (prefix) or one redux.sync
// (sm_80+; sum); then every warp reads the warps' sums a lane each and adds
// them with redux.sync, so no thread loops over the warps. Every thread of
// the block must call them; the scratch arrays are free again when they
// return.
template <int kThreads>
__device__ __forceinline__ int block_exclusive_sum(int v, int (&warp_sums)[kThreads / 32], int& total) {
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "at most 32 warps: a lane per warp");
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  const int s = lane < kThreads / 32 ? warp_sums[lane] : 0;
  total = __reduce_add_sync(0xffffffffu, s);
  const int before = __reduce_add_sync(0xffffffffu, lane < warp ? s : 0);
  __syncthreads();
  return before + incl - v;
}

// v[j] = the block's sum of v[j], for N values at once (one barrier pair).
template <int kThreads, int N>
__device__ __forceinline__ void block_sums(int (&v)[N], int (&scratch)[N][kThreads / 32]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
#pragma unroll
  for (int j = 0; j < N; ++j) {
    const int w = __reduce_add_sync(0xffffffffu, v[j]);
    if (lane == 0) scratch[j][warp] = w;
  }
  __syncthreads();
#pragma unroll
  for (int j = 0; j < N; ++j) v[j] = __reduce_add_sync(0xffffffffu, lane < kThreads / 32 ? scratch[j][lane] : 0);
  __syncthreads();
}

// Entries [begin, end) of split s of n entries in `splits`.
__device__ __forceinline__ int split_edge(int n, int s, int splits) {
  return int(static_cast<long long>(n) * s / splits);
}

// Block (e, s): expert e's entries of split s, in (token, slot) order. The
// block writes offsets[e] (split 0) and, for the last expert,
// offsets[experts]; the lists and the positions of its entries; and, for
// expert 0, position -1 for the split's ids out of range (in no list), so
// every output is written by exactly one block. A chunk of the write gives
// each warp kListPerLane x 32 consecutive entries; a ballot per 32 of them
// ranks the warp's own, a block scan of the warps' totals places the warps.
constexpr int kListPerLane = 8;
template <int kThreads>
__device__ __forceinline__ void build_expert_list(const TokenListArgs& a) {
  __shared__ int warp_sums[kThreads / 32];
  __shared__ int count_sums[3][kThreads / 32];
  const int e = blockIdx.x, n = a.tokens * a.top_k;
  const int begin = split_edge(n, blockIdx.y, gridDim.y), end = split_edge(n, blockIdx.y + 1, gridDim.y);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  // Counts over every entry. An id below e that is not negative is valid.
  int below = 0, earlier = 0, mine = 0;
  bool bad = false;
#pragma unroll 8
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int id = a.topk_ids[i];
    below += unsigned(id) < unsigned(e);
    earlier += id == e && i < begin;
    mine += id == e;
    bad |= bad_expert_id(id, a.experts);
  }
  if (e == 0 && blockIdx.y == 0 && bad && a.error_flag) global_or(a.error_flag, kErrorBadTokenId);
  int sums[3] = {below, earlier, mine};
  block_sums<kThreads>(sums, count_sums);
  const int offset = sums[0];
  int base = offset + sums[1];
  if (threadIdx.x == 0 && blockIdx.y == 0) {
    a.offsets[e] = offset;
    if (e == a.experts - 1) a.offsets[a.experts] = offset + sums[2];
  }
  const u32 below_lane = (1u << lane) - 1u;
  for (int i0 = begin; i0 < end; i0 += kThreads * kListPerLane) {
    const int first = i0 + warp * 32 * kListPerLane + lane;
    u32 mask[kListPerLane];
    float weight[kListPerLane];  // loaded with the ids: no dependent load after the scan
    int warp_total = 0;
#pragma unroll
    for (int u = 0; u < kListPerLane; ++u) {
      const int i = first + u * 32;
      const int id = i < end ? a.topk_ids[i] : 0;
      weight[u] = i < end ? a.topk_weights[i] : 0.0f;
      mask[u] = __ballot_sync(0xffffffffu, i < end && id == e);
      warp_total += __popc(mask[u]);
      if (e == 0 && i < end && bad_expert_id(id, a.experts)) a.position[i] = -1;
    }
    int chunk_total;
    const int warp_before = block_exclusive_sum<kThreads>(lane == 0 ? warp_total : 0, warp_sums, chunk_total);
    int pos = base + __shfl_sync(0xffffffffu, warp_before, 0);
#pragma unroll
    for (int u = 0; u < kListPerLane; ++u) {
      if (mask[u] >> lane & 1u) {
        const int i = first + u * 32, p = pos + __popc(mask[u] & below_lane);
        a.list_token[p] = i / a.top_k;
        a.list_weight[p] = weight[u];
        a.position[i] = p;
      }
      pos += __popc(mask[u]);
    }
    base += chunk_total;
  }
}


// y[t, c] = sum_j z[position[t, j], c] (+ shared[t, c]), j in order. A
// thread takes 8 columns with 16-byte loads (MoeLayerSpec::validate makes
// hidden a multiple of 8, so every row is 16-byte aligned), and the z loads
// of kCombineBatch slots are issued together.
constexpr int kCombineBatch = 4;
template <class T>
__device__ __forceinline__ void add_row8(float (&acc)[8], const uint4& v) {
  const u32 w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int q = 0; q < 8; ++q) acc[q] += ToFloat<T>::run(u16(w[q / 2] >> (16 * (q % 2))));
}
template <class T>
__device__ __forceinline__ void moe_combine(const CombineArgs& a) {
  const int t = blockIdx.y;
  const int c = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
  // The shared gate: every block of the token takes the whole dot product
  // (hidden x 2 x 2 bytes, from L2), cheaper than a launch of its own.
  float gate = 1.0f;
  if (a.shared_gate) {
    __shared__ float warp_dots[32];
    float d = 0.0f;
    for (int i = threadIdx.x * 8; i < a.hidden; i += blockDim.x * 8) {
      float xv[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, gv[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
      add_row8<T>(xv, *reinterpret_cast<const uint4*>(a.x + u64(t) * a.hidden + i));
      add_row8<T>(gv, *reinterpret_cast<const uint4*>(a.shared_gate + i));
#pragma unroll
      for (int q = 0; q < 8; ++q) d += xv[q] * gv[q];
    }
    d = warp_sum(d);
    if (threadIdx.x % 32 == 0) warp_dots[threadIdx.x / 32] = d;
    __syncthreads();
    d = threadIdx.x % 32 < blockDim.x / 32 ? warp_dots[threadIdx.x % 32] : 0.0f;
    gate = 1.0f / (1.0f + expf(-warp_sum(d)));
  }
  if (c >= a.hidden || t >= a.tokens) return;
  float acc[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) acc[q] = 0.0f;
  if (a.shared) {
    add_row8<T>(acc, *reinterpret_cast<const uint4*>(a.shared + u64(t) * a.hidden + c));
#pragma unroll
    for (int q = 0; q < 8; ++q) acc[q] *= gate;
  }
  for (int j0 = 0; j0 < a.top_k; j0 += kCombineBatch) {
    uint4 v[kCombineBatch];
    int pos[kCombineBatch];
#pragma unroll
    for (int b = 0; b < kCombineBatch; ++b) {
      pos[b] = j0 + b < a.top_k ? a.position[u64(t) * a.top_k + j0 + b] : -1;
      if (pos[b] >= 0) v[b] = *reinterpret_cast<const uint4*>(a.z + u64(pos[b]) * a.hidden + c);
    }
#pragma unroll
    for (int b = 0; b < kCombineBatch; ++b)
      if (pos[b] >= 0) add_row8<T>(acc, v[b]);
  }
  uint4 out;
  out.x = Elem<T>::pack2(acc[0], acc[1]);
  out.y = Elem<T>::pack2(acc[2], acc[3]);
  out.z = Elem<T>::pack2(acc[4], acc[5]);
  out.w = Elem<T>::pack2(acc[6], acc[7]);
  *reinterpret_cast<uint4*>(a.y + u64(t) * a.hidden + c) = out;
}

}  // namespace samoyeds
