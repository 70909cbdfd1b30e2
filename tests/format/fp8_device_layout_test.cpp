// The FP8 device layout (format/fp8_device_layout.hpp) read back through the
// metadata slots alone, the way the sparse FP8 MMA reads it, against the
// dense matrix the packed weights stand for.
#include <gtest/gtest.h>

#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "format/fp8_device_layout.hpp"
#include "samoyeds/error.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds::test {
namespace {

// The dense [m, k] matrix an FP8 MMA would multiply: every condensed row, k64
// step and chunk, its two columns from the metadata word and nibble that
// fp8_meta_slot names, its values from the k64 step's 32 compressed bytes,
// its scale from the 16-row tile's, its dense row from the selector.
std::vector<float> read_back(const Fp8DeviceLayout& L) {
  const SparsityParams& sp = L.sparsity;
  std::map<std::pair<int, int>, std::pair<int, int>> owner;  // (row, chunk) -> (lane, nibble)
  for (int lane = 0; lane < 32; ++lane)
    for (int nibble = 0; nibble < 8; ++nibble) {
      const Fp8MetaSlot s = fp8_meta_slot(lane, nibble);
      EXPECT_TRUE(owner.emplace(std::make_pair(s.row, s.chunk), std::make_pair(lane, nibble)).second)
          << "two nibbles feed row " << s.row << " chunk " << s.chunk;
    }
  EXPECT_EQ(owner.size(), 16u * 16u);
  const int64_t ktiles = L.k_phys / 256, kblocks = L.k_phys / 128, half = L.k_phys / 2;
  std::vector<float> dense(size_t(L.m * L.k), 0.0f);
  for (int64_t r = 0; r < L.rows; ++r)
    for (int64_t step = 0; step < L.k_phys / 64; ++step)
      for (int c = 0; c < 16; ++c) {
        const auto [lane, nibble] = owner.at({int(r % 16), c});
        const uint32_t word = L.meta[size_t((((r / 16) * ktiles + step / 4) * 32 + lane) * 4 + step % 4)];
        const int bits = int(word >> (4 * nibble)) & 0xf;
        const int64_t col0 = step * 64 + 4 * c;
        const int64_t row = r / sp.N * sp.M + L.sel[size_t(col0 / sp.V * L.rows_pad + r)];
        const float scale = L.scale_inv[size_t((r / 16) * kblocks + col0 / 128)];
        for (int h = 0; h < 2; ++h) {
          const int64_t col = col0 + ((bits >> (2 * h)) & 3);
          const float v = e4m3_bits_to_float(L.values[size_t(r * half + step * 32 + 2 * c + h)]) * scale;
          if (row < L.m && col < L.k) dense[size_t(row * L.k + col)] += v;
          else EXPECT_EQ(v, 0.0f) << "a value in the padding at (" << row << ", " << col << ")";
        }
      }
  return dense;
}

TEST(Fp8DeviceLayout, ReadsBackAsTheDenseMatrixThroughTheMetadataSlots) {
  struct Case {
    int64_t m, k;
    SparsityParams sp;
  };
  const Case cases[] = {{256, 512, {128, 1, 2}}, {200, 300, {64, 1, 2}}, {96, 1000, {128, 2, 4}},
                        {130, 256, {32, 1, 2}},  {64, 768, {128, 1, 4}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{}x{} {}", c.m, c.k, c.sp.to_string()));
    const std::vector<uint16_t> w = random_matrix(c.m, c.k, DType::bf16);
    const PackedFp8Weights q = pack_weights_e4m3(w.data(), c.m, c.k, DType::bf16, c.sp);
    const Fp8DeviceLayout L = to_device_layout(q);
    EXPECT_EQ(L.rows_pad % Fp8DeviceLayout::kRowAlign, 0);
    EXPECT_EQ(L.k_phys % Fp8DeviceLayout::kKAlign, 0);
    EXPECT_GE(L.k_phys, c.k);
    EXPECT_EQ(L.bytes(), L.rows_pad * L.k_phys / 2 + L.rows_pad * L.k_phys / 8 + L.k_phys / c.sp.V * L.rows_pad +
                             L.rows_pad / 16 * L.k_phys / 128 * 4);
    const std::vector<float> want = decode_weights(q), got = read_back(L);
    ASSERT_EQ(got.size(), want.size());
    int wrong = 0;
    for (size_t i = 0; i < want.size(); ++i)
      if (got[i] != want[i] && ++wrong <= 8)
        ADD_FAILURE() << "(" << i / size_t(c.k) << ", " << i % size_t(c.k) << "): " << got[i] << " where the packed "
                      << "weights decode to " << want[i];
    EXPECT_EQ(wrong, 0);
    // Padding rows: the defined pair (0, 1) in every chunk, scale 1.
    const int64_t ktiles = L.k_phys / 256;
    for (int64_t t = (L.rows + 15) / 16; t < L.rows_pad / 16; ++t)
      for (int64_t i = 0; i < ktiles * 128; ++i) ASSERT_EQ(L.meta[size_t(t * ktiles * 128 + i)], 0x44444444u);
    if (L.rows_pad / 16 > (L.rows + 15) / 16) EXPECT_EQ(L.scale_inv.back(), 1.0f);
  }
}

TEST(Fp8DeviceLayout, RefusesPatternsWhoseTilesCrossAScaleBlock) {
  const std::vector<uint16_t> w = random_matrix(96, 256, DType::bf16);
  // 3:8 packs (M divides 128), but 16 condensed rows are not whole groups.
  const PackedFp8Weights q = pack_weights_e4m3(w.data(), 96, 256, DType::bf16, {128, 3, 8});
  try {
    to_device_layout(q);
    FAIL() << "a 3:8 layout was made";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
    EXPECT_NE(std::string(e.what()).find("3:8"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace samoyeds::test
