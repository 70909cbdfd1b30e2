#include <gtest/gtest.h>

#include <cmath>

#include "samoyeds/error.hpp"
#include "samoyeds/reference.hpp"

namespace samoyeds {
namespace {

DenseF64 mat(int64_t r, int64_t c, std::vector<double> v) { return DenseF64{r, c, std::move(v)}; }

TEST(Reference, SsmmGathersRowsByIndexAndMultipliesByTheTranspose) {
  const DenseF64 w = mat(2, 3, {1, 2, 3, -1, 0, 2});
  const DenseF64 x = mat(3, 3, {1, 0, 0, 0, 1, 0, 1, 1, 1});
  const DenseF64 y = reference_ssmm(w, x, {2, 0, 2}, Epilogue::None);
  EXPECT_EQ(y.data, (std::vector<double>{6, 1, 1, -1, 6, 1}));
}

TEST(Reference, SiluAndGatedSilu) {
  EXPECT_NEAR(silu(1.0), 1.0 / (1.0 + std::exp(-1.0)), 1e-15);
  const DenseF64 w = mat(1, 2, {1, 1}), g = mat(1, 2, {2, 0});
  const DenseF64 x = mat(1, 2, {0.5, 1.5});
  EXPECT_NEAR(reference_ssmm(w, x, {0}, Epilogue::Silu).data[0], silu(2.0), 1e-15);
  EXPECT_NEAR(reference_ssmm(w, x, {0}, Epilogue::GatedSilu, &g).data[0], silu(2.0) * 1.0, 1e-15);
  EXPECT_THROW(reference_ssmm(w, x, {0}, Epilogue::GatedSilu), Error);
}

// gpt-oss's epilogues by hand: y = x . w + b; the clamped SwiGLU of
// (x . w1 + b1, x . w3 + b3) with g <= limit and |u| <= limit.
TEST(Reference, BiasAndClampedSwigluByHand) {
  const DenseF64 x{1, 2, {1.0, 2.0}};
  const DenseF64 w1{2, 2, {1.0, 0.0, 4.0, 4.0}};   // g: 1 + b1, 12 + b1
  const DenseF64 w3{2, 2, {0.0, 1.0, -5.0, 0.0}};  // u: 2 + b3, -5 + b3
  EpilogueInputs in;
  in.bias = {0.5, -1.0};
  in.up_bias = {0.25, -4.0};
  const DenseF64 b = reference_ssmm(w1, x, {0}, Epilogue::Bias, nullptr, in);
  EXPECT_DOUBLE_EQ(b.at(0, 0), 1.5);
  EXPECT_DOUBLE_EQ(b.at(0, 1), 11.0);
  const DenseF64 h = reference_ssmm(w1, x, {0}, Epilogue::ClampedSwiglu, &w3, in);
  auto sig = [](double v) { return 1.0 / (1.0 + std::exp(-v)); };
  EXPECT_NEAR(h.at(0, 0), (2.25 + 1.0) * 1.5 * sig(1.702 * 1.5), 1e-12);
  EXPECT_NEAR(h.at(0, 1), (-7.0 + 1.0) * 7.0 * sig(1.702 * 7.0), 1e-12);  // g 11 -> 7, u -9 -> -7
  in.up_bias.clear();
  EXPECT_THROW(reference_ssmm(w1, x, {0}, Epilogue::ClampedSwiglu, &w3, in), Error);
}

TEST(Reference, DownCombineAccumulatesRepeatedTokens) {
  const DenseF64 w = mat(2, 2, {1, 0, 0, 1});
  const DenseF64 h = mat(3, 2, {1, 2, 3, 4, 5, 6});
  DenseF64 y = mat(2, 2, {10, 10, 10, 10});
  reference_down_combine(w, h, {1, 0, 1}, {0.5f, 1.0f, 2.0f}, y);
  EXPECT_EQ(y.data, (std::vector<double>{13, 14, 10.5 + 10, 11 + 12}));
}

TEST(Reference, RejectsOutOfRangeIdsAndShapeMismatch) {
  const DenseF64 w = mat(1, 2, {1, 1}), x = mat(2, 2, {1, 1, 1, 1}), x3 = mat(1, 3, {1, 1, 1});
  EXPECT_THROW(reference_ssmm(w, x, {2}, Epilogue::None), Error);
  EXPECT_THROW(reference_ssmm(w, x, {-1}, Epilogue::None), Error);
  EXPECT_THROW(reference_ssmm(w, x3, {0}, Epilogue::None), Error);
}

TEST(Reference, RelativeFrobeniusErrorFlagsNan) {
  EXPECT_DOUBLE_EQ(relative_frobenius_error({3, 4}, {3, 4}), 0.0);
  EXPECT_NEAR(relative_frobenius_error({3, 5}, {3, 4}), 1.0 / 5.0, 1e-15);
  EXPECT_FALSE(relative_frobenius_error({NAN, 4}, {3, 4}) <= 1.0);
}

TEST(Reference, TakeRowsGathersRowsInIdOrderWithRepeats) {
  const std::vector<uint16_t> x = {1, 2, 3, 10, 20, 30, 100, 200, 300};  // 3 rows of 3
  EXPECT_EQ(take_rows(x.data(), 3, {2, 0, 2}), (std::vector<uint16_t>{100, 200, 300, 1, 2, 3, 100, 200, 300}));
  EXPECT_TRUE(take_rows(x.data(), 3, {}).empty());
}

}  // namespace
}  // namespace samoyeds
