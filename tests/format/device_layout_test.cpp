#include <gtest/gtest.h>

#include "format/device_layout.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds {
namespace {

// Reads the register-order metadata back the way the sparse MMA hardware
// does (lane L: rows L/4 and L/4+8, columns 16*(L%4)..+15 of a 64-column
// slab; a 128-column k-tile's two slabs side by side per lane) and checks it
// against the canonical form, along with values and selectors.
TEST(DeviceLayout, RegisterOrderMetadataMatchesTheCanonicalForm) {
  for (SparsityParams sp : {SparsityParams{128, 1, 2}, SparsityParams{32, 2, 4}, SparsityParams{256, 1, 1}}) {
    const int64_t m = 300, k = 392;
    auto w = test::random_matrix(m, k, DType::bf16);
    PackedWeights p = pack_weights(w.data(), m, k, DType::bf16, sp);
    DeviceLayout L = to_device_layout(p);
    EXPECT_EQ(L.rows_pad % DeviceLayout::kRowAlign, 0);
    EXPECT_EQ(L.k_phys % std::max<int64_t>(sp.V, DeviceLayout::kKAlign), 0);
    EXPECT_EQ(L.meta.size(), size_t(L.rows_pad / 16 * L.k_phys / 2));
    const int64_t ktiles = L.k_phys / 128, half_src = p.k_pad / 2;
    for (int64_t r = 0; r < L.rows_pad; ++r)
      for (int64_t chunk = 0; chunk < L.k_phys / 4; ++chunk) {
        const int64_t tile = r / 16, slab = chunk / 16, lane = (r % 8) * 4 + (chunk % 16) / 4;
        const uint32_t word = L.meta[size_t(((tile * ktiles + slab / 2) * 32 + lane) * 2 + slab % 2)];
        const int shift = ((r % 16) >= 8 ? 16 : 0) + 4 * int(chunk % 4);
        const uint32_t bits = (word >> shift) & 0xf;
        const uint32_t lo = bits & 3, hi = bits >> 2;
        ASSERT_LT(lo, hi) << "undefined metadata at row " << r << " chunk " << chunk;
        if (r < L.rows && chunk * 2 < half_src) {
          ASSERT_EQ(lo, p.meta_at(r * half_src + chunk * 2));
          ASSERT_EQ(hi, p.meta_at(r * half_src + chunk * 2 + 1));
          ASSERT_EQ(L.values[size_t(r * (L.k_phys / 2) + chunk * 2)], p.values[size_t(r * half_src + chunk * 2)]);
        } else {
          ASSERT_EQ(L.values[size_t(r * (L.k_phys / 2) + chunk * 2)], 0);
        }
      }
    for (int64_t s = 0; s < L.k_phys / sp.V; ++s)
      for (int64_t r = 0; r < L.rows_pad; ++r) {
        const uint8_t v = L.sel[size_t(s * L.rows_pad + r)];
        ASSERT_LT(v, sp.M);
        if (s < p.segments() && r < L.rows) {
          ASSERT_EQ(v, p.sel[size_t(s * L.rows + r)]);
        }
        if (r % sp.N > 0) {
          ASSERT_GT(v, L.sel[size_t(s * L.rows_pad + r - 1)]);
        }
      }
  }
}

TEST(DeviceLayout, DeviceBytesOfALargeOneOfTwoMatrixStayUnderThirtyPercent) {
  const int64_t m = 2048, k = 1024;
  auto w = test::random_matrix(m, k, DType::f16);
  DeviceLayout L = to_device_layout(pack_weights(w.data(), m, k, DType::f16, {128, 1, 2}));
  EXPECT_LE(double(L.bytes()) / double(m * k * 2), 0.29);
}

}  // namespace
}  // namespace samoyeds
