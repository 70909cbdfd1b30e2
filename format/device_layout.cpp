#include "format/device_layout.hpp"

#include <algorithm>

namespace samoyeds {

LayoutFrame layout_frame(const PackedWeights& p, int64_t k_align) {
  LayoutFrame f;
  f.rows = p.condensed_rows();
  f.rows_pad = (f.rows + DeviceLayout::kRowAlign - 1) / DeviceLayout::kRowAlign * DeviceLayout::kRowAlign;
  const int64_t kalign = std::max<int64_t>(p.sparsity.V, k_align);
  f.k_phys = (p.k_pad + kalign - 1) / kalign * kalign;
  return f;
}

std::vector<uint8_t> padded_selectors(const PackedWeights& p, const LayoutFrame& f) {
  const int64_t segs_src = p.segments(), segs_dst = f.k_phys / p.sparsity.V;
  std::vector<uint8_t> sel(size_t(segs_dst * f.rows_pad), 0);
  for (int64_t s = 0; s < segs_dst; ++s)
    for (int64_t r = 0; r < f.rows_pad; ++r)
      sel[size_t(s * f.rows_pad + r)] =
          (s < segs_src && r < f.rows) ? p.sel[size_t(s * f.rows + r)] : uint8_t(r % p.sparsity.N);
  return sel;
}

DeviceLayout to_device_layout(const PackedWeights& p) {
  DeviceLayout L;
  L.dtype = p.dtype;
  L.sparsity = p.sparsity;
  L.m = p.m;
  L.k = p.k;
  const LayoutFrame frame = layout_frame(p, DeviceLayout::kKAlign);
  L.rows = frame.rows;
  L.rows_pad = frame.rows_pad;
  L.k_phys = frame.k_phys;
  L.values = padded_values(p.values, p, frame);
  // Padding: metadata pair (0,1), a defined encoding.
  L.sel = padded_selectors(p, frame);
  const int64_t half_src = p.k_pad / 2;

  auto chunk_bits = [&](int64_t r, int64_t chunk) -> uint32_t {  // 4 bits: lo | hi << 2
    if (r >= L.rows || chunk * 2 >= half_src) return 0x4u;         // (0, 1)
    const int64_t vi = r * half_src + chunk * 2;
    return uint32_t(p.meta_at(vi)) | (uint32_t(p.meta_at(vi + 1)) << 2);
  };
  const int64_t tiles = L.rows_pad / 16, slabs = L.k_phys / 64, ktiles = L.k_phys / DeviceLayout::kKAlign;
  L.meta.assign(size_t(tiles * slabs * 32), 0);
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t s = 0; s < slabs; ++s)
      for (int lane = 0; lane < 32; ++lane) {
        const int64_t r0 = t * 16 + lane / 4;
        const int64_t chunk0 = (s * 64 + 16 * (lane % 4)) / 4;  // first of 4 chunks
        uint32_t word = 0;
        for (int q = 0; q < 4; ++q) {
          word |= chunk_bits(r0, chunk0 + q) << (4 * q);
          word |= chunk_bits(r0 + 8, chunk0 + q) << (16 + 4 * q);
        }
        // Slab s is word s % 2 of lane's pair in k-tile s / 2.
        L.meta[size_t(((t * ktiles + s / 2) * 32 + lane) * 2 + s % 2)] = word;
      }
  return L;
}

}  // namespace samoyeds
