// The tensor maps a wgmma_sp kernel's TMA reads the packed weights through
// (TmaWeightMaps, templates/kernel_args.cuh): per weight operand one map each
// for values, metadata and selectors, over all experts of the allocation.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>

#include "backends/wgmma_sp/weight_tma_boxes.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {

// One weight operand in the packed device layout (sp_tc.v2), `experts` experts back to back.
struct PackedWeightView {
  const void* values = nullptr;  // [experts * rows_pad, k_phys/2] u16
  const void* meta = nullptr;    // [experts * rows_pad/16, k_phys/2] u32 (a tile's k-tiles of word pairs)
  const void* sel = nullptr;     // [experts * k_phys/V, rows_pad] u8
};

struct WeightMapShape {
  int64_t experts = 1, rows_pad = 0, k_phys = 0;
  int V = 0;
  int block_m = 0, block_k = 0;  // the box: one k-tile of one block
  int multicast = 1;             // ... or its share of the rows in a multicast cluster
};

// What one 2-D map describes: a row-major [rows][cols] tensor read box by box.
struct TensorMap2d {
  const char* what = "";
  const void* base = nullptr;
  uint64_t cols = 0, rows = 0;  // cols: the contiguous dimension, in elements
  TmaBox box;
  bool swizzle_128b = false;
  uint64_t row_stride_bytes() const { return cols * uint64_t(box.elem_bytes); }
};

// The three maps of one operand (values, metadata, selectors). Pure: no driver.
std::array<TensorMap2d, 3> describe_weight_maps(const PackedWeightView& operand, const WeightMapShape& shape);

// Why cuTensorMapEncodeTiled would refuse a map (its documented limits), or
// nullopt. Checked before encoding, so a refusal names the broken rule.
std::optional<std::string> tensor_map_problem(const TensorMap2d& map);

// Encodes the maps of n_w operands (the rest repeat operand 0). Throws
// Error(Unsupported) naming the rule a map breaks, or Error(CudaError) with
// the driver's reason when the driver refuses one anyway.
TmaWeightMaps encode_weight_maps(const PackedWeightView* operands, int n_w, const WeightMapShape& shape);

// The token map of a tokens_tma kernel (TmaWeightMaps::tokens): x as
// [rows][k] values of `elem_bytes`, rows k values apart, read in boxes of
// block_n rows x 64 values (token_tma_box). Pure: no driver.
TensorMap2d describe_token_map(const void* x, int64_t rows, int64_t k, int block_n);
// Encodes it; throws as encode_weight_maps does. Cheap enough per launch
// (one map, ~0.3 us), as x changes from call to call.
TensorMap encode_token_map(const void* x, int64_t rows, int64_t k, int block_n);

// The same, remembered per calling thread for the last few (operands, shape)
// pairs: encoding six maps costs ~2 us of host time, which the launch path
// pays once per weights and tile instead of every call. A map holds only
// addresses and sizes, so a hit is exact even if memory was freed and
// reallocated at the same address with the same shape.
const TmaWeightMaps& weight_maps_for(const PackedWeightView* operands, int n_w, const WeightMapShape& shape);

// The outputs y [n rows of m values] a kernel that stores by TMA writes:
// boxes of chunk_tokens rows x 64 values (SsmmWgmmaWs's staging boxes).
// Pure: no driver. Encoded per launch, as the token map is.
TensorMap2d describe_out_map(const void* y, int64_t n, int64_t m, int chunk_tokens);
TensorMap encode_out_map(const void* y, int64_t n, int64_t m, int chunk_tokens);

// FP8 (E4M3) kernels: one weight operand in the FP8 device layout
// (sp_tc_e4m3.v1, format/fp8_device_layout.hpp), its block scales
// transposed, `experts` experts back to back.
struct PackedFp8WeightView {
  const void* values = nullptr;     // [experts * rows_pad, k_phys/2] u8
  const void* meta = nullptr;       // [experts * rows_pad/16, k_phys/2] u32 (a tile's k-tiles of four words)
  const void* sel = nullptr;        // [experts * k_phys/V, rows_pad] u8
  const void* scale_inv = nullptr;  // [k_phys/128, experts * rows_pad/16] f32
};
// Values (one 128-byte swizzle atom: block_k / 2 codes), metadata,
// selectors and scales of one operand, block_k = 256. Pure: no driver.
std::array<TensorMap2d, 4> describe_fp8_weight_maps(const PackedFp8WeightView& operand, const WeightMapShape& shape);
// Every map an FP8 launch reads: the weights' and the tokens' (x as [rows][k]
// E4M3 codes, boxes of block_n rows x 128 codes); out unset (FP8 kernels
// store from registers). The token scales go by pointer (SsmmArgs).
TmaWeightMaps encode_fp8_maps(const PackedFp8WeightView* operands, int n_w, const WeightMapShape& shape,
                              const void* x, int64_t rows, int64_t k, int block_n);

}  // namespace samoyeds
