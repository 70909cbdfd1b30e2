// Deterministic combine: y[ids[i], :] += z[i, :] for i = 0 .. n-1 in order.
// No atomics: each thread owns columns and walks the rows in index order, so
// every run adds the same values in the same order (same bits). Rows are
// taken in batches of kBatch whose y loads are issued together; repeated ids
// inside a batch are folded into the first occurrence before the store.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

template <class T, int kBatch>
__device__ __forceinline__ void scatter_add_rows(const ScatterAddArgs& a) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= a.m) return;
  for (int i0 = 0; i0 < a.n; i0 += kBatch) {
    int id[kBatch], owner[kBatch];
    float acc[kBatch];
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      id[j] = i0 + j < a.n ? a.ids[i0 + j] : -1;
      if (i0 + j < a.n && (id[j] < 0 || id[j] >= a.y_rows)) {
        if (a.error_flag && c == 0) global_or(a.error_flag, kErrorBadTokenId);
        id[j] = -1;
      }
      owner[j] = j;
#pragma unroll
      for (int q = 0; q < j; ++q)
        if (owner[j] == j && id[q] == id[j]) owner[j] = q;
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      acc[j] = (id[j] >= 0 && owner[j] == j) ? ToFloat<T>::run(a.y[u64(id[j]) * a.ldy + c]) : 0.0f;
#pragma unroll
    for (int j = 0; j < kBatch; ++j) {
      if (id[j] < 0) continue;
      const float v = ToFloat<T>::run(a.z[u64(i0 + j) * a.m + c]);
#pragma unroll
      for (int q = 0; q < kBatch; ++q)
        if (q == owner[j]) acc[q] += v;
    }
#pragma unroll
    for (int j = 0; j < kBatch; ++j)
      if (id[j] >= 0 && owner[j] == j) a.y[u64(id[j]) * a.ldy + c] = u16(Elem<T>::pack2(acc[j], 0.0f) & 0xffffu);
  }
}

}  // namespace samoyeds
