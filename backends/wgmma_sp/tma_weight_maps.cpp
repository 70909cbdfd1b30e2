#include "backends/wgmma_sp/tma_weight_maps.hpp"

#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

static_assert(sizeof(TensorMap) == sizeof(CUtensorMap) && alignof(TensorMap) == alignof(CUtensorMap),
              "device-side TensorMap must mirror CUtensorMap");

TensorMap encode(const TensorMap2d& m) {
  if (auto why = tensor_map_problem(m))
    throw Error(ErrorCode::Unsupported, fmt::format("TMA map of the {}: {}", m.what, *why));
  const auto encode_tiled = driver().cuTensorMapEncodeTiled;
  if (!encode_tiled)
    throw Error(ErrorCode::Unsupported, "the CUDA driver has no cuTensorMapEncodeTiled (TMA needs 12.0+)");
  const CUtensorMapDataType type = m.box.elem_bytes == 1   ? CU_TENSOR_MAP_DATA_TYPE_UINT8
                                   : m.box.elem_bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16
                                                           : CU_TENSOR_MAP_DATA_TYPE_UINT32;
  CUtensorMap map;
  const cuuint64_t dims[2] = {m.cols, m.rows};
  const cuuint64_t strides[1] = {m.row_stride_bytes()};
  const cuuint32_t box_dims[2] = {m.box.cols, m.box.rows};
  const cuuint32_t elem_strides[2] = {1, 1};
  const CUresult rc = encode_tiled(&map, type, 2, const_cast<void*>(m.base), dims, strides, box_dims, elem_strides,
                                   CU_TENSOR_MAP_INTERLEAVE_NONE,
                                   m.swizzle_128b ? CU_TENSOR_MAP_SWIZZLE_128B : CU_TENSOR_MAP_SWIZZLE_NONE,
                                   CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (rc != CUDA_SUCCESS)
    check(rc, fmt::format("cuTensorMapEncodeTiled for the {} ({} x {}, box {} x {})", m.what, m.rows, m.cols,
                          m.box.rows, m.box.cols)
                  .c_str());
  TensorMap out;
  std::memcpy(&out, &map, sizeof(map));
  return out;
}

}  // namespace

std::array<TensorMap2d, 3> describe_weight_maps(const PackedWeightView& w, const WeightMapShape& s) {
  const uint64_t rows = uint64_t(s.experts * s.rows_pad);
  const uint64_t half_k = uint64_t(s.k_phys / 2);
  const WeightTmaBoxes box = weight_tma_boxes(s.block_m, s.block_k, s.V, s.multicast);
  TensorMap2d values{"weight values", w.values, half_k, rows, box.values, true};
  // 16 rows x 64 columns share 32 metadata words, so a 16-row tile's row is k_phys/2 words.
  TensorMap2d meta{"weight metadata", w.meta, half_k, rows / 16, box.meta, false};
  TensorMap2d sel{"row selectors", w.sel, uint64_t(s.rows_pad), uint64_t(s.experts * (s.k_phys / s.V)), box.sel,
                  false};
  return {values, meta, sel};
}

std::optional<std::string> tensor_map_problem(const TensorMap2d& m) {
  const auto& b = m.box;
  if (b.elem_bytes != 1 && b.elem_bytes != 2 && b.elem_bytes != 4)
    return fmt::format("{}-byte elements (1, 2 or 4)", b.elem_bytes);
  if (m.base == nullptr) return "no base address (null)";
  if (reinterpret_cast<uintptr_t>(m.base) % 16 != 0) return "base address not 16-byte aligned";
  if (m.cols == 0 || m.rows == 0 || m.cols > (uint64_t(1) << 32) || m.rows > (uint64_t(1) << 32))
    return fmt::format("tensor {} x {} (each dimension 1 to 2^32)", m.rows, m.cols);
  if (m.row_stride_bytes() % 16 != 0 || m.row_stride_bytes() >= (uint64_t(1) << 40))
    return fmt::format("row stride {} bytes (a multiple of 16, below 2^40)", m.row_stride_bytes());
  if (b.cols < 1 || b.cols > 256 || b.rows < 1 || b.rows > 256)
    return fmt::format("box {} x {} (each dimension 1 to 256)", b.rows, b.cols);
  if (b.cols * uint64_t(b.elem_bytes) % 16 != 0)
    return fmt::format("box rows of {} bytes (a multiple of 16)", b.cols * b.elem_bytes);
  if (m.swizzle_128b && b.cols * uint64_t(b.elem_bytes) > 128)
    return fmt::format("box rows of {} bytes under the 128-byte swizzle (at most 128)", b.cols * b.elem_bytes);
  return std::nullopt;
}

TmaWeightMaps encode_weight_maps(const PackedWeightView* operands, int n_w, const WeightMapShape& s) {
  TmaWeightMaps maps{};
  for (int i = 0; i < 2; ++i) {
    const auto m = describe_weight_maps(operands[i < n_w ? i : 0], s);
    maps.values[i] = encode(m[0]);
    maps.meta[i] = encode(m[1]);
    maps.sel[i] = encode(m[2]);
  }
  return maps;
}

TensorMap2d describe_token_map(const void* x, int64_t rows, int64_t k, int block_n) {
  return {"activations", x, uint64_t(k), uint64_t(rows), token_tma_box(block_n), true};
}

TensorMap encode_token_map(const void* x, int64_t rows, int64_t k, int block_n) {
  return encode(describe_token_map(x, rows, k, block_n));
}

TensorMap2d describe_out_map(const void* y, int64_t n, int64_t m, int chunk_tokens) {
  return {"outputs", y, uint64_t(m), uint64_t(n), TmaBox{64, uint32_t(chunk_tokens), 2}, true};
}

TensorMap encode_out_map(const void* y, int64_t n, int64_t m, int chunk_tokens) {
  return encode(describe_out_map(y, n, m, chunk_tokens));
}

std::array<TensorMap2d, 4> describe_fp8_weight_maps(const PackedFp8WeightView& w, const WeightMapShape& s) {
  const uint64_t rows = uint64_t(s.experts * s.rows_pad), half_k = uint64_t(s.k_phys / 2);
  const uint32_t bm = uint32_t(s.block_m), bk = uint32_t(s.block_k);
  TensorMap2d values{"FP8 weight values", w.values, half_k, rows, TmaBox{bk / 2, bm, 1}, true};
  // 16 rows x 64 columns still share 32 metadata words: a 16-row tile's row is k_phys/2 words.
  TensorMap2d meta{"FP8 weight metadata", w.meta, half_k, rows / 16, TmaBox{bk / 2, bm / 16, 4}, false};
  TensorMap2d sel{"row selectors", w.sel, uint64_t(s.rows_pad), uint64_t(s.experts * (s.k_phys / s.V)),
                  TmaBox{bm, bk >= uint32_t(s.V) ? bk / uint32_t(s.V) : 1, 1}, false};
  TensorMap2d scales{"FP8 weight scales", w.scale_inv, rows / 16, uint64_t(s.k_phys / 128),
                     TmaBox{bm / 16, bk / 128, 4}, false};
  return {values, meta, sel, scales};
}

TmaWeightMaps encode_fp8_maps(const PackedFp8WeightView* operands, int n_w, const WeightMapShape& s, const void* x,
                              int64_t rows, int64_t k, int block_n) {
  TmaWeightMaps maps{};
  for (int i = 0; i < 2; ++i) {
    const auto m = describe_fp8_weight_maps(operands[i < n_w ? i : 0], s);
    maps.values[i] = encode(m[0]);
    maps.meta[i] = encode(m[1]);
    maps.sel[i] = encode(m[2]);
    maps.wscale[i] = encode(m[3]);
  }
  maps.tokens = encode(
      TensorMap2d{"FP8 activations", x, uint64_t(k), uint64_t(rows), TmaBox{128, uint32_t(block_n), 1}, true});
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
        e.shape.block_k != s.block_k || e.shape.multicast != s.multicast)
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
