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
// exactly: 128*64 + 256*216 = 384*168. With three (BM = 192, 512 threads:
// 128 each) the producer keeps 32, which only the TMA token tiles' producer
// fits in (one thread issues boxes; the gather needs ~56), and the
// consumers take 160: 128*32 + 384*160 = 512*128. With one consumer
// warpgroup every thread already has the 255 the hardware allows.
// SPLIT_OPS (gated up projection, BM = 64): two consumer warpgroups over the
// same 64 rows x BN tokens, the first accumulating the gate operand, the
// second the up operand, so each holds one operand's accumulators and the
// block's tile can be 128 tokens wide (m64n128 wgmmas; both operands in
// one warpgroup fit only 64 tokens). The stages are the same; each
// warpgroup reads its own operand's weights and both read the tokens. At
// the tile's end each warpgroup stores half of the tokens: it hands the
// other half of its finished accumulators to the other warpgroup through a
// shared-memory exchange (OperandExchange, store_half), so the epilogue work
// stays split in two as without SPLIT_OPS (the gate warpgroup storing
// everything cost 18% at Mixtral's 4096 tokens).
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

// Half of one consumer warpgroup's finished accumulators (one operand,
// selection finished): token fragments [NT0, NT1), for the other warpgroup
// of a SPLIT_OPS block, which stores those tokens. Its thread with the same
// index in its warpgroup holds the same fragment rows and tokens. Register
// j of thread i at floats[j * 128 + i] (a warp's 32 floats are consecutive:
// no bank conflicts), then each fragment row's selection state.
template <class K, int NT0, int NT1>
struct OperandExchange {
  static constexpr int kFloats = K::kSlots * K::MT * (NT1 - NT0) * 4;
  static constexpr int kBytes = (kFloats + K::MT * 2) * 128 * 4;
  float* floats;
  int i;  // thread index within the warpgroup

  __device__ __forceinline__ OperandExchange(unsigned char* at, int thread)
      : floats(reinterpret_cast<float*>(at)), i(thread) {}
  __device__ __forceinline__ u32* states() const { return reinterpret_cast<u32*>(floats + kFloats * 128); }
  static __device__ __forceinline__ int reg(int s, int mt, int nt, int r) {
    return ((s * K::MT + mt) * (NT1 - NT0) + (nt - NT0)) * 4 + r;
  }

  __device__ __forceinline__ void put(const K& k) const {
#pragma unroll
    for (int s = 0; s < K::kSlots; ++s)
#pragma unroll
      for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
        for (int nt = NT0; nt < NT1; ++nt)
#pragma unroll
          for (int r = 0; r < 4; ++r) floats[reg(s, mt, nt, r) * 128 + i] = k.acc[0][s][mt][nt][r];
#pragma unroll
    for (int mt = 0; mt < K::MT; ++mt)
#pragma unroll
      for (int h = 0; h < 2; ++h) states()[(mt * 2 + h) * 128 + i] = k.sel_state[0][mt][h];
  }
  // SsmmPipeline::store_direct_range's partner: the other operand's value of
  // original row q. The storing thread put its own operand in op[0]; the
  // operands go in order (gate, up).
  template <bool OWN_IS_UP>
  struct Partner {
    const OperandExchange& x;
    __device__ __forceinline__ void fill(float (&op)[2], int mt, int h, int nt, int r, int q) const {
      const u32 state = x.states()[(mt * 2 + h) * 128 + x.i];
      float v = 0.0f;
#pragma unroll
      for (int s = 0; s < K::kSlots; ++s)
        if (!K::kSelect || K::Select::row_of(state, s) == q) v = x.floats[reg(s, mt, nt, r) * 128 + x.i];
      if (OWN_IS_UP) op[1] = op[0];
      op[OWN_IS_UP ? 0 : 1] = v;
    }
  };
};

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
// weights from L2 once (built when the kernel looked L2-bound, the weights a
// third of its L2 reads; it gained 1-3%: docs/perf-log.md, 2026-11-29,
// a6e9999). A stage is then refilled only when the
// consumers of both blocks have released it: each warp arrives on the
// `empty` barrier of both. Each block gathers its own tokens.
// STREAM_K (persistent single launches, N = 1, no warpgroup per operand,
// no split-k or multicast): the tiles that do not fill the last round are
// split along k, each into `parts` shares of whole segments run by `parts`
// blocks at once (StreamKSplit), so the round ends sooner. Share p > 0
// writes its finished accumulators (selection finished: they are sums per
// original row, which add up) to the launch's workspace and raises a flag
// per warp; share 0 waits for the flags of its warp, adds the shares in
// order 1, 2, .. (deterministic), clears the flags for the next launch and
// stores. Every block of the grid is resident, and no share waits before
// its own last tile, so the waits end.
// TOKENS_TMA: the call's rows are in order (row tok0 + i of the expert's
// slice is token i: the down projection's h, a shared expert's x, routed
// tokens copied into list order), so the token tile is a box of BN
// consecutive rows per 128-byte column, brought by TMA through maps.tokens
// (zeros past the rows and past k) instead of 16-byte cp.async pieces from
// every producer thread: on the H200 the same bytes arrive ~1.25x faster
// (docs/perf-log.md, 2026-11-29, 76426db).
template <class T, int BM, int BN, int BK, int STAGES, int V, int NKEEP, int MGROUP, int EPI, int SPLIT = 1,
          bool TOKENS_FIRST = false, int MCAST = 1, bool TOKENS_TMA = false, int ROW_GROUP = 0, bool SPLIT_OPS = false,
          bool STREAM_K = false, int OUT_CHUNK = 0>
struct SsmmWgmmaWs : SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI, SPLIT_OPS> {
  typedef SsmmPipeline<WgmmaSpCore, T, BM, BN, BK, BM / 16, 1, STAGES, V, NKEEP, MGROUP, EPI, SPLIT_OPS> Base;
  static_assert(!SPLIT_OPS || BM == 64, "a warpgroup per operand over 64 rows: two consumer warpgroups");
  // BM/64 warpgroups, one per operand with SPLIT_OPS.
  static constexpr int kConsumers = Base::kThreads * (SPLIT_OPS ? Base::kW : 1);
  static constexpr int kProducers = 128;
  static constexpr int kThreads = kConsumers + kProducers;
  static constexpr bool kShiftRegisters = kConsumers == 256 || kConsumers == 384;
  static_assert(kConsumers <= 384, "at most three consumer warpgroups");
  static_assert(kConsumers < 384 || TOKENS_TMA, "three consumer warpgroups leave the producer 32 registers: no gather");
  // Two consumer warpgroups: the gather's source rows and the tile walk stay
  // in the producer's registers.
  static constexpr int kProducerRegs = kConsumers == 384 ? 32 : 64;
  static constexpr int kConsumerRegs = kConsumers == 384 ? 160 : 216;
  // What __launch_bounds__(kThreads, 1) gives each thread: the register
  // file's share, in the allocation's steps of 8 (168 at 384 threads).
  static constexpr int kLaunchRegs = 65536 / kThreads / 8 * 8;
  static_assert(!kShiftRegisters || kProducers * kProducerRegs + kConsumers * kConsumerRegs <= kThreads * kLaunchRegs,
                "the register hand-off must fit the block's pool, or setmaxnreg.inc waits forever");
  static_assert(BK / 2 * Base::kEB == 128, "a weight row of a k-tile is one 128-byte swizzle atom");
  // FP8 so far: token tiles by TMA (rows in order, as the quantizing copy
  // writes them), their scales by the producer threads, one block per tile.
  static_assert(!Base::kFp8 || (TOKENS_TMA && SPLIT == 1 && MCAST == 1 && !STREAM_K),
                "FP8 takes its token tiles by TMA, without split-k, multicast or stream-K");
  static_assert(SPLIT == 1 || SPLIT == 2 || SPLIT == 4 || SPLIT == 8, "split-k clusters of 1, 2, 4 or 8 blocks");
  static_assert(MCAST == 1 || (MCAST == 2 && SPLIT == 1), "multicast pairs, without split-k");
  static constexpr int kClusterBlocks = SPLIT * MCAST;
  // Arrivals that release a stage: every consumer warp of every block that
  // reads the stage's weights.
  static constexpr int kReleases = kConsumers / 32 * MCAST;
  static constexpr int kAlignSlack = 1024;  // dynamic shared memory aligned up to a swizzle period
  // The operand hand-off of SPLIT_OPS where the epilogue runs from registers
  // (the stages are then being refilled for the next tile): warpgroup g
  // stores token half g of the tile, so it hands the other half of its
  // operand to the other warpgroup through region g of the exchange (after
  // the barriers), guarded by mbarriers full[g] and empty[g].
  static constexpr bool kExchange = SPLIT_OPS && NKEEP == 1 && SPLIT == 1;
  static constexpr int kHalfNT = Base::NT / 2;
  static_assert(!kExchange || Base::NT % 2 == 0, "two halves of the token fragments");
  template <int G>  // what warpgroup G writes: the other half
  using ExchangeOut = OperandExchange<Base, (1 - G) * kHalfNT, (2 - G) * kHalfNT>;
  static constexpr int kRegionBytes = ExchangeOut<0>::kBytes;
  static constexpr int kExchangeBytes = kExchange ? 2 * kRegionBytes : 0;
  static constexpr int kBarrierBytes = 2 * STAGES * 8 + (kExchange ? 32 : 0);
  // OUT_CHUNK > 0: the tile leaves through shared memory, OUT_CHUNK tokens at
  // a time (boxes of 64 original rows by the chunk's tokens), by TMA stores
  // that run on while the next tile's k-tiles multiply; the epilogue from
  // registers kept the tensor cores idle while the stores drained (15% of the
  // math-only time: docs/perf-log.md, 2026-11-30, 38a20c2..508e639, and
  // 3aa224d for this form). Each consumer warpgroup stores its
  // own boxes (its 64 condensed rows are MGROUP boxes) with its own barrier
  // and issuing thread, so no warpgroup waits for another's epilogue, and
  // stages chunks in two buffers in turn, so writing one chunk overlaps the
  // TMA's read of the one before (one barrier a chunk). The chunk size is
  // the generator's (WgmmaSpFamily::tma_store_chunk_tokens: the largest two
  // buffers of which fit beside the stages).
  static constexpr bool kTmaStore = OUT_CHUNK > 0;
  static constexpr int kOutBoxes = BM * MGROUP / 64;
  static constexpr int kOutChunkTok = kTmaStore ? OUT_CHUNK : 8;
  static constexpr int kOutBufBytes = kOutBoxes * kOutChunkTok * 128;
  static constexpr int kOutStageBytes = kTmaStore ? 2 * kOutBufBytes : 0;
  static constexpr int kOutOffset = (Base::kSmemBytes + kBarrierBytes + kExchangeBytes + 1023) / 1024 * 1024;
  static_assert(!kTmaStore || (NKEEP == 1 && SPLIT == 1 && !SPLIT_OPS && (BM * MGROUP) % 64 == 0 &&
                               BN % OUT_CHUNK == 0 && (BN / OUT_CHUNK) % 2 == 0 && OUT_CHUNK % 8 == 0),
                "TMA stores: one output row per slot, no split-k, every operand in each warpgroup, chunks in "
                "pairs (each tile starts on the first buffer)");
  static constexpr int kSmemBytes =
      (kTmaStore ? kOutOffset + kOutStageBytes : Base::kSmemBytes + kBarrierBytes + kExchangeBytes) + kAlignSlack;
  // What lands per stage: every operand's values, metadata and selectors
  // (with multicast, half of the values and metadata from the other block).
  // FP8: each operand's weight scales too (the tokens' scales are stored by
  // the producer threads, which arrive instead: kFills).
  static constexpr u32 kWeightTxBytes =
      Base::kW * (Base::kABytes + Base::kMetaBytes + Base::kSelBytes + Base::kWScaleBytes);
  static constexpr u32 kTokenTxBytes = TOKENS_TMA ? Base::kBBytes : 0;  // the whole B tile
  static constexpr u32 kTxBytes = kWeightTxBytes + kTokenTxBytes;
  // Arrivals that fill a stage: the TMA thread's, plus every producer's
  // cp.async arrival where they gather the tokens.
  // FP8: every producer thread also stores a token scale and arrives.
  static constexpr int kFills = TOKENS_TMA && !Base::kFp8 ? 1 : kProducers + 1;
  static_assert(!Base::kFp8 || Base::kKBlocks * BN <= kProducers, "a token scale per producer thread and stage");
  // The producers' gather of a tile's token rows; nothing with TMA token tiles.
  struct NoGather {
    __device__ __forceinline__ NoGather(const SsmmArgs&, const int*, int) {}
    __device__ __forceinline__ void load(const SsmmArgs&, u32, int) const {}
  };
  typedef typename ConstIf<TOKENS_TMA, NoGather, typename Base::template TokenRows<kProducers>>::type GatherRows;
  // k-tiles per segment: a split-k share is a whole number of these.
  static constexpr int kUnit = V > BK ? V / BK : 1;
  static_assert(!STREAM_K || (SPLIT == 1 && MCAST == 1 && NKEEP == 1 && !SPLIT_OPS),
                "stream-K tails: one block per tile share, stores from registers, every operand in each warpgroup");
  // What a stream-K share hands to share 0: every consumer thread's
  // accumulators, register j of thread i at [j * kConsumers + i].
  static constexpr int kShareRegs = Base::kWA * Base::kSlots * Base::MT * Base::NT * 4;
  static constexpr int kShareFloats = kShareRegs * kConsumers;

  // The block's work, the same for the producer and the consumers:
  // body(tile, first k-tile, end k-tile, share, shares, split tile) for
  // each tile (share 0 of 1) and, with STREAM_K, its share of a split tile.
  struct Walk {
    int total, units, kt_begin, kt_end, first_tile, tile_step;
    template <class Body>
    __device__ __forceinline__ void each(Body&& body) const {
      if constexpr (STREAM_K) {
        const StreamKSplit sk = stream_k_split(total, int(gridDim.x), units);
        for (int t = first_tile; t < sk.full; t += tile_step) body(t, kt_begin, kt_end, 0, 1, 0);
        const int b = int(blockIdx.x);
        if (b < sk.rest * sk.parts) {
          const int u = b / sk.parts, p = b % sk.parts;
          body(sk.full + u, units * p / sk.parts * kUnit, units * (p + 1) / sk.parts * kUnit, p, sk.parts, u);
        }
      } else {
        for (int t = first_tile; t < total; t += tile_step) body(t, kt_begin, kt_end, 0, 1, 0);
      }
    }
  };

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
    // full[STAGES], empty[STAGES], then the exchange's full[2] and empty[2]
    const u32 bars = smem_addr(smem + Base::kSmemBytes);
    const u32 exchange_bars = bars + 16 * STAGES;
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
      if (kExchange)  // every thread of the warpgroup that writes (full), or reads (empty), the region
        for (int b = 0; b < 4; ++b) mbarrier_init(exchange_bars + 8 * b, 128);
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
    const Walk walk{total, units, kt_begin, kt_end, first_tile, tile_step};
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
      walk.each([&](int t, int kb, int ke, int, int, int) {
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
        const int kt_stop = TOKENS_TMA && !Base::kFp8 && ptid != 0 ? kb : ke;
        for (int kt = kb; kt < kt_stop; ++kt, ++it) {
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
              if (Base::kFp8)  // [k-block][16-row tile] of the transposed scales
                tma_load_2d(a + Base::kABytes + Base::kMetaBytes + Base::kSelBytes, maps.wscale[w], full, grow / 16,
                            k0 / 128);
            }
            if (TOKENS_TMA) {  // the B tile's 128-byte columns, as Swizzle128Tile lays them out
              const u32 b = stage + Base::kW * Base::kWBytes;
              constexpr int kColumnValues = 128 / Base::kEB;
#pragma unroll
              for (int c = 0; c < BK / kColumnValues; ++c)
                tma_load_2d(b + c * Base::BTile::kColumnBytes, maps.tokens, full, k0 + kColumnValues * c, xrow);
            }
          }
          if constexpr (Base::kFp8) {  // the stage's token scales, [k-block][token]: one a thread
            float v = 0.0f;
            if (ptid < Base::kKBlocks * BN) {
              const int blk = ptid / BN, tok = ptid % BN, group = kt * BK / 128 + blk;
              if (tile.tok0 + tok < tile.args.n && group * 128 < base.k)
                v = base.x_scale_inv[u64(group) * u64(base.x_scale_ld) + u64(xrow + tok)];
              reinterpret_cast<float*>(smem + s * Base::kStageBytes + Base::kW * Base::kWBytes + Base::kBBytes)[ptid] = v;
            }
            mbarrier_arrive(full);  // release: the consumers' wait on `full` sees the store
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
      });
      if (MCAST > 1) cluster_sync();  // the consumers' last one (below)
      return;  // the consumers wait on every stage this warpgroup filled, so nothing is left in flight
    }

    // consumer warpgroups
    if (kShiftRegisters) setmaxnreg_inc<kConsumerRegs>();
    const int lane = tid % 32, warp_m = (tid / 32) % (BM / 16);
    if (SPLIT_OPS) this->op_base = group;  // warpgroup 0 the gate, 1 the up operand
    int it = 0, cursor = 0;
    walk.each([&](int t, int kb, int ke, int share, int shares, int split_tile) {
      Tile tile;
      problem.template tile<TOKENS_FIRST, ROW_GROUP>(s_prefix, cursor, t, row_tiles, BM, kTileN, tile);
      tile.tok0 += tok_share;
      this->clear_accumulators();
      for (int kt = kb; kt < ke; ++kt, ++it) {
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
      if constexpr (STREAM_K) {
        if (shares > 1) {
          store_stream_k_share(tile, base, share, shares, split_tile, warp_m, lane);
          return;
        }
      }
      if constexpr (kExchange) {
        // Both warpgroups store half the tokens: the same epilogue work as
        // two warpgroups of both operands, in parallel.
        unsigned char* regions = smem + Base::kSmemBytes + kBarrierBytes;
        const int j = (t - first_tile) / tile_step;  // the block's j-th tile
        if (group == 0)
          store_half<0>(tile, regions, exchange_bars, j, warp_m, lane);
        else
          store_half<1>(tile, regions, exchange_bars, j, warp_m, lane);
      } else if (kTmaStore && tile.args.out_by_tma) {
        store_by_tma(tile, smem_base + kOutOffset, maps.out, warp_m, lane);
      } else if constexpr (NKEEP == 1 && SPLIT == 1) {
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
    });
    // The block's shared memory stays until its last stores have read it.
    if (kTmaStore && tid % 128 == 0) tma_store_wait_all();
    // No block of a multicast pair leaves while the other may still arrive on
    // its barriers (or, in principle, copy into it).
    if (MCAST > 1) cluster_sync();
  }

  // The TMA-store epilogue (OUT_CHUNK), chunk by chunk of the tile's tokens,
  // per consumer warpgroup. Chunk c goes to buffer c % 2 (a tile has an even
  // number of chunks, so every tile starts on buffer 0). Before the barrier
  // that releases chunk c to the TMA, the warpgroup's first thread waits
  // until the chunk before (of this tile or the last) has been read, so
  // after the barrier chunk c + 1 may overwrite its buffer.
  __device__ __forceinline__ void store_by_tma(const Tile& tile, u32 boxes_addr, const TensorMap& map, int warp_m,
                                               int lane) {
    // Opaque copies: the staging addresses derive from them, and computed
    // ahead (they are the same every tile) they stayed live across the k-loop
    // and spilled three consumer warpgroups' registers.
    asm volatile("" : "+r"(boxes_addr), "+r"(warp_m), "+r"(lane));
    this->finish_selection();
    const typename Base::WarpScales scales(tile.args, tile.tok0, lane);
    const int group = warp_m / 4;  // the warpgroup: original rows 64 * MGROUP * group .. of the tile
    const bool issuer = threadIdx.x % 128 == 0;
#pragma unroll
    for (int c = 0; c < BN / kOutChunkTok; ++c) {
      const int buf = (c % 2) * kOutBufBytes;
      this->template stage_output_chunk<kOutChunkTok>(tile.args, tile.row0 * MGROUP, boxes_addr + buf, c, scales,
                                                      warp_m, lane);
      fence_proxy_async_shared();  // the writes, visible to the TMA's reads
      if (issuer) tma_store_wait_read<0>();
      named_barrier(3 + group, 128);
      if (issuer) {
        const int row = tile.row0 * MGROUP, tok = tile.tok0 + c * kOutChunkTok;
#pragma unroll
        for (int j = group * MGROUP; j < (group + 1) * MGROUP; ++j)
          tma_store_2d(map, boxes_addr + buf + j * kOutChunkTok * 128, row + 64 * j, tok);
        tma_store_commit();
      }
    }
  }

  // The end of a stream-K share (STREAM_K, above): share p > 0 hands its
  // accumulators to share 0, which adds them in order and stores the tile.
  // Flags are per consumer warp: thread i of share 0 reads only what thread
  // i of the others wrote, so a warp waits for its own warps and no more.
  __device__ __forceinline__ void store_stream_k_share(const Tile& tile, const SsmmArgs& base, int share, int shares,
                                                       int split_tile, int warp_m, int lane) {
    this->finish_selection();  // sums per original row: the shares add up
    const int i = threadIdx.x;  // the consumers are threads 0 .. kConsumers - 1
    int* flag = base.stream_k_flags + split_tile * (kConsumers / 32) + i / 32;
    float* partials = base.stream_k_partials + size_t(split_tile) * (shares - 1) * kShareFloats;
    float* acc = &this->acc[0][0][0][0][0];
    if (share > 0) {
      float* mine = partials + size_t(share - 1) * kShareFloats;
#pragma unroll
      for (int j = 0; j < kShareRegs; ++j) mine[j * kConsumers + i] = acc[j];
      __syncwarp();
      if (lane == 0) global_add_release(flag, 1);
      return;
    }
    if (lane == 0)
      while (global_load_acquire(flag) < shares - 1) {
      }
    __syncwarp();
    for (int q = 1; q < shares; ++q) {
      const float* theirs = partials + size_t(q - 1) * kShareFloats;
#pragma unroll
      for (int j = 0; j < kShareRegs; ++j) acc[j] += global_load_l2(theirs + j * kConsumers + i);
    }
    if (lane == 0) *flag = 0;  // for the next launch, which starts after this one completes
    this->template store_direct_range<0, Base::NT>(tile.args, tile.row0, tile.tok0, warp_m, 0, lane,
                                                   typename Base::NoPartner());
  }

  // SPLIT_OPS epilogue of warpgroup G for the block's j-th tile: hand the
  // other warpgroup its half (once it has read tile j-1's: phase j-1 of
  // empty[G]; then phase j of full[G]), take this half of the other operand
  // (phase j of full[1-G]), store, release (empty[1-G]).
  template <int G>
  __device__ __forceinline__ void store_half(const Tile& tile, unsigned char* regions, u32 bars, int j, int warp_m,
                                             int lane) {
    const int i = threadIdx.x % 128;
    const ExchangeOut<G> out(regions + G * kRegionBytes, i);
    const ExchangeOut<1 - G> in(regions + (1 - G) * kRegionBytes, i);  // what the other wrote: this half
    const u32 full_out = bars + 8 * G, full_in = bars + 8 * (1 - G), empty_out = bars + 16 + 8 * G,
              empty_in = bars + 16 + 8 * (1 - G);
    this->finish_selection();
    if (j > 0) mbarrier_wait(empty_out, (j - 1) & 1);
    out.put(*this);
    mbarrier_arrive(full_out);
    mbarrier_wait(full_in, j & 1);
    this->template store_direct_range<G * kHalfNT, (G + 1) * kHalfNT>(
        tile.args, tile.row0, tile.tok0, warp_m, 0, lane, typename ExchangeOut<1 - G>::template Partner<G == 1>{in});
    mbarrier_arrive(empty_in);
  }
};

}  // namespace samoyeds
