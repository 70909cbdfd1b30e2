// Warp-specialized wgmma.sp expert projection (sm_90a). The block is BM/64
// consumer warpgroups plus one producer warpgroup (the last):
//   producer   fills STAGES shared-memory stages with cp.async (weights,
//              metadata, selectors, gathered token rows) and signals each
//              stage's `full` mbarrier when its copies land; it refills a
//              stage once every consumer has released it (`empty`);
//   consumers  each own 64 condensed rows x BN tokens: wait for a stage,
//              multiply it with wgmma.sp (row selection at segment
//              boundaries, as in SsmmPipeline), release it, move on. They do
//              not wait for each other, so one warpgroup's selection and
//              wgmma drain overlap the other's tensor-core work.
// Tiles, operand layouts, selection and epilogue are SsmmPipeline's with the
// WgmmaSpCore; only the schedule differs.
#pragma once
#include "samoyeds/mbarrier.cuh"
#include "samoyeds/ssmm_pipeline.cuh"
#include "samoyeds/wgmma_sp_sm90a.cuh"

namespace samoyeds {

template <class T, int BM, int BN, int BK, int STAGES, int V, int NKEEP, int MGROUP, int EPI>
struct SsmmWgmmaWs : SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> {
  typedef SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> Base;
  static constexpr int kConsumers = Base::kThreads;  // BM/64 warpgroups
  static constexpr int kProducers = 128;
  static constexpr int kThreads = kConsumers + kProducers;
  static constexpr int kBarrierBytes = 2 * STAGES * 8;
  static constexpr int kSmemBytes = Base::kSmemBytes + kBarrierBytes;
  // No setmaxnreg hand-off: ptxas allocates the whole kernel within the
  // launch bound (168 registers at 384 threads) whatever the warps ask for
  // later, and an increase the block's pool cannot cover blocks forever (the
  // first version deadlocked that way on the H200).

  __device__ __forceinline__ void run(const SsmmArgs& args, unsigned char* smem) {
    const int tid = threadIdx.x;
    const int row0 = blockIdx.x * BM;
    const int tok0 = blockIdx.y * BN;
    int* s_ids = reinterpret_cast<int*>(smem + Base::kMainBytes);
    const u32 bars = smem_addr(smem + Base::kSmemBytes);  // full[STAGES], then empty[STAGES]
    const u32 smem_base = smem_addr(smem);
    if (tid == 0) {
      for (int s = 0; s < STAGES; ++s) {
        mbarrier_init(bars + 8 * s, kProducers);                  // every producer thread's copies
        mbarrier_init(bars + 8 * (STAGES + s), kConsumers);       // every consumer thread's release
      }
    }
    Base::load_token_ids(args, s_ids, tok0, tid, kThreads);
    __syncthreads();
    const int k_tiles = args.k_phys / BK;
    // Broadcast from lane 0 so the compiler sees a warp-uniform role (wgmma
    // on a path it must treat as divergent gets serialized).
    const int group = __shfl_sync(0xffffffffu, tid / 128, 0);

    if (group == kConsumers / 128) {  // producer warpgroup
      const int ptid = tid - kConsumers;
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES;
        if (kt >= STAGES) mbarrier_wait(bars + 8 * (STAGES + s), (kt / STAGES - 1) & 1);
        Base::template load_stage<kProducers>(args, smem_base + s * Base::kStageBytes, kt, row0, s_ids, ptid);
        cp_async_mbarrier_arrive(bars + 8 * s);
      }
    } else {  // consumer warpgroups
      const int lane = tid % 32, warp_m = tid / 32;
      this->clear_accumulators();
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES;
        mbarrier_wait(bars + 8 * s, (kt / STAGES) & 1);
        WgmmaSpCore::stage_landed();  // the stage's copies, as this consumer now sees them, made visible to wgmma
        this->compute_stage(smem + s * Base::kStageBytes, smem_base + s * Base::kStageBytes, kt, warp_m, 0, lane);
        mbarrier_arrive(bars + 8 * (STAGES + s));  // compute_stage ended with its wgmmas complete
      }
    }
    __syncthreads();  // every stage consumed: the epilogue tile may overwrite them
    float* tile = reinterpret_cast<float*>(smem);
    if (tid < kConsumers) {
      const int lane = tid % 32, warp_m = tid / 32;
      this->stage_accumulators(tile, warp_m, 0, lane, [] { named_barrier(1, kConsumers); });
    }
    __syncthreads();
    Base::store_tile(args, tile, row0, tok0, tid, kThreads);
  }
};

}  // namespace samoyeds
