// Kernel argument block shared by host C++ and device code: the one definition
// of what a launch passes, so the two sides cannot drift apart.
#pragma once

// For the few functions both sides compute with (NVRTC defines __CUDACC__).
#ifdef __CUDACC__
#define SAMOYEDS_HOST_DEVICE __host__ __device__
#else
#define SAMOYEDS_HOST_DEVICE
#endif

namespace samoyeds {

// Expert projection over index-selected token rows:
//   y[i, :] = epilogue(x[ids[i], :] . W^T)  for i < n   (ids == null: row i)
// W is given in the packed device layout, sp_tc.v2 (one per weight operand;
// the gated op reads W1 then W3).
struct SsmmArgs {
  const unsigned short* values[2];  // [rows_pad, k_phys/2]
  const unsigned int* meta[2];      // [rows_pad/16][k_phys/128][32][2]
  const unsigned char* sel[2];      // [k_phys/V][rows_pad]
  const unsigned short* x;          // [x_rows, ldx], k valid columns
  const int* ids;                   // [n] or null
  const float* row_scale;           // [n] or null: output row i scaled by row_scale[i]
  const float* bias[2];             // [m] per weight operand, for the biased epilogues (else unused)
  float act_alpha, act_limit;       // the clamped SwiGLU's (kEpiClampedSwiglu)
  unsigned short* y;                // [n, ldy], m valid columns
  int* error_flag;                  // SsmmErrorBits, below
  int m, k, n;
  int x_rows, ldx, ldy;
  int rows_pad, k_phys;
  // Stream-K tails (TileConfig::stream_k), else null: the shares' partial
  // accumulators and a flag per (split tile, consumer warp), all zero
  // between launches (the kernel clears what it raised).
  float* stream_k_partials;
  int* stream_k_flags;
  // Kernels that can store their tiles by TMA (WgmmaSpFamily::tma_store): 1
  // when the launch gave them the output map (rows of y a multiple of 16
  // bytes), else they store from registers.
  int out_by_tma;
  // FP8 kernels (E4M3): the tokens' scales, [ceil(k/128)][x_scale_ld] f32,
  // token i's of group g at g * x_scale_ld + i (rows of x, list rows in a
  // grouped launch). The producer copies a stage's with plain loads: a TMA
  // box would start at an expert's first list row, which is not 16-byte aligned.
  const float* x_scale_inv;
  int x_scale_ld;
};

// How a stream-K launch of `total` tiles on `grid` persistent blocks splits
// its last round (templates/ssmm_wgmma_ws.cuh): the first `full` tiles run
// whole, round by round; each of the `rest` others in `parts` shares of its
// `units` k-segments, one block per share (blocks 0 .. rest * parts - 1, a
// tile's shares on consecutive blocks). parts = 1: no split (every tile
// whole). At most four shares: a tile's shares write parts - 1 partial tiles.
struct StreamKSplit {
  int full, rest, parts;
};
SAMOYEDS_HOST_DEVICE inline StreamKSplit stream_k_split(int total, int grid, int units) {
  const int rest = total % grid;
  int parts = rest > 0 ? grid / rest : 1;
  if (parts > 4) parts = 4;
  if (parts > units) parts = units;
  if (parts < 2) return StreamKSplit{total, 0, 1};
  return StreamKSplit{total - rest, rest, parts};
}

// An opaque CUtensorMap (cuda.h's type, which device code cannot include):
// 128 bytes, aligned as cuda.h aligns it. The host static_asserts the two agree.
struct alignas(128) TensorMap {
  unsigned long long opaque[16];
};

// TMA views of the weights (wgmma_sp backend), per weight operand, over all
// experts of a grouped launch (expert e's rows follow expert e-1's):
//   values  2-D [rows, k_phys/2] u16, box [block_m rows][64 values], 128-byte swizzle
//   meta    2-D [rows/16, k_phys/2] u32, box [block_m/16][block_k/2]
//   sel     2-D [segments, rows_pad] u8, box [segments per k-tile][block_m]
// and, for kernels that read their token tiles by TMA (TileConfig::tokens_tma),
//   tokens  2-D [x_rows, k] of x, box [block_n rows][64 values], 128-byte swizzle
// (unused otherwise: the launch leaves it zero), and for kernels that store
// their tiles by TMA (WgmmaSpFamily::tma_store),
//   out     2-D [n, m] of y (rows ldy apart), box [chunk tokens][64 rows], 128-byte swizzle.
// FP8 kernels (E4M3) also read their weight scales by TMA:
//   wscale  2-D [k_phys/128, rows/16] f32 per weight operand, box [block_k/128][block_m/16]
struct TmaWeightMaps {
  TensorMap values[2], meta[2], sel[2];
  TensorMap tokens;
  TensorMap out;
  TensorMap wscale[2];
};

// All experts of one projection in one launch: blockIdx.z is the expert.
// Expert e owns rows offsets[e] .. offsets[e+1]-1 of the token list and of the
// compact output; its weights sit `*_stride` elements after expert e-1's.
struct GroupedSsmmArgs {
  SsmmArgs base;        // expert 0's weights; ids = the token list; n = a bound on any expert's count
  const int* offsets;   // [experts + 1], on the device (no host round trip)
  long long values_stride, meta_stride, sel_stride;
  long long bias_stride;  // floats between experts' biases (the biased epilogues)
  int x_is_compact;     // 1: x rows follow the list (down projection reads h)
  int experts;
};

// out[i, :] = x[ids[i], :], i < n (templates/gather_rows.cuh).
struct GatherRowsArgs {
  const unsigned short* x;  // [x_rows, k]
  const int* ids;           // [n]
  unsigned short* out;      // [n, k]
  int* error_flag;
  int n, k, x_rows;
};

// Tokens into the FP8 projection's form (templates/quantize_rows.cuh):
// codes[i, :] = E4M3(x[ids[i], :] / s), s = amax / 448 per 1 x 128 group
// (1 for an all-zero group), s stored at scale_inv[group * scale_ld + i].
struct QuantizeRowsArgs {
  const unsigned short* x;  // [x_rows, k], k a multiple of 4
  const int* ids;           // [n] or null: row i
  unsigned char* codes;     // [n, k]
  float* scale_inv;         // [ceil(k/128), scale_ld]
  int* error_flag;
  int n, k, x_rows, scale_ld;
};

// y[ids[i], :] += z[i, :], i in order (templates/scatter_add_rows.cuh).
struct ScatterAddArgs {
  const unsigned short* z;  // [n, m]
  const int* ids;           // [n]
  unsigned short* y;        // [y_rows, ldy]
  int* error_flag;
  int n, m, y_rows, ldy;
};

// MoE routing, token lists and combine (templates/moe_routing.cuh).
// Warps of a routing block at most (launch_route checks) and the experts
// whose choices a warp stages in shared memory (8 KB a block).
constexpr int kRouteWarps = 8, kRouteStaged = 256;
// RouteArgs::method, in samoyeds::RoutingMethod's order (runtime/moe_layer.cpp checks).
enum RouteMethod { kRouteSoftmaxTopK = 0, kRouteSigmoidGroupTopK = 1, kRouteTopKSoftmax = 2 };
struct RouteArgs {
  const void* logits;        // [tokens, experts]: the layer's dtype, or float (samoyeds_route_topk_f32)
  const float* choice_bias;  // [experts] or null: added for choosing only (sigmoid_group_topk)
  int* topk_ids;             // [tokens, top_k]
  float* topk_weights;       // [tokens, top_k]
  int tokens, experts, top_k;
  int method;  // RouteMethod
  int renormalize, groups, topk_groups;
  float scale;
};

struct TokenListArgs {
  const int* topk_ids;        // [tokens * top_k]
  const float* topk_weights;  // [tokens * top_k]
  int* offsets;               // [experts + 1]
  int* list_token;            // [tokens * top_k]
  float* list_weight;         // [tokens * top_k]
  int* position;              // [tokens * top_k]: where (t, j) sits in the lists
  int* error_flag;
  int tokens, experts, top_k;
};

struct CombineArgs {
  const unsigned short* z;       // [tokens * top_k, hidden]: weighted expert outputs, list order
  const int* position;           // [tokens * top_k]
  const unsigned short* shared;  // [tokens, hidden] or null: the shared experts' sum
  // [hidden] or null: the shared sum is scaled by sigmoid(shared_gate . x[t]) (Qwen2-MoE)
  const unsigned short* shared_gate;
  const unsigned short* x;  // [tokens, hidden]: the layer's input, read for the shared gate
  unsigned short* y;        // [tokens, hidden]
  int tokens, top_k, hidden;
};

// The TMA delivery probe (templates/ingress_probe.cuh, bench/ingress_bench.cpp).
struct IngressProbeArgs {
  long long* cycles;  // [gridDim.x]: each block's SM cycles from its first copy to its last stage landed
  int* smid;          // [gridDim.x]: the SM each block ran on
  int stages_total;   // stages each block fills
  int region_rows;    // rows of a region of the map, read round and round
  int group;          // blocks that read the same region: consecutive ones, or
  int interleaved;    //   (1) every gridDim.x / group-th
  int skew_rows;      // block i of a group starts i * skew_rows rows into the region
  // 128-byte columns per row of the map. 1: rows of 128 bytes, so a box is
  // one contiguous piece of memory (how token tiles lie). More: wide rows,
  // read as the weights are: the boxes of a band of BOX_ROWS rows walk its
  // columns, then the next band starts (a box is BOX_ROWS pieces of 128
  // bytes, a row apart). Rows, region and skew then count wide rows.
  int cols;
};

// Bits of the error flag (SsmmArgs::error_flag):
// kErrorBadTokenId  an id was out of range (its row read as zeros);
// kErrorListPastRows  a grouped launch's token list (offsets[experts]) is
//   longer than the rows of its compact x (the caller's h, or the list-order
//   copy of the routed tokens): the launch computed and wrote nothing.
enum SsmmErrorBits { kErrorBadTokenId = 1, kErrorListPastRows = 2 };

}  // namespace samoyeds
