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
  float chosen_sum = 0.0f;
  // Round j takes the best expert not taken in rounds 0..j-1 (read back from
  // the output; top_k is small).
  for (int j = 0; j < a.top_k; ++j) {
    float best = -3.0e38f;
    int best_e = 0x7fffffff;
    for (int e = lane; e < a.experts; e += 32) {
      bool taken = false;
      for (int q = 0; q < j; ++q) taken |= a.topk_ids[u64(t) * a.top_k + q] == e;
      const float v = ToFloat<T>::run(row[e]);
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
    if (lane == 0) {
      a.topk_ids[u64(t) * a.top_k + j] = best_e;
      a.topk_weights[u64(t) * a.top_k + j] = p;
    }
    __syncwarp();
  }
  if (a.renormalize && lane < a.top_k) a.topk_weights[u64(t) * a.top_k + lane] /= chosen_sum;
}


// Pass 1, one block per expert: how many (t, j) chose it.
template <int kThreads>
__device__ __forceinline__ void count_expert(const TokenListArgs& a) {
  __shared__ int warp_counts[kThreads / 32];
  const int e = blockIdx.x, n = a.tokens * a.top_k;
  int mine = 0;
  for (int i = threadIdx.x; i < n; i += kThreads) {
    const int id = a.topk_ids[i];
    mine += id == e;
    if (e == 0 && (id < 0 || id >= a.experts) && a.error_flag) global_or(a.error_flag, kErrorBadTokenId);
  }
  for (int o = 16; o > 0; o >>= 1) mine += __shfl_xor_sync(0xffffffffu, mine, o);
  if (threadIdx.x % 32 == 0) warp_counts[threadIdx.x / 32] = mine;
  __syncthreads();
  if (threadIdx.x == 0) {
    int total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += warp_counts[w];
    a.counts[e] = total;
  }
}

// Pass 2, one block: offsets = exclusive prefix sum of the counts.
__device__ __forceinline__ void scan_offsets(const TokenListArgs& a) {
  if (threadIdx.x != 0) return;
  int run = 0;
  for (int e = 0; e < a.experts; ++e) {
    a.offsets[e] = run;
    run += a.counts[e];
  }
  a.offsets[a.experts] = run;
}

// Pass 3, one block per expert: write its entries in (token, slot) order.
// A block-wide scan of "is mine" flags gives each entry its place.
template <int kThreads>
__device__ __forceinline__ void write_expert_list(const TokenListArgs& a) {
  __shared__ int warp_sums[kThreads / 32];
  __shared__ int base;
  const int e = blockIdx.x, n = a.tokens * a.top_k;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) base = a.offsets[e];
  __syncthreads();
  for (int i0 = 0; i0 < n; i0 += kThreads) {
    const int i = i0 + threadIdx.x;
    const int mine = (i < n && a.topk_ids[i] == e) ? 1 : 0;
    int incl = mine;  // inclusive scan within the warp
    for (int o = 1; o < 32; o <<= 1) {
      const int v = __shfl_up_sync(0xffffffffu, incl, o);
      if (lane >= o) incl += v;
    }
    if (lane == 31) warp_sums[warp] = incl;
    __syncthreads();
    int before = 0, chunk = 0;
    for (int w = 0; w < kThreads / 32; ++w) {
      if (w < warp) before += warp_sums[w];
      chunk += warp_sums[w];
    }
    if (mine) {
      const int pos = base + before + incl - 1;
      a.list_token[pos] = i / a.top_k;
      a.list_weight[pos] = a.topk_weights[i];
      a.position[i] = pos;
    }
    __syncthreads();
    if (threadIdx.x == 0) base += chunk;
    __syncthreads();
  }
}


// y[t, c] = sum_j z[position[t, j], c] (+ shared[t, c]), j in order.
template <class T>
__device__ __forceinline__ void moe_combine(const CombineArgs& a) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x, t = blockIdx.y;
  if (c >= a.hidden || t >= a.tokens) return;
  float acc = a.shared ? ToFloat<T>::run(a.shared[u64(t) * a.hidden + c]) : 0.0f;
  for (int j = 0; j < a.top_k; ++j) {
    const int pos = a.position[u64(t) * a.top_k + j];
    if (pos >= 0) acc += ToFloat<T>::run(a.z[u64(pos) * a.hidden + c]);
  }
  a.y[u64(t) * a.hidden + c] = u16(Elem<T>::pack2(acc, 0.0f) & 0xffffu);
}

}  // namespace samoyeds
