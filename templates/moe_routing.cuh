// MoE routing on the GPU with no host round trip and no floating-point
// atomics: each token's top-k experts by its model's routing method, then per-expert token lists by an ordered
// counting sort (counts and writes in token order), so every run builds the
// same lists, and a combine that gathers each token's expert outputs in slot
// order (same bits every run).
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"
#include "samoyeds/scatter_add_rows.cuh"

namespace samoyeds {


// Router logits in float (the layer's 16-bit dtype otherwise).
struct F32 {};

template <class T>
struct Logits {
  static __device__ __forceinline__ float at(const void* logits, u64 i) {
    return ToFloat<T>::run(static_cast<const u16*>(logits)[i]);
  }
};
template <>
struct Logits<F32> {
  static __device__ __forceinline__ float at(const void* logits, u64 i) { return static_cast<const float*>(logits)[i]; }
};

// __expf and __fdividef (relative errors of a few 1e-7, far below the
// spacing of scores that decides a choice): expf and IEEE division call
// slow paths that made the routing kernels spill.
__device__ __forceinline__ float sigmoid_of(float x) { return __fdividef(1.0f, 1.0f + __expf(-x)); }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The warp's best (value, index) under (value descending, index ascending).
__device__ __forceinline__ void warp_best(float& best, int& best_i) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, best, o);
    const int oi = __shfl_xor_sync(0xffffffffu, best_i, o);
    if (ov > best || (ov == best && oi < best_i)) {
      best = ov;
      best_i = oi;
    }
  }
}

// A token's picks, before they are weighed: lane j holds round j's expert
// (-1 where a round found none) and what ranked it; softmax_topk also needs
// the largest logit and the sum of every expert's exp(logit - largest).
struct RoutePicks {
  int pick = -1;
  float choice = 0.0f;
  float max = 0.0f, sum = 0.0f;
};

// What a choice ranks: the logit (softmax is monotone in it), or the sigmoid
// score plus the choice bias.
template <class T>
__device__ __forceinline__ float route_choice(const RouteArgs& a, u64 row, int e) {
  const float l = Logits<T>::at(a.logits, row + e);
  return a.method == kRouteSigmoidGroupTopK ? sigmoid_of(l) + (a.choice_bias ? a.choice_bias[e] : 0.0f) : l;
}

// Any expert count and grouping, one warp per token. Ties go to the lower
// expert id, and to the lower group, as the reference breaks them.
template <class T>
__device__ __forceinline__ RoutePicks pick_by_scans(const RouteArgs& a, int t, int lane) {
  const u64 row = u64(t) * a.experts;
  const bool sigmoid = a.method == kRouteSigmoidGroupTopK;
  const float kNegInf = __int_as_float(0xff800000);
  // Up to kRouteStaged experts, the warp computes every choice once, its
  // loads all in flight together, into shared memory, where the group pass
  // and the rounds read it: from global memory each of their reads waited
  // a load (DeepSeek-V3's routing took ~23 us at T <= 64 so, on an H100).
  __shared__ float staged[kRouteWarps][kRouteStaged];
  float* const mine = staged[threadIdx.x / 32];
  const bool is_staged = a.experts <= kRouteStaged;
  if (is_staged) {
#pragma unroll
    for (int i = 0; i < kRouteStaged / 32; ++i)
      if (lane + 32 * i < a.experts) mine[lane + 32 * i] = route_choice<T>(a, row, lane + 32 * i);
    __syncwarp();
  }
  auto choice = [&](int e) { return is_staged ? mine[e] : route_choice<T>(a, row, e); };
  // Group-limited choice: lane g scores group g by its two best; the best
  // topk_groups groups stay in. One group holds every expert otherwise.
  int group_size = a.experts;
  unsigned groups_in = 1u;
  if (sigmoid && a.groups > 1) {
    group_size = a.experts / a.groups;
    float score = kNegInf;
    if (lane < a.groups) {
      float b1 = kNegInf, b2 = kNegInf;
      for (int i = 0; i < group_size; ++i) {
        const float v = choice(lane * group_size + i);
        if (v > b1) {
          b2 = b1;
          b1 = v;
        } else if (v > b2) {
          b2 = v;
        }
      }
      score = b1 + b2;
    }
    groups_in = 0u;
    for (int r = 0; r < a.topk_groups; ++r) {
      float best = (groups_in >> lane) & 1u ? kNegInf : score;
      int best_g = lane < a.groups && !((groups_in >> lane) & 1u) ? lane : 0x7fffffff;
      warp_best(best, best_g);
      if (best_g < 32) groups_in |= 1u << best_g;  // none where every score is NaN
    }
  }
  // Round j takes the best expert ranked after round j-1's pick, in the
  // order (choice descending, id ascending) that the picks follow: so what
  // earlier rounds took is excluded by one comparison, with no list of them.
  RoutePicks p;
  float last = __int_as_float(0x7f800000);  // +inf: every choice comes after it
  int last_e = -1;
  for (int j = 0; j < a.top_k; ++j) {
    float best = kNegInf;
    int best_e = 0x7fffffff;
    for (int e = lane; e < a.experts; e += 32) {
      const float v = (groups_in >> (e / group_size)) & 1u ? choice(e) : kNegInf;
      const bool after_last = v < last || (v == last && e > last_e);
      if (after_last && (v > best || (v == best && e < best_e))) {
        best = v;
        best_e = e;
      }
    }
    warp_best(best, best_e);
    last = best;
    last_e = best_e;
    if (lane == j) {
      p.pick = best_e < a.experts ? best_e : -1;
      p.choice = best;
    }
  }
  if (a.method == kRouteSoftmaxTopK) {
    // The choice is the logit here.
    float mx = kNegInf;
    for (int e = lane; e < a.experts; e += 32) mx = fmaxf(mx, choice(e));
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
    for (int e = lane; e < a.experts; e += 32) sum += __expf(choice(e) - mx);
    p.max = mx;
    p.sum = warp_sum(sum);
  }
  return p;
}

// The register path: lane l holds experts kRoutePerLane * l and on, so a
// group of DeepSeek-V3 (32 experts) is four lanes. Float order as unsigned
// keys, so a round is one redux.sync max, a ballot of the lanes whose best
// equals it and the lowest such lane (whose ids are the lowest): no
// per-round scan of the experts. pick_by_scans took 11.5 us at T = 1 for
// DeepSeek-V3 on an H100, 8 rounds of 8 scans each; perf-log 2026-12-07.
constexpr int kRoutePerLane = kRouteStaged / 32;

// Unsigned keys in float order (-0 and +0 equal); 0 for NaN and no expert,
// below every float, so neither is ever picked.
__device__ __forceinline__ u32 order_key(float v) {
  if (v != v) return 0u;
  u32 b = __float_as_uint(v);
  if (b == 0x80000000u) b = 0u;
  return b & 0x80000000u ? ~b : b | 0x80000000u;
}
__device__ __forceinline__ float key_value(u32 k) { return __uint_as_float(k & 0x80000000u ? k & 0x7fffffffu : ~k); }

// Whether a launch can take the register path: up to kRouteStaged experts,
// and each group (if any) whole lanes, a power of two of them.
__device__ __forceinline__ bool routes_in_registers(const RouteArgs& a) {
  if (a.experts > kRouteStaged) return false;
  if (a.method != kRouteSigmoidGroupTopK || a.groups <= 1) return true;
  const int size = a.experts / a.groups, lanes = size / kRoutePerLane;
  return size % kRoutePerLane == 0 && (lanes & (lanes - 1)) == 0;
}

template <class T>
__device__ __forceinline__ RoutePicks pick_in_registers(const RouteArgs& a, int t, int lane) {
  const u64 row = u64(t) * a.experts;
  const float kNegInf = __int_as_float(0xff800000);
  const int first = lane * kRoutePerLane;
  float v[kRoutePerLane];
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) v[i] = first + i < a.experts ? route_choice<T>(a, row, first + i) : kNegInf;
  // Group-limited choice: each lane's two best, then its group's over the
  // group's lanes (the two best of a multiset, so the sum is the reference's
  // whatever the order); a group is in where fewer than topk_groups groups
  // score above it (or the same, lower). A NaN score is never in.
  bool in = true;
  if (a.method == kRouteSigmoidGroupTopK && a.groups > 1) {
    const int lanes = a.experts / a.groups / kRoutePerLane;
    float b1 = kNegInf, b2 = kNegInf;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) {
      if (v[i] > b1) {
        b2 = b1;
        b1 = v[i];
      } else if (v[i] > b2) {
        b2 = v[i];
      }
    }
    for (int o = 1; o < lanes; o <<= 1) {
      const float c1 = __shfl_xor_sync(0xffffffffu, b1, o), c2 = __shfl_xor_sync(0xffffffffu, b2, o);
      const float second = b1 >= c1 ? fmaxf(b2, c1) : fmaxf(b1, c2);
      b1 = fmaxf(b1, c1);
      b2 = second;
    }
    const float score = b1 + b2;
    const int group = lane / lanes;
    int above = 0;
    for (int h = 0; h < a.groups; ++h) {
      const float s = __shfl_sync(0xffffffffu, score, h * lanes);
      above += s > score || (s == score && h < group);
    }
    in = group < a.groups && score == score && above < a.topk_groups;
  }
  // Keys, experts of groups left out at -inf (still ranked, as the scans
  // rank them), sorted descending in the lane: ids ascend with the index,
  // and the network breaks equal keys by id (19 exchanges, Knuth's for 8).
  u32 key[kRoutePerLane];
  int id[kRoutePerLane];
#pragma unroll
  for (int i = 0; i < kRoutePerLane; ++i) {
    id[i] = first + i;
    key[i] = first + i >= a.experts ? 0u : order_key(in ? v[i] : kNegInf);
  }
  static_assert(kRoutePerLane == 8, "the exchange network sorts 8");
  auto exchange = [&](int i, int j) {
    const bool swap = key[j] > key[i] || (key[j] == key[i] && id[j] < id[i]);
    const u32 k = key[i];
    const int d = id[i];
    key[i] = swap ? key[j] : k;
    id[i] = swap ? id[j] : d;
    key[j] = swap ? k : key[j];
    id[j] = swap ? d : id[j];
  };
  exchange(0, 2), exchange(1, 3), exchange(4, 6), exchange(5, 7), exchange(0, 4), exchange(1, 5), exchange(2, 6);
  exchange(3, 7), exchange(0, 1), exchange(2, 3), exchange(4, 5), exchange(6, 7), exchange(2, 4), exchange(3, 5);
  exchange(1, 4), exchange(3, 6), exchange(1, 2), exchange(3, 4), exchange(5, 6);
  RoutePicks p;
  for (int j = 0; j < a.top_k; ++j) {
    const u32 best = __reduce_max_sync(0xffffffffu, key[0]);
    const int winner = __ffs(__ballot_sync(0xffffffffu, key[0] == best)) - 1;
    const int e = __shfl_sync(0xffffffffu, id[0], winner);
    if (lane == winner) {
#pragma unroll
      for (int i = 0; i + 1 < kRoutePerLane; ++i) {
        key[i] = key[i + 1];
        id[i] = id[i + 1];
      }
      key[kRoutePerLane - 1] = 0u;
    }
    if (lane == j) {
      p.pick = best == 0u ? -1 : e;
      p.choice = key_value(best);
    }
  }
  if (a.method == kRouteSoftmaxTopK) {
    // No expert holds -inf: it adds exp(-inf) = 0.
    float mx = kNegInf;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) mx = fmaxf(mx, v[i]);
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kRoutePerLane; ++i) sum += __expf(v[i] - mx);
    p.max = mx;
    p.sum = warp_sum(sum);
  }
  return p;
}

// One warp per token, every method (samoyeds/moe_routing.hpp); lane j
// weighs round j's pick, and the results go out in one store a lane.
template <class T>
__device__ __forceinline__ void route_topk(const RouteArgs& a) {
  const int warps = blockDim.x / 32;
  const int t = blockIdx.x * warps + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (t >= a.tokens) return;
  const RoutePicks p = routes_in_registers(a) ? pick_in_registers<T>(a, t, lane) : pick_by_scans<T>(a, t, lane);
  // A round finds nothing only where scores are NaN (NaN never compares
  // greater): that slot gets id -1, which the token lists flag and skip,
  // and weight 0, and nothing is read at its id.
  const bool picked = p.pick >= 0;
  float w = 0.0f;
  if (a.method == kRouteSoftmaxTopK) {
    if (lane < a.top_k) w = __expf(p.choice - p.max) / p.sum;
  } else if (a.method == kRouteSigmoidGroupTopK) {
    if (lane < a.top_k && picked) w = sigmoid_of(Logits<T>::at(a.logits, u64(t) * a.experts + p.pick));
  } else {
    // Softmax over the picks: round 0's is the largest.
    const float first = __shfl_sync(0xffffffffu, p.choice, 0);
    if (lane < a.top_k) w = __expf(p.choice - first);
    w /= warp_sum(w);
  }
  if (!picked) w = 0.0f;
  if (a.renormalize) w /= warp_sum(w) + (a.method == kRouteSigmoidGroupTopK ? 1e-20f : 0.0f);
  if (lane < a.top_k) {
    a.topk_ids[u64(t) * a.top_k + lane] = picked ? p.pick : -1;
    a.topk_weights[u64(t) * a.top_k + lane] = w * a.scale;
  }
}


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
