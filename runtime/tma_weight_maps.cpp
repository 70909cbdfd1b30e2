#include "runtime/tma_weight_maps.hpp"

#include <cstring>

#include <fmt/format.h>

#include "generator/weight_tma_boxes.hpp"
#include "runtime/cuda_driver.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

static_assert(sizeof(TensorMap) == sizeof(CUtensorMap) && alignof(TensorMap) == alignof(CUtensorMap),
              "device-side TensorMap must mirror CUtensorMap");

// A row-major 2-D tensor [rows][cols] of `box.elem_bytes`-byte elements, read box by box.
TensorMap encode_2d(const void* base, CUtensorMapDataType type, uint64_t cols, uint64_t rows, const TmaBox& box,
                    CUtensorMapSwizzle swizzle, const char* what) {
  const auto encode = driver().cuTensorMapEncodeTiled;
  if (!encode) throw Error(ErrorCode::Unsupported, "the CUDA driver has no cuTensorMapEncodeTiled (TMA needs 12.0+)");
  CUtensorMap map;
  const cuuint64_t dims[2] = {cols, rows};
  const cuuint64_t strides[1] = {cols * uint64_t(box.elem_bytes)};
  const cuuint32_t box_dims[2] = {box.cols, box.rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult rc = encode(&map, type, 2, const_cast<void*>(base), dims, strides, box_dims, elem_strides,
                             CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                             CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (rc != CUDA_SUCCESS)
    check(rc, fmt::format("cuTensorMapEncodeTiled for the {} ({} x {}, box {} x {})", what, rows, cols, box.rows,
                          box.cols)
                  .c_str());
  TensorMap out;
  std::memcpy(&out, &map, sizeof(map));
  return out;
}

}  // namespace

TmaWeightMaps encode_weight_maps(const PackedWeightView* operands, int n_w, const WeightMapShape& s) {
  const uint64_t rows = uint64_t(s.experts * s.rows_pad);
  const uint64_t half_k = uint64_t(s.k_phys / 2);
  const uint64_t segments = uint64_t(s.experts * (s.k_phys / s.V));
  const WeightTmaBoxes box = weight_tma_boxes(s.block_m, s.block_k, s.V);
  TmaWeightMaps maps{};
  for (int i = 0; i < 2; ++i) {
    const PackedWeightView& w = operands[i < n_w ? i : 0];
    maps.values[i] = encode_2d(w.values, CU_TENSOR_MAP_DATA_TYPE_UINT16, half_k, rows, box.values,
                               CU_TENSOR_MAP_SWIZZLE_128B, "weight values");
    // 16 rows x 64 columns share 32 metadata words, so a 16-row tile's row is k_phys/2 words.
    maps.meta[i] = encode_2d(w.meta, CU_TENSOR_MAP_DATA_TYPE_UINT32, half_k, rows / 16, box.meta,
                             CU_TENSOR_MAP_SWIZZLE_NONE, "weight metadata");
    maps.sel[i] = encode_2d(w.sel, CU_TENSOR_MAP_DATA_TYPE_UINT8, uint64_t(s.rows_pad), segments, box.sel,
                            CU_TENSOR_MAP_SWIZZLE_NONE, "row selectors");
  }
  return maps;
}

const TmaWeightMaps& weight_maps_for(const PackedWeightView* operands, int n_w, const WeightMapShape& s) {
  struct Entry {
    PackedWeightView views[2];
    int n_w = 0;
    WeightMapShape shape;
    TmaWeightMaps maps;
  };
  constexpr int kEntries = 16;
  thread_local Entry cache[kEntries];
  thread_local int used = 0, next = 0;
  auto same = [&](const Entry& e) {
    if (e.n_w != n_w || e.shape.experts != s.experts || e.shape.rows_pad != s.rows_pad ||
        e.shape.k_phys != s.k_phys || e.shape.V != s.V || e.shape.block_m != s.block_m ||
        e.shape.block_k != s.block_k)
      return false;
    for (int i = 0; i < n_w; ++i)
      if (e.views[i].values != operands[i].values || e.views[i].meta != operands[i].meta ||
          e.views[i].sel != operands[i].sel)
        return false;
    return true;
  };
  for (int i = 0; i < used; ++i)
    if (same(cache[i])) return cache[i].maps;
  Entry& e = cache[next];
  e.maps = encode_weight_maps(operands, n_w, s);  // may throw: the slot is filled only on success
  e.n_w = n_w;
  e.shape = s;
  for (int i = 0; i < 2; ++i) e.views[i] = operands[i < n_w ? i : 0];
  next = (next + 1) % kEntries;
  if (used < kEntries) ++used;
  return e.maps;
}

}  // namespace samoyeds
