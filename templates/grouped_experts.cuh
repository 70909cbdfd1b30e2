// Grouped launch over experts: each block finds its expert's slice of the
// token list and output, then runs the single-expert kernel body unchanged.
// Blocks past an expert's token count leave at once, so an expert with no
// tokens costs only its empty blocks.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

// Whether the token list fits the rows of a compact x; if not, raises
// kErrorListPastRows (from the first thread of the grid) and the launch must
// compute nothing: its experts' slices would read, and write, past the rows.
__device__ __forceinline__ bool list_fits_rows(const GroupedSsmmArgs& g) {
  if (!g.x_is_compact || g.offsets[g.experts] <= g.base.x_rows) return true;
  if (g.base.error_flag && threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0)
    global_or(g.base.error_flag, kErrorListPastRows);
  return false;
}

// Expert e's slice of a grouped launch as single-expert arguments (BIAS:
// the epilogue reads biases, moved to the expert's too; a template argument
// so that the kernels without leave their machine code as it was).
template <bool BIAS>
__device__ __forceinline__ void expert_slice(const GroupedSsmmArgs& g, int e, SsmmArgs& a) {
  const int begin = g.offsets[e];
  const int n = g.offsets[e + 1] - begin;
  a = g.base;
#pragma unroll
  for (int w = 0; w < 2; ++w) {
    a.values[w] += u64(e) * u64(g.values_stride);
    a.meta[w] += u64(e) * u64(g.meta_stride);
    a.sel[w] += u64(e) * u64(g.sel_stride);
    if (BIAS) a.bias[w] += u64(e) * u64(g.bias_stride);
  }
  a.n = n;
  if (g.x_is_compact) {
    a.x += u64(begin) * u64(a.ldx);
    a.x_rows = n;
    a.ids = nullptr;
  } else {
    a.ids += begin;
  }
  if (a.row_scale) a.row_scale += begin;
  a.y += u64(begin) * u64(a.ldy);
}

// The grid form: blockIdx.z is the expert, blockIdx.y the token tile.
template <int BN, bool BIAS = false>
__device__ __forceinline__ bool select_expert(const GroupedSsmmArgs& g, SsmmArgs& a) {
  const int e = blockIdx.z;
  if (int(blockIdx.y) * BN >= g.offsets[e + 1] - g.offsets[e]) return false;
  if (!list_fits_rows(g)) return false;
  expert_slice<BIAS>(g, e, a);
  return true;
}

}  // namespace samoyeds
