// Warp-specialized wgmma.sp expert projection (sm_90a). The block is BM/64
// consumer warpgroups plus one producer warpgroup (the last):
//   producer   fills STAGES shared-memory stages: one thread has TMA bring
//              the weight tiles, metadata and selectors (tensor maps,
//              transaction bytes on the stage's `full` mbarrier), all 128
//              gather the token rows with cp.async (each thread resolves its
//              rows once per tile; arriving on `full` when their copies
//              land) or, with TOKENS_TMA, the same thread has TMA bring the
//              token tile too (rows in order); it refills a stage once every consumer
//              has released it (`empty`), tile after tile of the block's
//              sequence (tile_scheduler.cuh);
//   consumers  each own 64 condensed rows x BN tokens: wait for a stage,
//              multiply it with wgmma.sp (row selection at segment
//              boundaries, as in SsmmPipeline), release it, move on. They do
//              not wait for each other, so one warpgroup's selection and
//              wgmma drain overlap the other's tensor-core work. Then they
//              run the tile's epilogue while the producer already fills
//              the next tile's stages (persistent launches, N = 1).
// Registers: with two consumer warpgroups (384 threads) the launch bound
// gives every thread 168; the producer hands back all but 64 and the
// consumers take 216 each (setmaxnreg), which the block's pool covers
// exactly: 128*64 + 256*216 = 384*168. With one consumer warpgroup every
// thread already has the 255 the hardware allows.
// Tiles, operand layouts, selection and epilogue are SsmmPipeline's with the
// WgmmaSpCore; only the schedule and the weight loads differ.
#pragma once
#include "samoyeds/cluster.cuh"
#include "samoyeds/mbarrier.cuh"
#include "samoyeds/ssmm_pipeline.cuh"
#include "samoyeds/tile_scheduler.cuh"
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

// SPLIT > 1: split-k. A cluster of SPLIT blocks shares each tile, block r
// taking the r-th share of its k range (whole V-column segments, so row
// selection never straddles a share). Each stages its partial f32 tile in
// its own shared memory; after a cluster barrier each block sums every
// block's tile, in rank order (deterministic), for 1/SPLIT of the tile and
// stores that part. Meant for grids of fewer tiles than SMs.
// TOKENS_FIRST: the tile order's fastest index is the token tile, not the
// row tile; ROW_GROUP: row tiles in groups that each walk all token tiles
// (tile_scheduler.cuh).
// MCAST = 2: a cluster of two blocks takes a row tile and two neighbouring
// token tiles, one each. Each block's TMA brings half of the weight values
// and metadata rows and multicasts them to both, so the pair reads its
// weights from L2 once (at large n the kernel is L2-bound, and the weights
// were a third of its L2 reads). A stage is then refilled only when the
// consumers of both blocks have released it: each warp arrives on the
// `empty` barrier of both. Each block gathers its own tokens.
// TOKENS_TMA: the call's rows are in order (row tok0 + i of the expert's
// slice is token i: the down projection's h, a shared expert's x, routed
// tokens copied into list order), so the token tile is a box of BN
// consecutive rows per 128-byte column, brought by TMA through maps.tokens
// (zeros past the rows and past k) instead of 16-byte cp.async pieces from
// every producer thread: on the H200 the same bytes arrive ~1.25x faster.
template <class T, int BM, int BN, int BK, int STAGES, int V, int NKEEP, int MGROUP, int EPI, int SPLIT = 1,
          bool TOKENS_FIRST = false, int MCAST = 1, bool TOKENS_TMA = false, int ROW_GROUP = 0>
struct SsmmWgmmaWs : SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> {
  typedef SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI> Base;
  static constexpr int kConsumers = Base::kThreads;  // BM/64 warpgroups
  static constexpr int kProducers = 128;
  static constexpr int kThreads = kConsumers + kProducers;
  static constexpr bool kShiftRegisters = kConsumers == 256;
  static constexpr int kProducerRegs = 64;  // its rows' source addresses and the tile walk stay in registers
  static constexpr int kConsumerRegs = 216;
  static_assert(!kShiftRegisters || kProducers * kProducerRegs + kConsumers * kConsumerRegs <= kThreads * 168,
                "the register hand-off must fit the block's pool, or setmaxnreg.inc waits forever");
  static_assert(BK == 128, "a weight row of a k-tile is one 128-byte swizzle atom");
  static_assert(SPLIT == 1 || SPLIT == 2 || SPLIT == 4 || SPLIT == 8, "split-k clusters of 1, 2, 4 or 8 blocks");
  static_assert(MCAST == 1 || (MCAST == 2 && SPLIT == 1), "multicast pairs, without split-k");
  static constexpr int kClusterBlocks = SPLIT * MCAST;
  // Arrivals that release a stage: every consumer warp of every block that
  // reads the stage's weights.
  static constexpr int kReleases = kConsumers / 32 * MCAST;
  static constexpr int kAlignSlack = 1024;  // dynamic shared memory aligned up to a swizzle period
  static constexpr int kBarrierBytes = 2 * STAGES * 8;
  static constexpr int kSmemBytes = Base::kSmemBytes + kBarrierBytes + kAlignSlack;
  // What lands per stage: every operand's values, metadata and selectors
  // (with multicast, half of the values and metadata from the other block).
  static constexpr u32 kWeightTxBytes = Base::kW * (Base::kABytes + Base::kMetaBytes + Base::kSelBytes);
  static constexpr u32 kTokenTxBytes = TOKENS_TMA ? Base::kBBytes : 0;  // the whole B tile
  static constexpr u32 kTxBytes = kWeightTxBytes + kTokenTxBytes;
  // Arrivals that fill a stage: the TMA thread's, plus every producer's
  // cp.async arrival where they gather the tokens.
  static constexpr int kFills = TOKENS_TMA ? 1 : kProducers + 1;
  // The producers' gather of a tile's token rows; nothing with TMA token tiles.
  struct NoGather {
    __device__ __forceinline__ NoGather(const SsmmArgs&, const int*, int) {}
    __device__ __forceinline__ void load(const SsmmArgs&, u32, int) const {}
  };
  typedef typename ConstIf<TOKENS_TMA, NoGather, typename Base::template TokenRows<kProducers>>::type GatherRows;
  // k-tiles per segment: a split-k share is a whole number of these.
  static constexpr int kUnit = V > BK ? V / BK : 1;

  // Walks the block's tiles of `problem` (tile_scheduler.cuh): tile
  // blockIdx.x / (cluster blocks), then every gridDim.x / (cluster blocks)-th
  // after it (with multicast a tile is BN * MCAST tokens wide). With N = 1
  // and no split the epilogue runs from registers, so the producer fills the
  // next tile's stages while the consumers store, and the launch may be
  // persistent (about one block per SM). Otherwise the epilogue stages
  // through the pipeline's shared memory, so the launch gives every block
  // (cluster) at most one tile.
  // `prefix` ints after the kernel's own shared memory: Problem's tile prefix.
  template <class Problem>
  __device__ __forceinline__ void run(const Problem& problem, unsigned char* smem_raw, const TmaWeightMaps& maps) {
    const int tid = threadIdx.x;
    unsigned char* smem = smem_raw + ((kAlignSlack - (smem_addr(smem_raw) % kAlignSlack)) % kAlignSlack);
    int* s_ids = reinterpret_cast<int*>(smem + Base::kMainBytes);
    const u32 bars = smem_addr(smem + Base::kSmemBytes);  // full[STAGES], then empty[STAGES]
    int* s_prefix = reinterpret_cast<int*>(smem_raw + kSmemBytes);  // past the slack: never overlaps the tiles
    const u32 smem_base = smem_addr(smem);
    const SsmmArgs& base = problem.base();
    // Row tiles over the condensed rows (rows_pad may add a tile of padding).
    const int row_tiles = ((base.m + MGROUP - 1) / MGROUP * NKEEP + BM - 1) / BM;
    if (tid == 0) {
      for (int s = 0; s < STAGES; ++s) {
        mbarrier_init(bars + 8 * s, kFills);
        mbarrier_init(bars + 8 * (STAGES + s), kReleases);   // every consumer warp's release
      }
      fence_mbarrier_init();
    }
    constexpr int kTileN = BN * MCAST;  // tokens per scheduled tile
    problem.prepare(s_prefix, row_tiles, kTileN);
    // With multicast the other block's copies and arrivals reach this one's
    // barriers: they must be initialized first.
    if (MCAST > 1)
      cluster_sync();
    else
      __syncthreads();
    const int total = problem.tiles(s_prefix, row_tiles, kTileN);
    const int rank = kClusterBlocks > 1 ? cluster_rank() : 0;
    // This block's share of the k-tiles (all of them without split-k).
    const int units = base.k_phys / BK / kUnit;
    const int split_rank = SPLIT > 1 ? rank : 0;
    const int kt_begin = units * split_rank / SPLIT * kUnit, kt_end = units * (split_rank + 1) / SPLIT * kUnit;
    const int tok_share = MCAST > 1 ? rank * BN : 0;  // this block's token tile within the scheduled tile
    const int first_tile = int(blockIdx.x) / kClusterBlocks, tile_step = int(gridDim.x) / kClusterBlocks;
    // Broadcast from lane 0 so the compiler sees a warp-uniform role (wgmma
    // on a path it must treat as divergent gets serialized).
    const int group = __shfl_sync(0xffffffffu, tid / 128, 0);

    if (group == kConsumers / 128) {  // producer warpgroup
      if (kShiftRegisters) setmaxnreg_dec<kProducerRegs>();
      const int ptid = tid - kConsumers;
      const int seg_rows = base.k_phys / V;  // selector rows per expert
      if (ptid == 0) {
        for (int w = 0; w < Base::kW; ++w) {
          tma_prefetch_map(maps.values[w]);
          tma_prefetch_map(maps.meta[w]);
          tma_prefetch_map(maps.sel[w]);
        }
        if (TOKENS_TMA) tma_prefetch_map(maps.tokens);
      }
      int it = 0, cursor = 0;
      for (int t = first_tile; t < total; t += tile_step) {
        Tile tile;
        problem.template tile<TOKENS_FIRST, ROW_GROUP>(s_prefix, cursor, t, row_tiles, BM, kTileN, tile);
        tile.tok0 += tok_share;  // past the tokens: ids of -1, zeros in, nothing stored
        // The gather's token ids and each thread's source rows, once per tile
        // (TMA token tiles need neither: rows are in order).
        if constexpr (!TOKENS_TMA) {
          named_barrier(2, kProducers);  // every producer has its rows of the previous tile
          Base::load_token_ids(tile.args, s_ids, tile.tok0, ptid, kProducers);
          named_barrier(2, kProducers);
        }
        const GatherRows token_rows(tile.args, s_ids, ptid);
        const int grow = tile.expert * base.rows_pad + tile.row0;  // row in the maps
        // The tile's first activation row in maps.tokens: the expert's slice
        // starts (tile.args.x - base.x) / ldx rows into x.
        const int xrow = TOKENS_TMA ? int((tile.args.x - base.x) / base.ldx) + tile.tok0 : 0;
        // With TOKENS_TMA the TMA thread alone fills the stages; the others
        // only keep step with the cluster barriers below.
        const int kt_stop = TOKENS_TMA && ptid != 0 ? kt_begin : kt_end;
        for (int kt = kt_begin; kt < kt_stop; ++kt, ++it) {
          const int s = it % STAGES;
          const u32 full = bars + 8 * s;
          if (it >= STAGES) mbarrier_wait(bars + 8 * (STAGES + s), (it / STAGES - 1) & 1);
          const u32 stage = smem_base + s * Base::kStageBytes;
          if (ptid == 0) {
            mbarrier_arrive_expect_tx(full, kTxBytes);
            const int k0 = kt * BK;
#pragma unroll
            for (int w = 0; w < Base::kW; ++w) {
              const u32 a = stage + w * Base::kWBytes;
              if constexpr (MCAST == 1) {
                tma_load_2d(a, maps.values[w], full, k0 / 2, grow);
                tma_load_2d(a + Base::kABytes, maps.meta[w], full, k0 / 2, grow / 16);
              } else {  // this block's share of the rows (both tiles are row-major), to every block
                constexpr unsigned short kAll = (1u << MCAST) - 1;
                tma_load_2d_multicast(a + rank * (Base::kABytes / MCAST), maps.values[w], full, k0 / 2,
                                      grow + rank * (BM / MCAST), kAll);
                tma_load_2d_multicast(a + Base::kABytes + rank * (Base::kMetaBytes / MCAST), maps.meta[w], full,
                                      k0 / 2, grow / 16 + rank * (BM / 16 / MCAST), kAll);
              }
              tma_load_2d(a + Base::kABytes + Base::kMetaBytes, maps.sel[w], full, tile.row0,
                          tile.expert * seg_rows + k0 / V);
            }
            if (TOKENS_TMA) {  // the B tile's 128-byte columns, as Swizzle128Tile lays them out
              const u32 b = stage + Base::kW * Base::kWBytes;
#pragma unroll
              for (int c = 0; c < BK / 64; ++c)
                tma_load_2d(b + c * Base::BTile::kColumnBytes, maps.tokens, full, k0 + 64 * c, xrow);
            }
          }
          if (!TOKENS_TMA) {
            token_rows.load(tile.args, stage, kt);
            cp_async_mbarrier_arrive(full);
          }
        }
        if (SPLIT > 1) {  // the consumers' two cluster barriers of this tile's epilogue
          cluster_sync();
          cluster_sync();
        }
      }
      if (MCAST > 1) cluster_sync();  // the consumers' last one (below)
      return;  // the consumers wait on every stage this warpgroup filled, so nothing is left in flight
    }

    // consumer warpgroups
    if (kShiftRegisters) setmaxnreg_inc<kConsumerRegs>();
    const int lane = tid % 32, warp_m = tid / 32;
    int it = 0, cursor = 0;
    for (int t = first_tile; t < total; t += tile_step) {
      Tile tile;
      problem.template tile<TOKENS_FIRST, ROW_GROUP>(s_prefix, cursor, t, row_tiles, BM, kTileN, tile);
      tile.tok0 += tok_share;
      this->clear_accumulators();
      for (int kt = kt_begin; kt < kt_end; ++kt, ++it) {
        const int s = it % STAGES;
        mbarrier_wait(bars + 8 * s, (it / STAGES) & 1);
        // The gathered tokens, as this consumer now sees them, made visible to
        // wgmma (TMA writes, like wgmma's reads, are async-proxy: no fence).
        if (!TOKENS_TMA) WgmmaSpCore::stage_landed();
        this->compute_stage(smem + s * Base::kStageBytes, smem_base + s * Base::kStageBytes, kt, warp_m, 0, lane);
        // compute_stage ended with the warpgroup's wgmmas complete: one
        // arrival per warp, in this block and (multicast) the other.
        __syncwarp();
        if (lane == 0) {
          const u32 empty = bars + 8 * (STAGES + s);
          mbarrier_arrive(empty);
          if (MCAST > 1) mbarrier_arrive_cluster(cluster_map_shared(empty, rank ^ 1));
        }
      }
      if constexpr (NKEEP == 1 && SPLIT == 1) {
        this->store_direct(tile.args, tile.row0, tile.tok0, warp_m, 0, lane);  // no shared memory, no barrier
      } else {  // the launch gives this block no other tile, so the stages are free once consumed
        const auto consumers_sync = [] { named_barrier(1, kConsumers); };
        consumers_sync();
        float* out = reinterpret_cast<float*>(smem);
        this->stage_accumulators(out, warp_m, 0, lane, consumers_sync);
        if constexpr (SPLIT == 1) {
          Base::store_tile(tile.args, out, tile.row0, tile.tok0, tid, kConsumers);
        } else {
          cluster_sync();  // every block's partial tile is staged
          const auto sum_of_shares = [smem_base](int at, float(&v)[8]) {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = 0.0f;
#pragma unroll
            for (int r = 0; r < SPLIT; ++r) {
              const u32 peer = cluster_map_shared(smem_base + 4 * at, r);
              float p[8];
              cluster_load4(peer, p);
              cluster_load4(peer + 16, p + 4);
#pragma unroll
              for (int j = 0; j < 8; ++j) v[j] += p[j];
            }
          };
          Base::store_tile_from(tile.args, sum_of_shares, tile.row0, tile.tok0, rank * kConsumers + tid,
                           SPLIT * kConsumers);
          cluster_sync();  // no block leaves (or reuses its tile) while another still reads it
        }
      }
    }
    // No block of a multicast pair leaves while the other may still arrive on
    // its barriers (or, in principle, copy into it).
    if (MCAST > 1) cluster_sync();
  }
};

}  // namespace samoyeds
