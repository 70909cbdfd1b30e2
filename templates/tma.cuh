// Tensor Memory Accelerator loads (sm_90): one thread asks the copy engine
// for a whole box of a tensor described by a tensor map (built on the host
// with cuTensorMapEncodeTiled, passed as a __grid_constant__ parameter); the
// bytes land in shared memory and complete a transaction count on an
// mbarrier. Waiters on that mbarrier then see the data (no proxy fence: TMA
// writes and wgmma reads are both async-proxy accesses).
#pragma once
#include "samoyeds/common.cuh"
#include "samoyeds/kernel_args.cuh"

namespace samoyeds {

__device__ __forceinline__ void tma_prefetch_map(const TensorMap& map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<u64>(&map)) : "memory");
}

// The caller's arrival on `bar`, plus `bytes` more bytes the phase must see
// land before it completes.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(u32 bar, u32 bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}

// Box at coordinates (c0 innermost, c1) of a 2-D tensor map into `dst`.
__device__ __forceinline__ void tma_load_2d(u32 dst, const TensorMap& map, u32 bar, int c0, int c1) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::
          "r"(dst),
      "l"(reinterpret_cast<u64>(&map)), "r"(c0), "r"(c1), "r"(bar)
      : "memory");
}

// The same box into `dst` of every block of the cluster named in `mask`
// (bit r: rank r), completing bytes on the mbarrier at `bar`'s offset in
// each of them.
__device__ __forceinline__ void tma_load_2d_multicast(u32 dst, const TensorMap& map, u32 bar, int c0, int c1,
                                                      unsigned short mask) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;" ::"r"(dst),
      "l"(reinterpret_cast<u64>(&map)), "r"(c0), "r"(c1), "r"(bar), "h"(mask)
      : "memory");
}

}  // namespace samoyeds
