// Warp-specialized wgmma.sp expert projection (sm_90a). The block is BM/64
// consumer warpgroups plus one producer warpgroup (the last):
//   producer   fills STAGES shared-memory stages: one thread has TMA bring
//              the weight tiles, metadata and selectors (tensor maps,
//              transaction bytes on the stage's `full` mbarrier), all 128
//              gather the token rows with cp.async (each thread resolves its
//              rows once per block; arriving on `full` when their copies
//              land); it refills a stage once every consumer
//              has released it (`empty`);
//   consumers  each own 64 condensed rows x BN tokens: wait for a stage,
//              multiply it with wgmma.sp (row selection at segment
//              boundaries, as in SsmmPipeline), release it, move on. They do
//              not wait for each other, so one warpgroup's selection and
//              wgmma drain overlap the other's tensor-core work. Then they
//              run the epilogue; the producer is done by then and leaves.
// Registers: with two consumer warpgroups (384 threads) the launch bound
// gives every thread 168; the producer hands back all but 56 and the
// consumers take 224 each (setmaxnreg), which the block's pool covers
// exactly: 128*56 + 256*224 = 384*168. With one consumer warpgroup every
// thread already has the 255 the hardware allows.
// Tiles, operand layouts, selection and epilogue are SsmmPipeline's with the
// WgmmaSpCore; only the schedule and the weight loads differ.
#pragma once
#include "samoyeds/mbarrier.cuh"
#include "samoyeds/ssmm_pipeline.cuh"
#include "samoyeds/tma.cuh"
#include "samoyeds/wgmma_sp_sm90a.cuh"

namespace samoyeds {

template <int REGS>
__device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;" ::"n"(REGS));
}
template <int REGS>
__device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;" ::"n"(REGS));
}

template <class T, int BM, int BN, int BK, int STAGES, int V, int NKEEP, int MGROUP, int EPI>
struct SsmmWgmmaWs : SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> {
  typedef SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> Base;
  static constexpr int kConsumers = Base::kThreads;  // BM/64 warpgroups
  static constexpr int kProducers = 128;
  static constexpr int kThreads = kConsumers + kProducers;
  static constexpr bool kShiftRegisters = kConsumers == 256;
  static constexpr int kProducerRegs = 56;  // its rows' source addresses stay in registers
  static constexpr int kConsumerRegs = 224;
  static_assert(!kShiftRegisters || kProducers * kProducerRegs + kConsumers * kConsumerRegs <= kThreads * 168,
                "the register hand-off must fit the block's pool, or setmaxnreg.inc waits forever");
  static_assert(BK == 128, "a weight row of a k-tile is one 128-byte swizzle atom");
  static constexpr int kAlignSlack = 1024;  // dynamic shared memory aligned up to a swizzle period
  static constexpr int kBarrierBytes = 2 * STAGES * 8;
  static constexpr int kSmemBytes = Base::kSmemBytes + kBarrierBytes + kAlignSlack;
  // What TMA brings per stage: every operand's values, metadata and selectors.
  static constexpr u32 kWeightTxBytes = Base::kW * (Base::kABytes + Base::kMetaBytes + Base::kSelBytes);

  // `expert` places the block in the tensor maps' rows (0 unless grouped).
  __device__ __forceinline__ void run(const SsmmArgs& args, unsigned char* smem_raw, const TmaWeightMaps& maps,
                                      int expert) {
    const int tid = threadIdx.x;
    const int row0 = blockIdx.x * BM;
    const int tok0 = blockIdx.y * BN;
    unsigned char* smem = smem_raw + ((kAlignSlack - (smem_addr(smem_raw) % kAlignSlack)) % kAlignSlack);
    int* s_ids = reinterpret_cast<int*>(smem + Base::kMainBytes);
    const u32 bars = smem_addr(smem + Base::kSmemBytes);  // full[STAGES], then empty[STAGES]
    const u32 smem_base = smem_addr(smem);
    if (tid == 0) {
      for (int s = 0; s < STAGES; ++s) {
        mbarrier_init(bars + 8 * s, kProducers + 1);           // every producer's token copies + the TMA thread
        mbarrier_init(bars + 8 * (STAGES + s), kConsumers);    // every consumer thread's release
      }
      fence_mbarrier_init();
    }
    Base::load_token_ids(args, s_ids, tok0, tid, kThreads);
    __syncthreads();
    const int k_tiles = args.k_phys / BK;
    // Broadcast from lane 0 so the compiler sees a warp-uniform role (wgmma
    // on a path it must treat as divergent gets serialized).
    const int group = __shfl_sync(0xffffffffu, tid / 128, 0);

    if (group == kConsumers / 128) {  // producer warpgroup
      if (kShiftRegisters) setmaxnreg_dec<kProducerRegs>();
      const int ptid = tid - kConsumers;
      const int seg_rows = args.k_phys / V;  // selector rows per expert
      if (ptid == 0) {
        for (int w = 0; w < Base::kW; ++w) {
          tma_prefetch_map(maps.values[w]);
          tma_prefetch_map(maps.meta[w]);
          tma_prefetch_map(maps.sel[w]);
        }
      }
      const typename Base::template TokenRows<kProducers> token_rows(args, s_ids, ptid);
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES;
        const u32 full = bars + 8 * s;
        if (kt >= STAGES) mbarrier_wait(bars + 8 * (STAGES + s), (kt / STAGES - 1) & 1);
        const u32 stage = smem_base + s * Base::kStageBytes;
        if (ptid == 0) {
          mbarrier_arrive_expect_tx(full, kWeightTxBytes);
          const int k0 = kt * BK;
          const int grow = expert * args.rows_pad + row0;  // row in the maps
#pragma unroll
          for (int w = 0; w < Base::kW; ++w) {
            const u32 a = stage + w * Base::kWBytes;
            tma_load_2d(a, maps.values[w], full, k0 / 2, grow);
            tma_load_2d(a + Base::kABytes, maps.meta[w], full, k0 / 2, grow / 16);
            tma_load_2d(a + Base::kABytes + Base::kMetaBytes, maps.sel[w], full, row0,
                        expert * seg_rows + k0 / V);
          }
        }
        token_rows.load(args, stage, kt);
        cp_async_mbarrier_arrive(full);
      }
      return;  // the consumers wait on every stage this warpgroup filled, so nothing is left in flight
    }

    // consumer warpgroups
    if (kShiftRegisters) setmaxnreg_inc<kConsumerRegs>();
    const int lane = tid % 32, warp_m = tid / 32;
    this->clear_accumulators();
    for (int kt = 0; kt < k_tiles; ++kt) {
      const int s = kt % STAGES;
      mbarrier_wait(bars + 8 * s, (kt / STAGES) & 1);
      WgmmaSpCore::stage_landed();  // the gathered tokens, as this consumer now sees them, made visible to wgmma
      this->compute_stage(smem + s * Base::kStageBytes, smem_base + s * Base::kStageBytes, kt, warp_m, 0, lane);
      mbarrier_arrive(bars + 8 * (STAGES + s));  // compute_stage ended with its wgmmas complete
    }
    const auto consumers_sync = [] { named_barrier(1, kConsumers); };
    consumers_sync();  // every stage consumed: the epilogue tile may overwrite them
    float* tile = reinterpret_cast<float*>(smem);
    this->stage_accumulators(tile, warp_m, 0, lane, consumers_sync);
    Base::store_tile(args, tile, row0, tok0, tid, kConsumers);
  }
};

}  // namespace samoyeds
