// The sampled check of a launch on its real shape (tuner/sampled_check.hpp):
// its sample meets every tile, and one wrong tile fails it even where a
// figure over the whole sample would pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "samoyeds/reference.hpp"
#include "tuner/sampled_check.hpp"

namespace samoyeds::tuning {
namespace {

TEST(SampledCheck, OnePerBlockMeetsEveryBlockWithTheEnds) {
  for (int64_t count : {1, 2, 31, 32, 33, 1000, 14336}) {
    const auto s = one_per_block(count, 64, 7);
    EXPECT_EQ(s.front(), 0);
    EXPECT_EQ(s.back(), count - 1);
    EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
    EXPECT_EQ(std::adjacent_find(s.begin(), s.end()), s.end()) << "no index twice";
    for (int64_t b = 0; b < count; b += 64)
      EXPECT_TRUE(std::any_of(s.begin(), s.end(), [&](int64_t i) { return i >= b && i < b + 64; }))
          << count << ": block at " << b;
  }
}

// A reference, and what a right launch gives: each value rounded to bf16.
struct Sample {
  size_t rows = 300, cols = 200;
  std::vector<double> ref, got;
  Sample() {
    std::mt19937 gen(3);
    std::normal_distribution<double> nd(0.0, 1.0);
    for (size_t i = 0; i < rows * cols; ++i) {
      ref.push_back(nd(gen));
      got.push_back(to_float(DType::bf16, from_float(DType::bf16, float(ref.back()))));
    }
  }
};

TEST(SampledCheck, RoundingToTheDtypePasses) {
  Sample s;
  std::string why;
  EXPECT_TRUE(rows_and_cols_match(s.got, s.ref, s.rows, s.cols, DType::bf16, &why)) << why;
  EXPECT_TRUE(rows_and_cols_match(s.ref, s.ref, s.rows, s.cols, DType::f16, &why)) << why;
  const std::vector<double> zeros(s.rows * s.cols, 0.0);
  EXPECT_TRUE(rows_and_cols_match(zeros, zeros, s.rows, s.cols, DType::bf16, &why)) << why;
}

TEST(SampledCheck, OneWrongTileFailsWhereTheWholeWouldPass) {
  Sample s;
  // A tile's worth of the sample: 2 sampled token rows x 4 sampled output rows, 30% off.
  for (size_t r = 100; r < 102; ++r)
    for (size_t c = 40; c < 44; ++c) s.got[r * s.cols + c] *= 1.3;
  ASSERT_LT(relative_frobenius_error(s.got, s.ref), dtype_tolerance(DType::bf16))
      << "the point of the test: a figure over the whole sample would pass";
  std::string why;
  EXPECT_FALSE(rows_and_cols_match(s.got, s.ref, s.rows, s.cols, DType::bf16, &why));
  EXPECT_NE(why.find("sampled"), std::string::npos) << why;
}

TEST(SampledCheck, ANonFiniteValueFails) {
  Sample s;
  s.got[12345] = NAN;
  std::string why;
  EXPECT_FALSE(rows_and_cols_match(s.got, s.ref, s.rows, s.cols, DType::bf16, &why));
  s.got[12345] = INFINITY;
  EXPECT_FALSE(rows_and_cols_match(s.got, s.ref, s.rows, s.cols, DType::bf16, &why));
}

}  // namespace
}  // namespace samoyeds::tuning
