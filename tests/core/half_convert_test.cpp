#include <gtest/gtest.h>

#include <cmath>

#include "samoyeds/dtype.hpp"

namespace samoyeds {
namespace {

TEST(HalfConvert, EveryFiniteF16BitPatternRoundTripsExactly) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = half_bits_to_float(uint16_t(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half_bits(f), b) << std::hex << b;
  }
}

TEST(HalfConvert, EveryBf16BitPatternRoundTripsExactly) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const float f = bf16_bits_to_float(uint16_t(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16_bits(f), b) << std::hex << b;
  }
}

TEST(HalfConvert, F16RoundsToNearestEvenAndSaturatesToInf) {
  EXPECT_EQ(float_to_half_bits(1.0f + 1.0f / 2048), 0x3c00u);          // tie -> even (down)
  EXPECT_EQ(float_to_half_bits(1.0f + 3.0f / 2048), 0x3c02u);          // tie -> even (up)
  EXPECT_EQ(float_to_half_bits(65504.0f), 0x7bffu);
  EXPECT_EQ(float_to_half_bits(65520.0f), 0x7c00u);                    // rounds to inf
  EXPECT_EQ(float_to_half_bits(-1e-8f), 0x8000u);                      // underflow keeps sign
  EXPECT_EQ(float_to_half_bits(5.960464477539063e-08f), 0x0001u);      // smallest subnormal
  EXPECT_TRUE(std::isnan(half_bits_to_float(float_to_half_bits(NAN))));
}

TEST(HalfConvert, Bf16RoundsToNearestEven) {
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80u);
  EXPECT_EQ(float_to_bf16_bits(1.0f + 1.0f / 256), 0x3f80u);  // tie -> even
  EXPECT_EQ(float_to_bf16_bits(1.0f + 3.0f / 256), 0x3f82u);
  EXPECT_TRUE(std::isnan(bf16_bits_to_float(float_to_bf16_bits(NAN))));
}

}  // namespace
}  // namespace samoyeds
