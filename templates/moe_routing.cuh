// MoE routing on the GPU with no host round trip and no floating-point
// atomics: softmax top-k per token, then per-expert token lists by an ordered
// counting sort (count, scan, write in token order), so every run builds the
// same lists, and a combine that gathers each token's expert outputs in slot
// order (same bits every run).
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"
#include "samoyeds/scatter_add_rows.cuh"

namespace samoyeds {


// One warp per token. Ties go to the lower expert id (as the reference).
// Lane j keeps round j's pick and probability in registers, so the rounds
// read back nothing from memory, and the results go out in one store a lane.
template <class T>
__device__ __forceinline__ void route_topk(const RouteArgs& a) {
  const int warps = blockDim.x / 32;
  const int t = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (t >= a.tokens) return;
  const unsigned short* row = a.logits + u64(t) * a.experts;
  float mx = -3.0e38f;
  for (int e = lane; e < a.experts; e += 32) mx = fmaxf(mx, ToFloat<T>::run(row[e]));
  for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
  float sum = 0.0f;
  for (int e = lane; e < a.experts; e += 32) sum += __expf(ToFloat<T>::run(row[e]) - mx);
  for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  float chosen_sum = 0.0f, my_p = 0.0f;
  int my_pick = -1;
  // Round j takes the best expert not taken in rounds 0..j-1.
  for (int j = 0; j < a.top_k; ++j) {
    float best = -3.0e38f;
    int best_e = 0x7fffffff;
    // The same trip count on every lane: the shuffles need the whole warp.
    for (int e0 = 0; e0 < a.experts; e0 += 32) {
      const int e = e0 + lane;
      bool taken = e >= a.experts;
      for (int q = 0; q < j; ++q) taken |= __shfl_sync(0xffffffffu, my_pick, q) == e;
      const float v = taken ? 0.0f : ToFloat<T>::run(row[e]);
      if (!taken && (v > best || (v == best && e < best_e))) {
        best = v;
        best_e = e;
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffffu, best, o);
      const int oe = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (ov > best || (ov == best && oe < best_e)) {
        best = ov;
        best_e = oe;
      }
    }
    const float p = __expf(best - mx) / sum;
    chosen_sum += p;
    if (lane == j) {
      my_pick = best_e;
      my_p = p;
    }
  }
  if (lane < a.top_k) {
    a.topk_ids[u64(t) * a.top_k + lane] = my_pick;
    a.topk_weights[u64(t) * a.top_k + lane] = a.renormalize ? my_p / chosen_sum : my_p;
  }
}


// Token lists: an ordered counting sort of the n = tokens * top_k entries by
// expert id, in three passes whose blocks are as large as a block can be
// (1024 threads: utility_kernel_threads, the kThreads below). Each walks
// the entries in chunks; every load is independent of the last, so a pass
// waits about one memory latency per chunk, not one per entry.

__device__ __forceinline__ bool bad_expert_id(int id, int experts) { return id < 0 || id >= experts; }

// Exclusive prefix sum of v over the block's threads in thread order, and the
// block's total. Every thread of the block must call it; warp_sums is free
// again when it returns.
template <int kThreads>
__device__ __forceinline__ int block_exclusive_sum(int v, int (&warp_sums)[kThreads / 32], int& total) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  int incl = v;
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += u;
  }
  if (lane == 31) warp_sums[warp] = incl;
  __syncthreads();
  int before = 0;
  total = 0;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) {
    const int s = warp_sums[w];
    before += w < warp ? s : 0;
    total += s;
  }
  __syncthreads();
  return before + incl - v;
}

// Pass 1, one block per expert: how many entries chose it. Block 0 also
// flags ids out of range.
template <int kThreads>
__device__ __forceinline__ void count_expert(const TokenListArgs& a) {
  __shared__ int warp_sums[kThreads / 32];
  const int e = blockIdx.x, n = a.tokens * a.top_k;
  int mine = 0;
  bool bad = false;
#pragma unroll 8
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int id = a.topk_ids[i];
    mine += id == e;
    bad |= bad_expert_id(id, a.experts);
  }
  if (e == 0 && bad && a.error_flag) global_or(a.error_flag, kErrorBadTokenId);
  int total;
  block_exclusive_sum<kThreads>(mine, warp_sums, total);
  if (threadIdx.x == 0) a.counts[e] = total;
}

// Pass 2, one block: offsets = exclusive prefix sum of the counts.
template <int kThreads>
__device__ __forceinline__ void scan_offsets(const TokenListArgs& a) {
  __shared__ int warp_sums[kThreads / 32];
  int run = 0;
  for (int e0 = 0; e0 < a.experts; e0 += kThreads) {
    const int e = e0 + threadIdx.x;
    int total;
    const int before = block_exclusive_sum<kThreads>(e < a.experts ? a.counts[e] : 0, warp_sums, total);
    if (e < a.experts) a.offsets[e] = run + before;
    run += total;
  }
  if (threadIdx.x == 0) a.offsets[a.experts] = run;
}

// Pass 3, one block per expert: write its entries in (token, slot) order.
// A chunk gives each warp kListPerLane x 32 consecutive entries; a ballot per
// 32 of them ranks the warp's own, a block scan of the warps' totals places
// the warps. Block 0 also marks entries with ids out of range as in no list
// (position -1), so every position is written by exactly one block.
constexpr int kListPerLane = 16;
template <int kThreads>
__device__ __forceinline__ void write_expert_list(const TokenListArgs& a) {
  __shared__ int warp_sums[kThreads / 32];
  const int e = blockIdx.x, n = a.tokens * a.top_k;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const u32 below = (1u << lane) - 1u;
  int base = a.offsets[e];
  for (int i0 = 0; i0 < n; i0 += kThreads * kListPerLane) {
    const int first = i0 + warp * 32 * kListPerLane + lane;
    u32 mask[kListPerLane];
    float weight[kListPerLane];  // loaded with the ids: no dependent load after the scan
    int warp_total = 0;
#pragma unroll
    for (int u = 0; u < kListPerLane; ++u) {
      const int i = first + u * 32;
      const int id = i < n ? a.topk_ids[i] : 0;
      weight[u] = i < n ? a.topk_weights[i] : 0.0f;
      mask[u] = __ballot_sync(0xffffffffu, i < n && id == e);
      warp_total += __popc(mask[u]);
      if (e == 0 && i < n && bad_expert_id(id, a.experts)) a.position[i] = -1;
    }
    int chunk_total;
    const int warp_before = block_exclusive_sum<kThreads>(lane == 0 ? warp_total : 0, warp_sums, chunk_total);
    int pos = base + __shfl_sync(0xffffffffu, warp_before, 0);
#pragma unroll
    for (int u = 0; u < kListPerLane; ++u) {
      if (mask[u] >> lane & 1u) {
        const int i = first + u * 32, p = pos + __popc(mask[u] & below);
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
  if (c >= a.hidden || t >= a.tokens) return;
  float acc[8];
#pragma unroll
  for (int q = 0; q < 8; ++q) acc[q] = 0.0f;
  if (a.shared) add_row8<T>(acc, *reinterpret_cast<const uint4*>(a.shared + u64(t) * a.hidden + c));
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
