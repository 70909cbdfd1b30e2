// Thread-block clusters (sm_90): the few PTX operations split-k needs to sum
// the partial tiles of a cluster's blocks through distributed shared memory,
// and a multicast pair needs to release its stages in both blocks.
#pragma once
#include "samoyeds/common.cuh"

namespace samoyeds {

// This block's rank in its cluster (0 .. cluster size - 1).
__device__ __forceinline__ int cluster_rank() {
  u32 r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  return int(r);
}

// Every thread of every block of the cluster arrives, then waits for all.
// Arrive releases and wait acquires, so shared-memory writes before the
// barrier are visible to the other blocks' reads after it. Every thread of
// the cluster must call it the same number of times (no thread may have
// exited), and whole warps at a time (.aligned).
__device__ __forceinline__ void cluster_sync() {
  asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}

// The shared::cluster address of `addr` (a shared::cta address of this
// block) in the block of rank `rank`.
__device__ __forceinline__ u32 cluster_map_shared(u32 addr, int rank) {
  u32 out;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(out) : "r"(addr), "r"(rank));
  return out;
}

// Arrives on an mbarrier of another block of the cluster (`cluster_addr`
// from cluster_map_shared), releasing this thread's earlier accesses at
// cluster scope.
__device__ __forceinline__ void mbarrier_arrive_cluster(u32 cluster_addr) {
  asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];" ::"r"(cluster_addr) : "memory");
}

// Four floats (16-byte aligned) from another block's shared memory.
__device__ __forceinline__ void cluster_load4(u32 cluster_addr, float* v) {
  asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];"
               : "=f"(v[0]), "=f"(v[1]), "=f"(v[2]), "=f"(v[3])
               : "r"(cluster_addr));  // volatile keeps it after cluster_sync()
}

}  // namespace samoyeds
