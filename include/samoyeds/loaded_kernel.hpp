// A kernel loaded on the device, with the facts its launch needs.
#pragma once
#include <string>

#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

struct LoadedKernel {
  KernelSpec spec;
  TileConfig config;
  void* function = nullptr;  // CUfunction
  int threads = 0;
  int smem_bytes = 0;
  std::string layout_id;
  bool persistent = false;   // grid: at most resident_blocks, each walking its tiles
  int cluster_blocks = 1;    // blocks per cluster: a grid is a multiple of it
  int resident_blocks = 0;   // persistent kernels: how many blocks (whole clusters) the device runs at once
  bool tile_prefix = false;  // launch adds the grouped tile prefix to smem_bytes (generator/generated_kernel.hpp)
  int registers = -1, spill_bytes = -1;
  bool from_disk_cache = false;
  double load_ms = 0.0;  // generate + cache lookup or compile + module load
};

}  // namespace samoyeds
