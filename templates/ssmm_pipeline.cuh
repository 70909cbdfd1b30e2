// Expert projection over index-selected tokens, generic over the sparse MMA
// core (Core: WarpMmaSpCore, mma.sp on sm_80+, or WgmmaSpCore, wgmma.sp on
// sm_90a). One block computes BM condensed weight rows x BN tokens:
//   main loop   multistage cp.async pipeline over k (weights, metadata and
//               selectors of every operand, plus the gathered token rows),
//               the core's MMAs into the slot-0 accumulators, row selection
//               at every V-column segment boundary (row_select.cuh);
//   epilogue    accumulators -> f32 tile in shared memory at their original
//               rows -> epilogue function -> 16-byte stores into y[token, row].
// Both cores leave each warp's accumulators in the m16n8 fragment layout, so
// selection and epilogue are shared.
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/cp_async.cuh"
#include "samoyeds/epilogue.cuh"
#include "samoyeds/kernel_args.cuh"
#include "samoyeds/row_select.cuh"
#include "samoyeds/smem_layout.cuh"

namespace samoyeds {

// SPLIT_OPS (the warp-specialized wgmma_sp kernel, two weight operands): a
// thread accumulates only one of the operands, operand(0) = op_base; the
// kernel gives each operand its own consumer warpgroups. Without it every
// thread accumulates every operand and operand(i) = i.
template <class Core, class T, int BM, int BN, int BK, int WARPS_M, int WARPS_N, int STAGES, int V, int NKEEP,
          int MGROUP, int EPI, bool SPLIT_OPS = false>
struct SsmmPipeline {
  typedef T ElemType;
  static constexpr int kBK = BK, kBN = BN, WARPS_N_ = WARPS_N;
  // FP8 (T = E4M3): one byte per operand value, k64 MMA steps, and each
  // 128-deep k-block's product promoted into the f32 accumulators times its
  // weight and token scales (promote); the 16-bit types: k32 steps.
  static constexpr int kEB = Elem<T>::kOperandBytes;
  static constexpr bool kFp8 = kEB == 1;
  static constexpr int kStepK = 64 / kEB;
  static constexpr int kThreads = WARPS_M * WARPS_N * 32;
  static constexpr int kW = Epilogue<EPI>::kOperands;  // weight operands in a stage
  static constexpr int kWA = SPLIT_OPS ? 1 : kW;         // of them, accumulated by one thread
  static_assert(!SPLIT_OPS || kW == 2, "splitting the operands needs two of them");
  static constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
  static constexpr int MT = WM / 16, NT = WN / 8;
  static constexpr bool kSelect = NKEEP < MGROUP;
  static constexpr int kSlots = kSelect ? MGROUP : 1;
  static constexpr int kSteps = BK / kStepK;
  static constexpr int kSegsPerTile = BK >= V ? BK / V : 1;
  static constexpr int kOutRows = BM / NKEEP * MGROUP;  // original rows covered by the tile

  // Shared memory of one pipeline stage, per weight operand then the tokens,
  // in the core's operand layout.
  typedef typename Core::template Tile<BM, BK / 2 * kEB> ATile;  // BK/2 values per row
  typedef typename Core::template Tile<BN, BK * kEB> BTile;      // BK values per row
  static constexpr int kABytes = ATile::kBytes;
  // Metadata comes in whole 128-column k-tiles of the packed layout: a
  // 64-column stage takes the one its columns lie in (load_weights).
  static constexpr int kMetaCols = ConstMax<BK, 128>::value;
  static constexpr int kMetaBytes = (BM / 16) * kMetaCols / 64 * 128;
  static constexpr int kSelBytes = kSegsPerTile * BM;
  // FP8 scales per 128-deep k-block of the stage: one per 16 weight rows
  // ([block][BM/16], after each operand's selectors) and one per token
  // ([block][BN], after the token tile).
  static constexpr int kKBlocks = kFp8 ? BK / 128 : 0;
  static constexpr int kWScaleBytes = kKBlocks * (BM / 16) * 4;
  static constexpr int kXScaleBytes = kKBlocks * BN * 4;
  // Each operand's part starts where the core's operand layout needs it to.
  static constexpr int kWBytes = (kABytes + kMetaBytes + kSelBytes + kWScaleBytes + Core::kStageAlign - 1) /
                                 Core::kStageAlign * Core::kStageAlign;
  static constexpr int kBBytes = BTile::kBytes;
  static constexpr int kStageBytes =
      (kW * kWBytes + kBBytes + kXScaleBytes + Core::kStageAlign - 1) / Core::kStageAlign * Core::kStageAlign;
  static constexpr int kEpiLd = kOutRows + 4;  // floats; the pad staggers banks
  static constexpr int kEpiBytes = kW * BN * kEpiLd * 4;
  static constexpr int kMainBytes = ConstMax<STAGES * kStageBytes, kEpiBytes>::value;
  static constexpr int kSmemBytes = kMainBytes + BN * 4;  // + token ids

  static_assert(WM % 16 == 0 && WN % 8 == 0, "warp tile must be a multiple of 16x8");
  static_assert(BK % 64 == 0, "metadata is laid out in 64-column slabs");
  static_assert(!kFp8 || (BK == 256 && V % 128 == 0 && NKEEP == 1),
                "FP8: 256-column k-tiles (128-byte rows), segments of whole scale blocks, one kept row per group");
  static_assert(BM % NKEEP == 0, "a block tile must hold whole row groups");
  static_assert(kOutRows % 8 == 0, "epilogue stores 8 rows at a time");

  // Visits the ROWS x CHUNKS 16-byte chunks of a tile, spread over the block.
  // Threads share a row and take interleaved chunks, so that one copy
  // instruction reads whole 32-byte sectors (giving each thread consecutive
  // chunks leaves every sector half used by one instruction: it cost 10-20%
  // in the benchmark). A thread keeps its rows, so it needs one source row
  // address per row per stage (a gathered token row for B). At least
  // Core::kMinThreadsPerRow share a row: the wgmma_sp producer (128 threads,
  // 128-token tiles) would otherwise read whole rows per thread; the warp
  // core keeps one row per thread where it can (more rows per thread spilled
  // some of its configs).
  // The split: thread tid takes rows p * kRowsPerPass + tid / kThreadsPerRow
  // (p < kPasses) and, in each, chunks tid % kThreadsPerRow + j * kThreadsPerRow
  // (j < kChunksPerThreadRow); kEven says whether the tile splits that way.
  template <int NTHREADS, int ROWS, int CHUNKS>
  struct ChunkSplit {
    static constexpr int kTotal = ROWS * CHUNKS;
    static constexpr int kPer = kTotal / NTHREADS;
    static constexpr int kThreadsPerRow =
        kPer > 0 && CHUNKS % kPer == 0 ? ConstMax<CHUNKS / kPer, Core::kMinThreadsPerRow>::value : 0;
    static constexpr int kRowsPerPass = kThreadsPerRow > 0 ? NTHREADS / kThreadsPerRow : 0;
    static constexpr bool kEven = kTotal % NTHREADS == 0 && kThreadsPerRow > 0 && CHUNKS % kThreadsPerRow == 0 &&
                                  NTHREADS % kThreadsPerRow == 0 && ROWS % kRowsPerPass == 0;
    static constexpr int kPasses = kEven ? ROWS / kRowsPerPass : 0;
    static constexpr int kChunksPerThreadRow = kEven ? CHUNKS / kThreadsPerRow : 0;
  };

  template <int NTHREADS, int ROWS, int CHUNKS, class F>
  static __device__ __forceinline__ void for_each_chunk(int tid, F&& f) {
    typedef ChunkSplit<NTHREADS, ROWS, CHUNKS> S;
    if (S::kEven) {
      const int row = tid / S::kThreadsPerRow, lane_in_row = tid % S::kThreadsPerRow;
#pragma unroll
      for (int p = 0; p < S::kPasses; ++p)
#pragma unroll
        for (int j = 0; j < S::kChunksPerThreadRow; ++j)
          f(p * S::kRowsPerPass + row, lane_in_row + j * S::kThreadsPerRow);
    } else {
#pragma unroll
      for (int c = tid; c < S::kTotal; c += NTHREADS) f(c / CHUNKS, c % CHUNKS);
    }
  }

  // Index, among a stage's metadata words of one operand, of the word lane
  // `lane` of 16-row tile `tile` gives the k32 steps 2p and 2p+1. Both cores'
  // stages hold the packed layout's k-tiles of 32 word pairs per tile (TMA
  // or load_weights); a 64-column stage is half of one (meta_half says which).
  // FP8 (fp8_device_layout.hpp): a lane's four words of a 256-column k-tile,
  // word p for k64 step p.
  __device__ __forceinline__ int meta_word(int tile, int p, int lane) const {
    if (kFp8) return (tile * 32 + lane) * 4 + p;
    if (BK == 64) return (tile * 32 + lane) * 2 + meta_half;
    return ((tile * (BK / 128) + p / 2) * 32 + lane) * 2 + p % 2;
  }
  int meta_half = 0;  // BK = 64: the k-tile in compute_stage is odd
  // The warp core's metadata words of the pair of k32 steps it is in.
  u32 pair_meta[kWA][MT];

  float acc[kWA][kSlots][MT][NT][4];  // [i]: operand(i)
  // FP8: the current k-block's product, which the MMAs write (acc holds the
  // scaled sums, one slot per original row of the group).
  float pacc[kFp8 ? kWA : 1][MT][NT][4];
  // The tile's token (column) of accumulator register 2 * h + e of fragment
  // nt, in the m16n8 fragment layout both cores leave.
  static __device__ __forceinline__ int fragment_token(int warp_n, int nt, int lane, int e) {
    return warp_n * WN + nt * 8 + (lane % 4) * 2 + e;
  }
  // Row selection (row_select.cuh), as the core prefers, and each fragment
  // row's selection state.
  typedef typename ConstIf<kFp8, DirectSelect,
                           typename ConstIf<Core::kSelectByDifference, DifferenceSelect, SwapSelect>::type>::type
      Select;
  u32 sel_state[kWA][MT][2];
  // A k-tile's metadata words of this thread, for cores that read them
  // before their MMAs start (WgmmaSpCore::prepare); unused otherwise.
  u32 stage_meta[kWA][kFp8 ? kSteps : kSteps / 2];
  int op_base = 0;  // SPLIT_OPS: the operand this thread accumulates (warp-uniform)
  // The stage operand whose accumulators are acc[i].
  __device__ __forceinline__ int operand(int i) const { return SPLIT_OPS ? op_base + i : i; }

  __device__ __forceinline__ void run(const SsmmArgs& args, unsigned char* smem) {
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int warp_m = warp % WARPS_M, warp_n = warp / WARPS_M;
    const int row0 = blockIdx.x * BM;  // condensed rows
    const int tok0 = blockIdx.y * BN;
    int* s_ids = reinterpret_cast<int*>(smem + kMainBytes);
    load_token_ids(args, s_ids, tok0, tid, kThreads);
    clear_accumulators();
    __syncthreads();

    const int k_tiles = args.k_phys / BK;
    const u32 smem_base = smem_addr(smem);
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
      if (s < k_tiles) load_stage<kThreads>(args, smem_base + s * kStageBytes, s, row0, s_ids, tid);
      cp_async_commit();
    }
    for (int kt = 0; kt < k_tiles; ++kt) {
      cp_async_wait<STAGES - 2>();
      Core::stage_landed();
      __syncthreads();
      const int next = kt + STAGES - 1;
      if (next < k_tiles) load_stage<kThreads>(args, smem_base + (next % STAGES) * kStageBytes, next, row0, s_ids, tid);
      cp_async_commit();
      compute_stage(smem + (kt % STAGES) * kStageBytes, smem_base + (kt % STAGES) * kStageBytes, kt,
                    warp_m, warp_n, lane);
    }
    cp_async_wait<0>();
    __syncthreads();
    float* tile = reinterpret_cast<float*>(smem);
    stage_accumulators(tile, warp_m, warp_n, lane, [] { __syncthreads(); });
    store_tile(args, tile, row0, tok0, tid, kThreads);
  }

  // The block's token ids (-1: none, or out of range with the error flag raised).
  static __device__ __forceinline__ void load_token_ids(const SsmmArgs& args, int* s_ids, int tok0, int tid,
                                                        int nthreads) {
    for (int t = tid; t < BN; t += nthreads) {
      const int i = tok0 + t;
      int id = -1;
      if (i < args.n) {
        id = args.ids ? args.ids[i] : i;
        if (id < 0 || id >= args.x_rows) {
          if (args.error_flag) global_or(args.error_flag, kErrorBadTokenId);
          id = -1;
        }
      }
      s_ids[t] = id;
    }
  }

  __device__ __forceinline__ void clear_accumulators() {
#pragma unroll
    for (int w = 0; w < kWA; ++w)
#pragma unroll
      for (int s = 0; s < kSlots; ++s)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[w][s][mt][nt][e] = 0.0f;
#pragma unroll
    for (int w = 0; w < kWA; ++w)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) sel_state[w][mt][0] = sel_state[w][mt][1] = Select::start(kSlots);
  }

  // One stage's copies, spread over NTHREADS threads (tid in [0, NTHREADS)).
  template <int NTHREADS>
  static __device__ __forceinline__ void load_stage(const SsmmArgs& args, u32 stage, int kt, int row0,
                                                    const int* s_ids, int tid) {
    load_weights<NTHREADS>(args, stage, kt, row0, tid);
    load_tokens<NTHREADS>(args, stage, kt, s_ids, tid);
  }

  // Weights, metadata and selectors of every operand for k-tile kt.
  template <int NTHREADS>
  static __device__ __forceinline__ void load_weights(const SsmmArgs& args, u32 stage, int kt, int row0, int tid) {
    const int k0 = kt * BK;
    const int half_k = args.k_phys / 2;
#pragma unroll
    for (int w = 0; w < kW; ++w) {
      const u32 a_base = stage + w * kWBytes;
      for_each_chunk<NTHREADS, BM, BK / 16>(tid, [&](int r, int ch) {
        const u16* src = args.values[w] + u64(row0 + r) * half_k + k0 / 2 + ch * 8;
        cp_async_16(a_base + ATile::offset(r, ch), src, true);
      });
      const u32 meta_base = a_base + kABytes;
      // Per tile, the 128-column k-tiles of metadata the stage's columns lie
      // in: words from (k0 / 128) * 64 of its row of k_phys/2, as they lie.
      // A lane's two words of a k-tile sit side by side (device_layout.hpp),
      // so a 64-column stage cannot take its half in 16-byte pieces; it
      // takes the whole k-tile (4-byte copies of its half made mma_sp 5%
      // slower at n = 4096 on the H200; the whole k-tile costs 1-3%:
      // docs/perf-log.md, 2026-11-30, c7e0768).
      constexpr int kChunksPerTile = kMetaCols / 8;
#pragma unroll
      for (int c = tid; c < kMetaBytes / 16; c += NTHREADS) {
        const int tile = c / kChunksPerTile, part = c % kChunksPerTile;
        cp_async_16(meta_base + c * 16, args.meta[w] + u64(row0 / 16 + tile) * half_k + (k0 / 128) * 64 + part * 4,
                    true);
      }
      const u32 sel_base = meta_base + kMetaBytes;
      constexpr int kSelChunks = kSelBytes / 16;
#pragma unroll
      for (int c = tid; c < kSelChunks; c += NTHREADS) {
        const int seg = c / (BM / 16), part = c % (BM / 16);
        const u8* src = args.sel[w] + u64(k0 / V + seg) * args.rows_pad + row0 + part * 16;
        cp_async_16(sel_base + c * 16, src, true);
      }
    }
  }

  // The block's gathered token rows for k-tile kt (zeros past k or for an id of -1).
  template <int NTHREADS>
  static __device__ __forceinline__ void load_tokens(const SsmmArgs& args, u32 stage, int kt, const int* s_ids,
                                                     int tid) {
    const int k0 = kt * BK;
    const u32 b_base = stage + kW * kWBytes;
    for_each_chunk<NTHREADS, BN, BK / 8>(tid, [&](int t, int ch) {
      const int id = s_ids[t];
      const int col = k0 + ch * 8;
      const bool valid = id >= 0 && col < args.k;
      const u16* src = valid ? args.x + u64(id) * args.ldx + col : args.x;
      cp_async_16(b_base + BTile::offset(t, ch), src, valid);
    });
  }

  // The gathered token rows one thread copies, resolved once per block: the
  // id list does not change along k, and load_tokens re-reads an id for
  // every copy (the cp.async asm clobbers memory, so the compiler cannot keep
  // it), which put a shared-memory load latency in front of each copy of the
  // wgmma_sp producer. Same thread-to-chunk split as for_each_chunk. The
  // lockstep pipeline keeps load_tokens: its threads also hold the
  // accumulators and have no registers to keep rows across the k loop.
  template <int NTHREADS>
  struct TokenRows {
    typedef ChunkSplit<NTHREADS, BN, BK / 8> S;
    static_assert(S::kEven, "every thread copies whole interleaved chunk sets of whole rows");
    const u16* src[S::kPasses];  // this thread's rows in x; null for an id of -1
    int first_row, first_chunk;

    __device__ __forceinline__ TokenRows(const SsmmArgs& args, const int* s_ids, int tid)
        : first_row(tid / S::kThreadsPerRow), first_chunk(tid % S::kThreadsPerRow) {
#pragma unroll
      for (int p = 0; p < S::kPasses; ++p) {
        const int id = s_ids[p * S::kRowsPerPass + first_row];
        src[p] = id >= 0 ? args.x + u64(id) * args.ldx : nullptr;
      }
    }

    // k-tile kt of every row (zeros past k or for an id of -1).
    __device__ __forceinline__ void load(const SsmmArgs& args, u32 stage, int kt) const {
      const int k0 = kt * BK;
      const u32 b_base = stage + kW * kWBytes;
#pragma unroll
      for (int p = 0; p < S::kPasses; ++p)
#pragma unroll
        for (int j = 0; j < S::kChunksPerThreadRow; ++j) {
          const int ch = first_chunk + j * S::kThreadsPerRow;
          const int col = k0 + ch * 8;
          const bool valid = src[p] != nullptr && col < args.k;
          cp_async_16(b_base + BTile::offset(p * S::kRowsPerPass + first_row, ch), valid ? src[p] + col : args.x,
                      valid);
        }
    }
  };

  __device__ __forceinline__ void select_segment(const unsigned char* stage, int seg, int warp_m, int lane) {
#pragma unroll
    for (int w = 0; w < kWA; ++w) {
      const u8* sel = stage + operand(w) * kWBytes + kABytes + kMetaBytes + seg * BM;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int r = warp_m * WM + mt * 16 + lane / 4 + 8 * h;
          const int want = sel[r];
          with_row(w, mt, h, [&](float(&view)[kSlots][NT * 2]) { Select::boundary(view, sel_state[w][mt][h], want); });
        }
    }
  }

  // After the last segment (accumulators at rest): slot s of every fragment
  // row then holds original row Select::row_of(state, s) of its group. The
  // epilogues call it first.
  __device__ __forceinline__ void finish_selection() {
    if (!kSelect) return;
#pragma unroll
    for (int w = 0; w < kWA; ++w)
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int h = 0; h < 2; ++h)
          with_row(w, mt, h, [&](float(&view)[kSlots][NT * 2]) { Select::finish(view, sel_state[w][mt][h]); });
  }

  // f(view) on fragment row (mt, h) of operand w, its slots as view[slot][j]
  // (the copies in and out are register renames).
  template <class F>
  __device__ __forceinline__ void with_row(int w, int mt, int h, F&& f) {
    float view[kSlots][NT * 2];
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        view[s][2 * nt] = acc[w][s][mt][nt][2 * h];
        view[s][2 * nt + 1] = acc[w][s][mt][nt][2 * h + 1];
      }
    f(view);
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
#pragma unroll
      for (int nt = 0; nt < NT; ++nt) {
        acc[w][s][mt][nt][2 * h] = view[s][2 * nt];
        acc[w][s][mt][nt][2 * h + 1] = view[s][2 * nt + 1];
      }
  }

  // FP8: k-block `blk` of the stage, its MMAs complete, into the
  // accumulators: each fragment row's product times its 16 rows' weight
  // scale and each token's scale, added into the slot of the original row
  // its segment selects (as DeepGEMM promotes per 128-deep block: the
  // tensor core's FP8 accumulation keeps fewer bits than f32).
  __device__ __forceinline__ void promote(const unsigned char* stage, int blk, int warp_m, int warp_n, int lane) {
    const float* xs = reinterpret_cast<const float*>(stage + kW * kWBytes + kBBytes) + blk * BN;
    float tok[NT][2];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      const float2 v = *reinterpret_cast<const float2*>(xs + fragment_token(warp_n, nt, lane, 0));
      tok[nt][0] = v.x;
      tok[nt][1] = v.y;
    }
#pragma unroll
    for (int w = 0; w < kWA; ++w) {
      const unsigned char* part = stage + operand(w) * kWBytes;
      const float* ws = reinterpret_cast<const float*>(part + kABytes + kMetaBytes + kSelBytes) + blk * (BM / 16);
      const u8* sel = part + kABytes + kMetaBytes + (blk * 128 / V) * BM;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        const float scale = ws[(warp_m * WM + mt * 16) / 16];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int want = kSelect ? int(sel[warp_m * WM + mt * 16 + lane / 4 + 8 * h]) : 0;
#pragma unroll
          for (int s = 0; s < kSlots; ++s) {
            const float c = want == s ? scale : 0.0f;
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
              for (int e = 0; e < 2; ++e)
                acc[w][s][mt][nt][2 * h + e] =
                    fmaf(c * tok[nt][e], pacc[w][mt][nt][2 * h + e], acc[w][s][mt][nt][2 * h + e]);
          }
        }
      }
    }
  }

  __device__ __forceinline__ void compute_stage(const unsigned char* stage, u32 stage_addr, int kt,
                                                int warp_m, int warp_n, int lane) {
    if constexpr (kFp8) {  // two k64 steps per k-block, each block promoted once its MMAs complete
      Core::prepare(*this, stage, warp_m, lane);
      Core::begin();
#pragma unroll
      for (int ks = 0; ks < kSteps; ++ks) {
        if (ks > 0 && ks % 2 == 0) {
          Core::settle();
          promote(stage, ks / 2 - 1, warp_m, warp_n, lane);
          Core::begin();
        }
        Core::step(*this, stage, stage_addr, ks, warp_m, warp_n, lane);
      }
      Core::settle();  // this stage's shared memory is refilled after the next barrier
      promote(stage, kSteps / 2 - 1, warp_m, warp_n, lane);
      return;
    }
    if (BK == 64) meta_half = kt % 2;
    Core::prepare(*this, stage, warp_m, lane);
    // A segment starting with the stage: the accumulators are at rest since
    // the previous stage's settle(), so selection needs no settle of its own
    // (an empty commit-and-wait still costs wgmma a drain).
    if (kSelect && (BK >= V || (kt * BK) % V == 0)) select_segment(stage, 0, warp_m, lane);
    Core::begin();
#pragma unroll
    for (int ks = 0; ks < kSteps; ++ks) {
      if (kSelect && ks > 0 && (ks * kStepK) % V == 0) {  // a segment starts inside the stage
        Core::settle();  // the accumulators must be at rest before they move
        select_segment(stage, (ks * kStepK) / V, warp_m, lane);
        Core::begin();
      }
      Core::step(*this, stage, stage_addr, ks, warp_m, warp_n, lane);
    }
    Core::settle();  // this stage's shared memory is refilled after the next barrier
  }

  // Accumulators -> f32 tile [BN][kOutRows] at original rows. With N > 1 the N
  // condensed rows of a group all hold slots for every original row of the
  // group; they are summed pass by pass in a fixed order (deterministic).
  // `sync` is a barrier over every thread that holds accumulators.
  template <class Sync>
  __device__ __forceinline__ void stage_accumulators(float* tile, int warp_m, int warp_n, int lane, Sync&& sync) {
    finish_selection();
#pragma unroll
    for (int pass = 0; pass < (kSelect ? NKEEP : 1); ++pass) {
#pragma unroll
      for (int w = 0; w < kWA; ++w)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = warp_m * WM + mt * 16 + lane / 4 + 8 * h;  // condensed, local
            if (kSelect && r % NKEEP != pass) continue;
#pragma unroll
            for (int s = 0; s < kSlots; ++s) {
              const int out_row = kSelect ? (r / NKEEP) * MGROUP + Select::row_of(sel_state[w][mt][h], s) : r;
#pragma unroll
              for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                  const int t = fragment_token(warp_n, nt, lane, e);
                  float* dst = tile + (operand(w) * BN + t) * kEpiLd + out_row;
                  const float v = acc[w][s][mt][nt][2 * h + e];
                  *dst = pass == 0 ? v : *dst + v;
                }
            }
          }
      sync();
    }
  }

  // Accumulators -> epilogue function -> y, straight from registers, for
  // NKEEP == 1: a thread's fragment row r then holds, across its slots, every
  // original row of group r (rows r*MGROUP .. r*MGROUP+MGROUP-1) for every
  // operand, so no other thread contributes to them and neither the f32 tile
  // nor a barrier is needed. One warp store covers 8 groups' rows (MGROUP*2
  // contiguous bytes each) for 4 tokens: whole 32-byte sectors at MGROUP = 2.
  __device__ __forceinline__ void store_direct(const SsmmArgs& args, int row0, int tok0, int warp_m, int warp_n,
                                               int lane) {
    finish_selection();
    store_direct_range<0, NT>(args, row0, tok0, warp_m, warp_n, lane, NoPartner());
  }

  // The same once the selection is finished, for token fragments [NT0, NT1).
  // The thread's own accumulators give operands op[0 .. kWA-1]; with
  // SPLIT_OPS `partner` completes op[] (the other warpgroup's accumulators
  // for the same fragment, ssmm_wgmma_ws.cuh): partner.fill(op, mt, h, nt,
  // reg, q) with original row q's value of accumulator register reg.
  struct NoPartner {
    __device__ __forceinline__ void fill(float (&)[2], int, int, int, int, int) const {}
  };
  template <int NT0, int NT1, class Partner>
  __device__ __forceinline__ void store_direct_range(const SsmmArgs& args, int row0, int tok0, int warp_m,
                                                     int warp_n, int lane, const Partner& partner) {
    static_assert(NKEEP == 1, "with N > 1 several threads add into one output row");
    const int out_row0 = row0 * MGROUP;
    const WarpScales scales(args, tok0 + warp_n * WN, lane);
    // Token by token: a token's accumulators are dead once its rows are
    // stored, and its row address is computed once (rows first, ptxas kept
    // every token's address live across the rows and spilled at 160).
#pragma unroll
    for (int nt = NT0; nt < NT1; ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float scale = scales.of(nt, e, lane);
        const int tok = tok0 + fragment_token(warp_n, nt, lane, e);
        if (tok >= args.n) continue;
        u16* const y_tok = args.y + u64(tok) * args.ldy;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = warp_m * WM + mt * 16 + lane / 4 + 8 * h;  // condensed, local
            const int row = out_row0 + r * MGROUP;                   // first original row of the group
            float v[MGROUP];
            fragment_outputs(args, row, mt, h, nt, e, scale, partner, v);
            u16* dst = y_tok + row;
            if (MGROUP % 2 == 0 && (args.ldy % 2) == 0 && row + MGROUP <= args.m) {
#pragma unroll
              for (int q = 0; q < MGROUP; q += 2) reinterpret_cast<u32*>(dst)[q / 2] = Elem<T>::pack2(v[q], v[q + 1]);
            } else {
#pragma unroll
              for (int q = 0; q < MGROUP; ++q)
                if (row + q < args.m) dst[q] = u16(Elem<T>::pack2(v[q], 0.0f) & 0xffffu);
            }
          }
      }
  }

  // The row scales of a warp's tokens, all loaded before the first store:
  // loaded inside the store loop, each waited a memory latency of its own
  // (ncu, DeepSeek's grouped down projection at 4096 tokens: the multiplies
  // waiting on them were 22% of the kernel's stall samples). Lane l holds
  // those of the warp's tokens l, l + 32, ... (coalesced loads, WN / 32
  // registers), and each store takes its token's by a shuffle: a thread
  // holding all 2 * NT of its own (32 at 128 tokens) spilled three consumer
  // warpgroups' 160 registers.
  struct WarpScales {
    static constexpr int kPerLane = (WN + 31) / 32;
    float v[kPerLane];
    __device__ __forceinline__ WarpScales(const SsmmArgs& args, int warp_tok0, int lane) {
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int i = j * 32 + lane, tok = warp_tok0 + i;  // the warp's token i
        v[j] = args.row_scale && i < WN && tok < args.n ? args.row_scale[tok] : 1.0f;
      }
    }
    // Fragment token nt * 8 + 2 * (lane % 4) + e of the warp: held by lane
    // (nt % 4) * 8 + 2 * (lane % 4) + e, in v[nt / 4].
    __device__ __forceinline__ float of(int nt, int e, int lane) const {
      return __shfl_sync(0xffffffffu, v[nt / 4], (nt % 4) * 8 + (lane % 4) * 2 + e);
    }
  };

  // Original rows row .. row+MGROUP-1 of fragment row (mt, h), token (nt, e):
  // the selection's slot that holds each (finish_selection() first), the
  // epilogue, the row scale.
  template <class Partner>
  __device__ __forceinline__ void fragment_outputs(const SsmmArgs& args, int row, int mt, int h, int nt, int e,
                                                   float scale, const Partner& partner, float (&v)[MGROUP]) const {
#pragma unroll
    for (int q = 0; q < MGROUP; ++q) {
      float op[2] = {0.0f, 0.0f};
#pragma unroll
      for (int w = 0; w < kWA; ++w)
#pragma unroll
        for (int s = 0; s < kSlots; ++s)
          if (!kSelect || Select::row_of(sel_state[w][mt][h], s) == q) op[w] = acc[w][s][mt][nt][2 * h + e];
      partner.fill(op, mt, h, nt, 2 * h + e, q);
      v[q] = epilogue_at<EPI>(args, row + q, op[0], op[1]) * scale;
    }
  }

  // Tokens [CT * c, CT * (c + 1)) of the tile, in the layout a TMA store
  // reads: boxes of 64 original rows (128 bytes) by CT tokens, one after
  // another along the rows, each with the 128-byte swizzle. That is one
  // Swizzle128Tile of CT token rows whose 128-byte columns are the boxes;
  // original row `row` is byte 2 * row of a token's row; out_row0 is the
  // tile's first original row (for the biases). finish_selection() first.
  template <int CT>
  __device__ __forceinline__ void stage_output_chunk(const SsmmArgs& args, int out_row0, u32 boxes, int c,
                                                     const WarpScales& scales, int warp_m, int lane) const {
    static_assert(CT % 8 == 0 && BN % CT == 0 && WARPS_N == 1, "whole fragments of the chunk's tokens");
#pragma unroll
    for (int nt = c * (CT / 8); nt < (c + 1) * (CT / 8); ++nt)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float scale = scales.of(nt, e, lane);
        const int t = fragment_token(0, nt, lane, e) - c * CT;  // the chunk's token
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
          for (int h = 0; h < 2; ++h) {
            const int r = warp_m * WM + mt * 16 + lane / 4 + 8 * h;
            float v[MGROUP];
            fragment_outputs(args, out_row0 + r * MGROUP, mt, h, nt, e, scale, NoPartner(), v);
#pragma unroll
            for (int q = 0; q < MGROUP; q += (MGROUP % 2 == 0 ? 2 : 1)) {
              const int row = r * MGROUP + q;
              const u32 at = boxes + Swizzle128Tile<CT, BM * MGROUP * 2>::offset(t, row / 8) + (row % 8) * 2;
              if (MGROUP % 2 == 0)
                st_shared_u32(at, Elem<T>::pack2(v[q], v[(q + 1) % MGROUP]));
              else
                st_shared_u16(at, u16(Elem<T>::pack2(v[q], 0.0f) & 0xffffu));
            }
          }
      }
  }

  // f32 tile -> epilogue function -> 16-byte stores, spread over nthreads threads.
  static __device__ __forceinline__ void store_tile(const SsmmArgs& args, const float* tile, int row0, int tok0,
                                                    int tid, int nthreads) {
    store_tile_from(args, [tile](int at, float(&v)[8]) { load8(tile + at, v); }, row0, tok0, tid, nthreads);
  }

  // The same over chunks first, first + step, ... of the tile, reading it
  // through load(float offset, eight floats): split-k sums its cluster's
  // partial tiles there (ssmm_wgmma_ws.cuh).
  template <class Load>
  static __device__ __forceinline__ void store_tile_from(const SsmmArgs& args, Load&& load, int row0, int tok0,
                                                         int first, int step) {
    const int out_row0 = row0 / NKEEP * MGROUP;
    const bool vec_ok = (args.ldy % 8) == 0;
    constexpr int kChunksPerTok = kOutRows / 8;
    static_assert(kEpiLd % 4 == 0, "16-byte tile reads");
    // Chunks in batches of kBatch: a batch's row scales are loaded together
    // before its first store (loaded one at a time, each waited a memory
    // latency of its own: store_direct_range's finding), and its
    // shared-memory reads are in flight before the first conversion waits on
    // one.
    constexpr int kBatch = 4, kChunks = BN * kChunksPerTok;
    for (int c0 = first; c0 < kChunks; c0 += kBatch * step) {
      float scales[kBatch];
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int c = c0 + u * step, tok = tok0 + c / kChunksPerTok;
        scales[u] = args.row_scale && c < kChunks && tok < args.n ? args.row_scale[tok] : 1.0f;
      }
#pragma unroll
      for (int u = 0; u < kBatch; ++u) {
        const int c = c0 + u * step;
        const int t = c / kChunksPerTok, r8 = (c % kChunksPerTok) * 8;
        const int tok = tok0 + t, row = out_row0 + r8;
        if (c >= kChunks || tok >= args.n || row >= args.m) continue;
        float a[8], b[8];
        load(t * kEpiLd + r8, a);
        if (kW > 1) load((BN + t) * kEpiLd + r8, b);
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = epilogue_at<EPI>(args, row + j, a[j], kW > 1 ? b[j] : 0.0f) * scales[u];
        u16* dst = args.y + u64(tok) * args.ldy + row;
        if (vec_ok && row + 8 <= args.m) {
          uint4_like out;
          out.x = Elem<T>::pack2(v[0], v[1]);
          out.y = Elem<T>::pack2(v[2], v[3]);
          out.z = Elem<T>::pack2(v[4], v[5]);
          out.w = Elem<T>::pack2(v[6], v[7]);
          *reinterpret_cast<uint4_like*>(dst) = out;
        } else {
          for (int j = 0; j < 8 && row + j < args.m; ++j) dst[j] = u16(Elem<T>::pack2(v[j], 0.0f) & 0xffffu);
        }
      }
    }
  }

  // Eight consecutive floats of the f32 tile (16-byte aligned) in two reads.
  static __device__ __forceinline__ void load8(const float* p, float (&v)[8]) {
    struct alignas(16) F4 {
      float x, y, z, w;
    };
    const F4 lo = reinterpret_cast<const F4*>(p)[0], hi = reinterpret_cast<const F4*>(p)[1];
    v[0] = lo.x, v[1] = lo.y, v[2] = lo.z, v[3] = lo.w, v[4] = hi.x, v[5] = hi.y, v[6] = hi.z, v[7] = hi.w;
  }

  struct alignas(16) uint4_like {
    u32 x, y, z, w;
  };
};

}  // namespace samoyeds
