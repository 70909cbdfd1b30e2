#include "format/fp8_device_layout.hpp"

#include <algorithm>

#include "format/device_layout.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

Fp8DeviceLayout to_device_layout(const PackedFp8Weights& q) {
  const PackedWeights& p = q.selection;
  const SparsityParams& sp = p.sparsity;
  const int64_t tile_rows = 16 % sp.N == 0 ? 16 / sp.N * sp.M : 0;  // dense rows of 16 condensed ones
  if (tile_rows == 0 || kFp8Block % tile_rows != 0)
    throw Error(ErrorCode::InvalidArgument, "FP8 device layout: at " + sp.to_string() +
                                                " a 16-row tile of condensed rows crosses a 128-row scale block");
  Fp8DeviceLayout L;
  L.sparsity = sp;
  L.m = p.m;
  L.k = p.k;
  const LayoutFrame frame = layout_frame(p, Fp8DeviceLayout::kKAlign);
  L.rows = frame.rows;
  L.rows_pad = frame.rows_pad;
  L.k_phys = frame.k_phys;
  L.values = padded_values(q.values, p, frame);
  // Padding as the 16-bit layout pads: selectors j, metadata pair (0, 1).
  L.sel = padded_selectors(p, frame);
  const int64_t half_src = p.k_pad / 2;

  auto chunk_bits = [&](int64_t r, int64_t chunk) -> uint32_t {  // 4 bits: lo | hi << 2
    if (r >= L.rows || chunk * 2 >= half_src) return 0x4u;
    const int64_t vi = r * half_src + chunk * 2;
    return uint32_t(p.meta_at(vi)) | (uint32_t(p.meta_at(vi + 1)) << 2);
  };
  const int64_t tiles = L.rows_pad / 16, ktiles = L.k_phys / Fp8DeviceLayout::kKAlign;
  L.meta.assign(size_t(tiles * ktiles * 32 * 4), 0);
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t g = 0; g < ktiles; ++g)
      for (int lane = 0; lane < 32; ++lane)
        for (int s = 0; s < 4; ++s) {
          uint32_t word = 0;
          for (int nibble = 0; nibble < 8; ++nibble) {
            const Fp8MetaSlot slot = fp8_meta_slot(lane, nibble);
            word |= chunk_bits(t * 16 + slot.row, (g * 4 + s) * 16 + slot.chunk) << (4 * nibble);
          }
          L.meta[size_t(((t * ktiles + g) * 32 + lane) * 4 + s)] = word;
        }

  const Fp8ScaleGrid grid = fp8_scale_grid(Fp8Scaling::Block128, p.m, p.k);
  const int64_t kblocks = L.k_phys / kFp8Block;
  L.scale_inv.assign(size_t(tiles * kblocks), 1.0f);
  for (int64_t t = 0; t * 16 < L.rows; ++t)
    for (int64_t b = 0; b * kFp8Block < p.k; ++b)
      L.scale_inv[size_t(t * kblocks + b)] = q.scale_inv[size_t(grid.index(t * tile_rows, b * kFp8Block))];
  return L;
}

}  // namespace samoyeds
