// What the generator hands the compiler and the launcher: one small
// translation unit and the facts its launch needs.
#pragma once
#include <string>

namespace samoyeds {

struct GeneratedKernel {
  std::string source;       // the small translation unit NVRTC compiles
  std::string kernel_name;  // extern "C" entry point
  int threads = 0;
  int smem_bytes = 0;       // dynamic shared memory per block
  std::string layout_id;    // physical weight layout the kernel reads
  bool persistent = false;  // launch about one block per SM slot, each walks its tiles
  // The launch adds tile_prefix_bytes(experts) of dynamic shared memory: the
  // grouped tile prefix (templates/tile_scheduler.cuh). Not in smem_bytes,
  // because one binary (and loaded kernel) serves every expert count.
  bool tile_prefix = false;
  int cluster_blocks = 1;  // blocks per thread-block cluster (__cluster_dims__ of the source)
};

// Shared memory of the grouped tile prefix: one int per expert, plus one.
inline int tile_prefix_bytes(int experts) { return 4 * (experts + 1); }

}  // namespace samoyeds
