// The FP8 expert projection of the wgmma_sp backend (SsmmWgmmaWs over E4M3,
// docs/fp8.md): its kernels' generation and their launch. One projection,
// gated or not, over tokens in order that are already E4M3 with one scale
// per 1 x 128 group; 1:2 row groups at V = 128. The ops, the tuner and the
// layer do not offer it yet; its tests and benchmark launch it here.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <cuda.h>

#include "backends/wgmma_sp/tma_weight_maps.hpp"
#include "generator/generated_kernel.hpp"

namespace samoyeds {

class Device;

struct Fp8Tile {
  int block_m = 128, block_n = 64, stages = 4;
  bool gated = false;  // two weight operands, silu(g) * u
  std::string to_string() const;
};

// The tiles that fit the registers without spills: three accumulator sets
// of block_n / 2 floats per operand and thread (the k-block's product and
// both rows' sums of a 1:2 group).
const std::vector<Fp8Tile>& fp8_tiles();

// Shared memory the kernel asks for (the source static_asserts it); a
// grouped launch adds tile_prefix_bytes(experts).
int fp8_projection_smem_bytes(const Fp8Tile& t);
// grouped: all experts of a projection in one launch, tokens in list order.
GeneratedKernel generate_fp8_projection(const Fp8Tile& t, bool grouped = false);

// y [n, m] bf16 = epi(x W^T) (times row_scale[i] per row, if given): x
// [n, k] E4M3 with scales x_scale_inv [ceil(k/128)][x_scale_ld]
// (transposed; the kernel reads none past the tokens), W one operand (two,
// gated) in the FP8 device layout. Grouped (offsets given): rows offsets[e] .. offsets[e+1]-1 of x,
// y and row_scale are expert e's, n the rows of x (the list's room), the
// experts' weights back to back (Fp8DeviceWeights::upload_experts).
struct Fp8ProjectionCall {
  PackedFp8WeightView operands[2];
  int64_t m = 0, k = 0, n = 0, rows_pad = 0, k_phys = 0;
  const void* x = nullptr;
  const void* x_scale_inv = nullptr;
  int64_t x_scale_ld = 0;
  void* y = nullptr;
  const float* row_scale = nullptr;  // [n] or null
  int* error_flag = nullptr;         // may be null
  int experts = 1;
  const int* offsets = nullptr;  // [experts + 1] on the device, or null: one expert, n tokens
};

// The launch's tensor maps (encoded each call: the caller may keep them).
TmaWeightMaps fp8_projection_maps(const Fp8Tile& t, const Fp8ProjectionCall& call);
// Persistent: at most one block per SM, each walking its tiles (the kernel
// skips the empty tiles of a grouped launch's bound). f must be the kernel
// generate_fp8_projection(t, call.offsets != null) made.
CUresult launch_fp8_projection(const Device& device, CUfunction f, const Fp8Tile& t, const Fp8ProjectionCall& call,
                               const TmaWeightMaps& maps, CUstream stream);

}  // namespace samoyeds
