// Tile order of the wgmma_sp kernels. Block (or split-k cluster) b takes
// the work tiles b, b + blocks, b + 2*blocks, ... of the launch: one tile
// each for a grid of every tile, several for a persistent grid of about one
// block per SM. Tiles are numbered expert by expert; within an expert the
// row tile varies fastest (blocks running at the same time share their token
// rows in L2) or, with TOKENS_FIRST, the token tile (they share weight rows).
// A grouped launch numbers only the non-empty token tiles of each expert:
// every block first builds the per-expert tile prefix (one warp, 32 experts
// per step) in shared memory, so no block walks through empty tiles.
// Producer and consumers of a block walk the same sequence.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/grouped_experts.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

struct Tile {
  SsmmArgs args;  // the expert's single-expert arguments
  int expert;     // row block of the tensor maps: expert * rows_pad
  int row0;       // condensed rows
  int tok0;
};

// Local tile number -> its row and token tile within one expert.
// ROW_GROUP > 0 (row-first order only): the row tiles are taken in groups of
// ROW_GROUP, each group walking every token tile before the next starts, row
// tile fastest inside it. The tiles that run at the same time then read
// ROW_GROUP row tiles' weights and a few dozen token tiles, a working set
// that stays in L2; plain row-first order has every SM on a different row
// tile, so all of an expert's weights (29 MB for Mixtral's up projection)
// stream past each token tile and get evicted by the tokens and outputs.
template <bool TOKENS_FIRST, int ROW_GROUP>
__device__ __forceinline__ void place_tile(int local, int row_tiles, int tok_tiles, int bm, int bn, Tile& out) {
  static_assert(ROW_GROUP == 0 || !TOKENS_FIRST, "row groups order row-first tiles");
  int row_tile, tok_tile;
  if (TOKENS_FIRST) {
    row_tile = local / tok_tiles;
    tok_tile = local % tok_tiles;
  } else if (ROW_GROUP > 0) {
    const int group = local / (ROW_GROUP * tok_tiles), in_group = local % (ROW_GROUP * tok_tiles);
    const int rows_here = min(ROW_GROUP, row_tiles - group * ROW_GROUP);  // the last group may be short
    row_tile = group * ROW_GROUP + in_group % rows_here;
    tok_tile = in_group / rows_here;
  } else {
    row_tile = local % row_tiles;
    tok_tile = local / row_tiles;
  }
  out.row0 = row_tile * bm;
  out.tok0 = tok_tile * bn;
}

// One expert (ssmm, gated_up, down_scaled).
struct SingleProblem {
  SsmmArgs args;
  __device__ __forceinline__ const SsmmArgs& base() const { return args; }
  __device__ __forceinline__ void prepare(int*, int, int) const {}
  __device__ __forceinline__ int tiles(const int*, int row_tiles, int bn) const {
    return row_tiles * ((args.n + bn - 1) / bn);
  }
  // Tile t (< tiles()); `cursor` is unused.
  template <bool TOKENS_FIRST, int ROW_GROUP>
  __device__ __forceinline__ void tile(const int*, int&, int t, int row_tiles, int bm, int bn, Tile& out) const {
    out.args = args;
    out.expert = 0;
    place_tile<TOKENS_FIRST, ROW_GROUP>(t, row_tiles, (args.n + bn - 1) / bn, bm, bn, out);
  }
};

// All experts of a grouped launch; `prefix[e]` = tiles of experts before e.
// BIAS: the epilogue reads biases (expert_slice).
template <bool BIAS = false>
struct GroupedProblem {
  GroupedSsmmArgs g;
  __device__ __forceinline__ const SsmmArgs& base() const { return g.base; }  // shapes shared by every expert
  // Shared ints the prefix needs (experts + 1); the launch adds them
  // (tile_prefix_bytes in generator/generated_kernel.hpp).
  __device__ __forceinline__ void prepare(int* prefix, int row_tiles, int bn) const {
    if (threadIdx.x >= 32) return;
    const int lane = threadIdx.x;
    int carry = 0;
    if (lane == 0) prefix[0] = 0;
    for (int base = 0; base < g.experts; base += 32) {
      const int e = base + lane;
      const int n = e < g.experts ? g.offsets[e + 1] - g.offsets[e] : 0;
      int v = (n + bn - 1) / bn * row_tiles;
#pragma unroll
      for (int d = 1; d < 32; d *= 2) {  // inclusive scan over the warp
        const int u = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += u;
      }
      if (e < g.experts) prefix[e + 1] = carry + v;
      carry += __shfl_sync(0xffffffffu, v, 31);
    }
    __syncwarp();
    if (lane == 0 && !list_fits_rows(g)) prefix[g.experts] = 0;  // no tiles
  }
  __device__ __forceinline__ int tiles(const int* prefix, int, int) const { return prefix[g.experts]; }
  // Tile t; `cursor` is the expert of the caller's previous tile (start at 0):
  // a block's tiles increase, so the search only moves forward.
  template <bool TOKENS_FIRST, int ROW_GROUP>
  __device__ __forceinline__ void tile(const int* prefix, int& cursor, int t, int row_tiles, int bm, int bn,
                                       Tile& out) const {
    while (prefix[cursor + 1] <= t) ++cursor;
    expert_slice<BIAS>(g, cursor, out.args);
    out.expert = cursor;
    place_tile<TOKENS_FIRST, ROW_GROUP>(t - prefix[cursor], row_tiles, (prefix[cursor + 1] - prefix[cursor]) / row_tiles, bm,
                             bn, out);
  }
};

}  // namespace samoyeds
