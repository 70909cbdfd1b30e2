// Delivery probe (sm_90; bench/ingress_bench.cpp, not a library kernel): how
// many bytes per cycle TMA brings into one SM's shared memory when nothing
// else runs: the ceiling the wgmma_sp projections' delivery is compared with
// (docs/perf-log.md), with the same machinery and none of the arithmetic.
// One thread fills STAGES stages of BOXES boxes (BOX_ROWS rows of 128 bytes,
// the 128-byte swizzle: the shape of our token and weight boxes), one warp
// waits for each stage to land and releases it at once.
// MCAST = 2: clusters of two blocks that read the same rows (give them a
// group of 2); each brings every other box of a stage and multicasts it to
// both, as the kernels' multicast pairs do, and a stage is refilled once
// both blocks have released it.
#pragma once
#include "samoyeds/cluster.cuh"
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"
#include "samoyeds/mbarrier.cuh"
#include "samoyeds/tma.cuh"

namespace samoyeds {

// 64 threads: warp 0's first thread fills, warp 1's first thread consumes.
template <int STAGES, int BOXES, int BOX_ROWS, int MCAST>
__device__ __forceinline__ void ingress_probe(const IngressProbeArgs& a, const TensorMap& map,
                                              unsigned char* smem_raw) {
  static_assert(MCAST == 1 || (MCAST == 2 && BOXES % 2 == 0), "pairs split a stage's boxes");
  constexpr int kBoxBytes = BOX_ROWS * 128;
  constexpr int kStageBytes = BOXES * kBoxBytes;
  // Swizzled boxes start on a 1024-byte swizzle period.
  unsigned char* smem = smem_raw + ((1024 - (smem_addr(smem_raw) % 1024)) % 1024);
  const u32 base = smem_addr(smem);
  const u32 bars = base + STAGES * kStageBytes;  // full[STAGES], then empty[STAGES]
  const int rank = MCAST > 1 ? cluster_rank() : 0;
  __shared__ long long start;
  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      mbarrier_init(bars + 8 * s, 1);
      mbarrier_init(bars + 8 * (STAGES + s), MCAST);
    }
    fence_mbarrier_init();
    tma_prefetch_map(map);
  }
  if (MCAST > 1)
    cluster_sync();
  else
    __syncthreads();
  if (threadIdx.x == 0) {
    start = clock64();
    u32 id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    a.smid[blockIdx.x] = int(id);
  }
  __syncthreads();
  const int groups = (int(gridDim.x) + a.group - 1) / a.group;
  const int region = a.interleaved ? int(blockIdx.x) % groups : int(blockIdx.x) / a.group;
  const int member = a.interleaved ? int(blockIdx.x) / groups : int(blockIdx.x) % a.group;
  const int row0 = region * a.region_rows;
  if (threadIdx.x == 0) {
    int row = member * a.skew_rows % a.region_rows, col = 0;
    for (int it = 0; it < a.stages_total; ++it) {
      const int s = it % STAGES;
      if (it >= STAGES) mbarrier_wait(bars + 8 * (STAGES + s), (it / STAGES - 1) & 1);
      const u32 full = bars + 8 * s;
      mbarrier_arrive_expect_tx(full, kStageBytes);
#pragma unroll
      for (int b = 0; b < BOXES; ++b) {
        const u32 dst = base + s * kStageBytes + b * kBoxBytes;
        if (MCAST == 1)
          tma_load_2d(dst, map, full, col * 64, row0 + row);
        else if (b % 2 == rank)
          tma_load_2d_multicast(dst, map, full, col * 64, row0 + row, 3);
        if (++col < a.cols) continue;
        col = 0;
        row += BOX_ROWS;
        if (row + BOX_ROWS > a.region_rows) row = 0;
      }
    }
  } else if (threadIdx.x == 32) {
    for (int it = 0; it < a.stages_total; ++it) {
      const int s = it % STAGES;
      mbarrier_wait(bars + 8 * s, (it / STAGES) & 1);
      const u32 empty = bars + 8 * (STAGES + s);
      mbarrier_arrive(empty);
      if (MCAST > 1) mbarrier_arrive_cluster(cluster_map_shared(empty, rank ^ 1));
    }
    a.cycles[blockIdx.x] = clock64() - start;
  }
  // No block of a pair leaves while the other may still multicast into it.
  if (MCAST > 1) {
    __syncwarp();
    cluster_sync();
  }
}

}  // namespace samoyeds
