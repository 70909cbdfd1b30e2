#include "format/device_layout.hpp"

#include <algorithm>

namespace samoyeds {

DeviceLayout to_device_layout(const PackedWeights& p) {
  const auto& sp = p.sparsity;
  DeviceLayout L;
  L.dtype = p.dtype;
  L.sparsity = sp;
  L.m = p.m;
  L.k = p.k;
  L.rows = p.condensed_rows();
  L.rows_pad = (L.rows + DeviceLayout::kRowAlign - 1) / DeviceLayout::kRowAlign * DeviceLayout::kRowAlign;
  const int64_t kalign = std::max<int64_t>(sp.V, DeviceLayout::kKAlign);
  L.k_phys = (p.k_pad + kalign - 1) / kalign * kalign;

  const int64_t half_src = p.k_pad / 2, half_dst = L.k_phys / 2;
  L.values.assign(size_t(L.rows_pad * half_dst), 0);
  for (int64_t r = 0; r < L.rows; ++r)
    std::copy_n(&p.values[size_t(r * half_src)], half_src, &L.values[size_t(r * half_dst)]);

  // Padding rows and columns: zero values with metadata pair (0,1), a defined
  // encoding, and selectors j (distinct, increasing) so the kernel never sees
  // an undefined pattern.
  const int64_t segs_src = p.segments(), segs_dst = L.k_phys / sp.V;
  L.sel.assign(size_t(segs_dst * L.rows_pad), 0);
  for (int64_t s = 0; s < segs_dst; ++s)
    for (int64_t r = 0; r < L.rows_pad; ++r)
      L.sel[size_t(s * L.rows_pad + r)] = (s < segs_src && r < L.rows)
                                              ? p.sel[size_t(s * L.rows + r)]
                                              : uint8_t(r % sp.N);

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
