// Each token's top-k experts and their weights on the GPU, by its model's
// routing method (samoyeds/moe_routing.hpp): one warp per token, ties to the
// lower expert id and the lower group, as the float64 reference breaks them.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

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
// slow paths that made the routing kernels spill. Below a logit of about
// -87.3 the sigmoid is 0 (not ~1e-38): such experts tie, broken by id.
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
constexpr int kRoutePerLane = 8;
static_assert(kRouteStaged == 32 * kRoutePerLane, "the register path holds what the scans stage");

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
      p.choice = best == 0u ? kNegInf : key_value(best);  // as the scans leave a round that found nothing
    }
  }
  if (a.method == kRouteSoftmaxTopK) {
    // Slots past the last expert hold -inf: each adds exp(-inf - max) = 0 where the max is finite (where it is
    // not, the scans' sum is NaN as well).
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

}  // namespace samoyeds
