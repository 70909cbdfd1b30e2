// Tensor Memory Accelerator loads (sm_90): one thread asks the copy engine
// for a whole box of a tensor described by a tensor map (built on the host
// with cuTensorMapEncodeTiled, passed as a __grid_constant__ parameter); the
// bytes land in shared memory and complete a transaction count on an
// mbarrier. Waiters on that mbarrier then see the data (no proxy fence: TMA
// writes and wgmma reads are both async-proxy accesses).
//
// And stores: a box of shared memory that threads wrote (each fenced with
// fence_proxy_async_shared, then a barrier) goes to global memory in the
// background; the issuing thread groups its stores (tma_store_commit) and
// waits until a group has been read out of shared memory before the space is
// written again (tma_store_wait_read), and until it is done before the block
// exits (tma_store_wait_all).
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

// Shared memory at `src` into the box at coordinates (c0 innermost, c1) of a
// 2-D tensor map; elements past the tensor's edges are not written.
__device__ __forceinline__ void tma_store_2d(const TensorMap& map, u32 src, int c0, int c1) {
  asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(
                   reinterpret_cast<u64>(&map)),
               "r"(c0), "r"(c1), "r"(src)
               : "memory");
}
__device__ __forceinline__ void tma_store_commit() { asm volatile("cp.async.bulk.commit_group;" ::: "memory"); }
// At most N of this thread's store groups still reading shared memory.
template <int N>
__device__ __forceinline__ void tma_store_wait_read() {
  asm volatile("cp.async.bulk.wait_group.read %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void tma_store_wait_all() { asm volatile("cp.async.bulk.wait_group 0;" ::: "memory"); }

}  // namespace samoyeds
