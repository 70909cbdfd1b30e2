// Tokens quantized on the GPU (Fp8DeviceTokens::quantize, the
// QuantizeRowsE4m3 kernel) against the host's quantize_e4m3 of the same
// gathered rows: equal scales bit for bit, equal codes by value.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "format/fp8.hpp"
#include "runtime/fp8_weights.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/reference.hpp"
#include "tests/test_util/gpu_check.hpp"
#include "templates/kernel_args.cuh"
#include "tests/test_util/random_data.hpp"

namespace samoyeds {
namespace {

void check_quantized(DType dtype, int64_t x_rows, int64_t k, const std::vector<int32_t>& ids) {
  SCOPED_TRACE(fmt::format("{} {} rows of {}, {} ids", dtype_name(dtype), x_rows, k, ids.size()));
  std::vector<uint16_t> x = test::random_matrix(x_rows, k, dtype);
  std::fill_n(x.begin() + 2 * k, k, uint16_t(0));  // an all-zero row: scale 1, codes 0
  for (int64_t c = 0; c < k; c += 37) x[size_t(3 * k + c)] = from_float(dtype, c % 2 ? 3000.0f : -0.001f);  // spread
  const int64_t n = int64_t(ids.size());
  const DeviceBuffer dx = test::to_device(x), dids = test::to_device(ids);
  DeviceBuffer flag(4);
  flag.fill_bytes(0);
  KernelRuntime& rt = test::shared_runtime();
  const Fp8DeviceTokens t = Fp8DeviceTokens::quantize(rt, dx.data(), x_rows, static_cast<const int32_t*>(dids.data()),
                                                      n, k, dtype, nullptr, static_cast<int*>(flag.data()));
  Device::get().synchronize();
  EXPECT_EQ(test::from_device<int>(flag, 1)[0], 0);
  const Fp8Weights want = quantize_e4m3(take_rows(x.data(), k, ids).data(), n, k, dtype, Fp8Scaling::Group1x128);
  const std::vector<uint8_t> codes = test::from_device<uint8_t>(t.codes, size_t(n * k));
  const std::vector<float> scales = test::from_device<float>(t.scale_inv, size_t((k + 127) / 128 * t.scale_ld));
  const int64_t groups = (k + 127) / 128;
  int wrong = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < groups; ++g) {
      const float got = scales[size_t(g * t.scale_ld + i)], expect = want.scale_inv[size_t(i * groups + g)];
      if (got != expect && ++wrong <= 8) ADD_FAILURE() << "scale of token " << i << " group " << g << ": " << got << " where the host has " << expect;
    }
  for (int64_t i = 0; i < n * k; ++i) {
    const float got = e4m3_bits_to_float(codes[size_t(i)]), expect = e4m3_bits_to_float(want.values[size_t(i)]);
    if (got != expect && ++wrong <= 16)
      ADD_FAILURE() << "token " << i / k << " column " << i % k << ": " << got << " where the host has " << expect;
  }
  EXPECT_EQ(wrong, 0);
}

TEST(Fp8TokensGpu, QuantizedGatheredRowsEqualTheHostQuantization) {
  SAMOYEDS_REQUIRE_GPU();
  std::vector<int32_t> ids = {3, 0, 2, 2, 49, 17, 3};
  for (int i = 0; i < 30; ++i) ids.push_back(int32_t((i * 13) % 50));
  check_quantized(DType::bf16, 50, 640, ids);
  check_quantized(DType::f16, 50, 208, ids);  // a partial last group
  // The projection's TMA reads rows of k codes: k a multiple of 16 bytes.
  const DeviceBuffer x = test::to_device(test::random_matrix(4, 200, DType::f16)), ids4 = test::to_device(ids);
  EXPECT_THROW(Fp8DeviceTokens::quantize(test::shared_runtime(), x.data(), 4, static_cast<const int32_t*>(ids4.data()),
                                         4, 200, DType::f16, nullptr, nullptr),
               Error);
}

TEST(Fp8TokensGpu, AnIdOutOfRangeGivesZerosAndRaisesTheFlag) {
  SAMOYEDS_REQUIRE_GPU();
  const int64_t k = 256;
  const std::vector<uint16_t> x = test::random_matrix(4, k, DType::bf16);
  const std::vector<int32_t> ids = {1, 4, -1, 0};
  const DeviceBuffer dx = test::to_device(x), dids = test::to_device(ids);
  DeviceBuffer flag(4);
  flag.fill_bytes(0);
  const Fp8DeviceTokens t =
      Fp8DeviceTokens::quantize(test::shared_runtime(), dx.data(), 4, static_cast<const int32_t*>(dids.data()), 4, k,
                                DType::bf16, nullptr, static_cast<int*>(flag.data()));
  Device::get().synchronize();
  EXPECT_EQ(test::from_device<int>(flag, 1)[0], int(kErrorBadTokenId));
  const std::vector<uint8_t> codes = test::from_device<uint8_t>(t.codes, size_t(4 * k));
  for (int64_t row : {1, 2})
    for (int64_t c = 0; c < k; ++c) ASSERT_EQ(codes[size_t(row * k + c)], 0) << "row " << row;
  EXPECT_NE(std::count(codes.begin(), codes.begin() + k, uint8_t(0)), k);  // row 0 was quantized
}

}  // namespace
}  // namespace samoyeds
