// The FP8 expert projection kernel (SsmmWgmmaWs over E4M3: k64 sparse FP8
// MMAs, each 128-deep k-block promoted with its weight and token scales) on
// the GPU, launched directly with its tensor maps, against a float64
// reference of the dequantized weights and tokens. The op, the tuner and the
// layer do not offer FP8 yet; this checks the kernel they will launch.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "backends/wgmma_sp/fp8_projection.hpp"
#include "core/cuda_driver.hpp"
#include "core/kernel_launch.hpp"
#include "generator/generated_kernel.hpp"
#include "runtime/fp8_weights.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/reference.hpp"
#include "tests/test_util/gpu_check.hpp"
#include "tests/test_util/random_data.hpp"

namespace samoyeds {
namespace {

DenseF64 f64(const std::vector<float>& v, int64_t rows, int64_t cols) {
  DenseF64 d{rows, cols, std::vector<double>(v.begin(), v.end())};
  return d;
}

// y = epi(x W^T) for n tokens of a [m, k] projection (two of them, gated),
// 1:2 x 2:4 at V = 128, weights quantized per 128 x 128 block and tokens per
// 1 x 128 group, against the float64 product of the dequantized values.
// gathered: the tokens are rows ids[i] of a larger x, gathered and quantized
// on the GPU (Fp8DeviceTokens::quantize), as the layer will feed them.
void check_projection(const Fp8Tile& t, int64_t m, int64_t k, int64_t n, bool gathered = false) {
  SCOPED_TRACE(fmt::format("{} m {} k {} n {}{}", t.to_string(), m, k, n, gathered ? " gathered" : ""));
  const SparsityParams sp{128, 1, 2};
  Device& dev = Device::get();
  dev.make_current();
  const auto& d = driver();
  std::vector<PackedFp8Weights> packed;
  std::vector<Fp8DeviceWeights> ops;
  for (int w = 0; w < (t.gated ? 2 : 1); ++w) {
    packed.push_back(pack_weights_e4m3(test::random_matrix(m, k, DType::bf16).data(), m, k, DType::bf16, sp));
    ops.push_back(Fp8DeviceWeights::upload(packed.back()));
  }
  const int64_t x_rows = gathered ? n + 13 : n;
  const std::vector<uint16_t> x = test::random_matrix(x_rows, k, DType::bf16);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = gathered ? int32_t((i * 7 + 3) % x_rows) : int32_t(i);
  // The host's quantization of the rows the projection multiplies (the GPU's
  // equals it: tests/runtime/fp8_tokens_gpu_test.cpp).
  const Fp8Weights xq = quantize_e4m3(take_rows(x.data(), k, ids).data(), n, k, DType::bf16, Fp8Scaling::Group1x128);
  const DeviceBuffer dx = test::to_device(x), dids = test::to_device(ids);
  const Fp8DeviceTokens tokens =
      gathered ? Fp8DeviceTokens::quantize(test::shared_runtime(), dx.data(), x_rows,
                                           static_cast<const int32_t*>(dids.data()), n, k, DType::bf16, nullptr)
               : Fp8DeviceTokens::upload(xq);
  test::PoisonedOutput y(n * m);
  DeviceBuffer error_flag(4);
  error_flag.fill_bytes(0);

  Fp8ProjectionCall call = fp8_projection_call(ops[0], t.gated ? &ops[1] : nullptr, tokens.codes.data(),
                                               tokens.scale_inv.data(), tokens.scale_ld, n, y.data());
  call.error_flag = static_cast<int*>(error_flag.data());

  const GeneratedKernel g = generate_fp8_projection(t);
  const CompiledBinary bin = nvrtc_compile(g, "sm_90a");
  CUmodule module;
  check(d.cuModuleLoadData(&module, bin.cubin.data()), "cuModuleLoadData(fp8 projection)");
  CUfunction fn;
  check(d.cuModuleGetFunction(&fn, module, g.kernel_name.c_str()), "cuModuleGetFunction");
  check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, g.smem_bytes), "cuFuncSetAttribute");
  check(launch_fp8_projection(dev, fn, t, call, fp8_projection_maps(t, call), nullptr), "launch fp8 projection");
  dev.synchronize();
  EXPECT_EQ(test::from_device<int>(error_flag, 1)[0], 0);
  const std::vector<uint16_t> got = y.read();
  check(d.cuModuleUnload(module), "cuModuleUnload");

  const DenseF64 xd = f64(dequantize(xq), n, k);
  std::vector<int32_t> in_order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) in_order[size_t(i)] = int32_t(i);
  const DenseF64 w0 = f64(decode_weights(packed[0]), m, k);
  DenseF64 w1;
  if (t.gated) w1 = f64(decode_weights(packed[1]), m, k);
  const DenseF64 ref = reference_ssmm(w0, xd, in_order, t.gated ? Epilogue::GatedSilu : Epilogue::None,
                                      t.gated ? &w1 : nullptr);
  const test::Comparison c = test::compare(got, DType::bf16, ref);
  EXPECT_EQ(c.non_finite, 0) << c.first_non_finite;
  EXPECT_LT(c.rel_error, test::tolerance(DType::bf16));
  std::printf("fp8 projection %s: relative error %.3g\n", ::testing::UnitTest::GetInstance()->current_test_info()->name(),
              c.rel_error);
}

TEST(WgmmaSpFp8Gpu, ProjectionMatchesTheDequantizedReference) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  // Whole tiles; then padding rows, k past the tokens' last group, a partial token tile.
  check_projection({128, 64, 4, false}, 512, 1024, 128);
  check_projection({128, 64, 4, false}, 384, 896, 100, /*gathered=*/true);
}

TEST(WgmmaSpFp8Gpu, GatedProjectionMatchesTheDequantizedReference) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  check_projection({64, 64, 4, true}, 256, 1024, 70);
  check_projection({128, 32, 4, true}, 384, 768, 33, /*gathered=*/true);
}

// All experts in one grouped launch, tokens gathered and quantized into list
// order on the GPU, uneven counts (one expert empty), the list's room longer
// than the list, routing weights on the non-gated projection (the down
// projection's form): each expert's rows against the float64 reference, the
// rows past the list untouched.
void check_grouped(const Fp8Tile& t, bool scaled) {
  SCOPED_TRACE(fmt::format("grouped {}{}", t.to_string(), scaled ? " with routing weights" : ""));
  const SparsityParams sp{128, 1, 2};
  const int64_t m = 256, k = 512, tokens = 80;
  const std::vector<int> counts = {37, 0, 130, 1, 64};
  const int experts = int(counts.size());
  std::vector<int> offsets = {0};
  for (int c : counts) offsets.push_back(offsets.back() + c);
  const int64_t list = offsets.back(), room = list + 20;
  Device& dev = Device::get();
  dev.make_current();
  const auto& d = driver();
  std::vector<std::vector<PackedFp8Weights>> packed(t.gated ? 2 : 1);
  std::vector<Fp8DeviceWeights> ops;
  for (auto& op : packed) {
    for (int e = 0; e < experts; ++e)
      op.push_back(pack_weights_e4m3(test::random_matrix(m, k, DType::bf16).data(), m, k, DType::bf16, sp));
    ops.push_back(Fp8DeviceWeights::upload_experts(op));
  }
  const std::vector<uint16_t> x = test::random_matrix(tokens, k, DType::bf16);
  std::vector<int32_t> ids(static_cast<size_t>(list));
  for (int64_t i = 0; i < list; ++i) ids[size_t(i)] = int32_t((i * 11 + 5) % tokens);
  std::vector<float> p(static_cast<size_t>(room), 0.0f);
  for (int64_t i = 0; i < list; ++i) p[size_t(i)] = scaled ? 0.25f + float(i % 7) / 8.0f : 1.0f;
  const DeviceBuffer dx = test::to_device(x), dids = test::to_device(ids), doff = test::to_device(offsets),
                     dp = test::to_device(p);
  const Fp8DeviceTokens q = Fp8DeviceTokens::quantize(test::shared_runtime(), dx.data(), tokens,
                                                      static_cast<const int32_t*>(dids.data()), list, k, DType::bf16,
                                                      nullptr);
  // The list's room: rows past the list are never read as tokens (zeros) nor written.
  DeviceBuffer codes(size_t(room * k)), scales(size_t((k + 127) / 128 * ((room + 3) / 4 * 4)) * 4);
  codes.fill_bytes(0);
  scales.fill_bytes(0);
  const int64_t ld = (room + 3) / 4 * 4;
  {
    std::vector<uint8_t> c = test::from_device<uint8_t>(q.codes, size_t(list * k));
    codes.upload(c.data(), c.size());
    std::vector<float> sc = test::from_device<float>(q.scale_inv, size_t((k + 127) / 128 * q.scale_ld));
    std::vector<float> wide(size_t((k + 127) / 128 * ld), 0.0f);
    for (int64_t g = 0; g < (k + 127) / 128; ++g)
      for (int64_t i = 0; i < list; ++i) wide[size_t(g * ld + i)] = sc[size_t(g * q.scale_ld + i)];
    scales.upload(wide.data(), wide.size() * 4);
  }
  test::PoisonedOutput y(room * m);
  Fp8ProjectionCall call =
      fp8_projection_call(ops[0], t.gated ? &ops[1] : nullptr, codes.data(), scales.data(), ld, room, y.data());
  call.row_scale = scaled ? static_cast<const float*>(dp.data()) : nullptr;
  call.experts = experts;
  call.offsets = static_cast<const int*>(doff.data());
  const GeneratedKernel g = generate_fp8_projection(t, /*grouped=*/true);
  const CompiledBinary bin = nvrtc_compile(g, "sm_90a");
  CUmodule module;
  check(d.cuModuleLoadData(&module, bin.cubin.data()), "cuModuleLoadData(grouped fp8 projection)");
  CUfunction fn;
  check(d.cuModuleGetFunction(&fn, module, g.kernel_name.c_str()), "cuModuleGetFunction");
  check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                             g.smem_bytes + tile_prefix_bytes(experts)),
        "cuFuncSetAttribute");
  check(launch_fp8_projection(dev, fn, t, call, fp8_projection_maps(t, call), nullptr), "launch grouped fp8");
  dev.synchronize();
  const std::vector<uint16_t> got = y.read();
  check(d.cuModuleUnload(module), "cuModuleUnload");

  const Fp8Weights xq =
      quantize_e4m3(take_rows(x.data(), k, ids).data(), list, k, DType::bf16, Fp8Scaling::Group1x128);
  const DenseF64 xd = f64(dequantize(xq), list, k);
  for (int e = 0; e < experts; ++e) {
    if (counts[size_t(e)] == 0) continue;
    SCOPED_TRACE(fmt::format("expert {}", e));
    std::vector<int32_t> rows;
    for (int i = offsets[size_t(e)]; i < offsets[size_t(e) + 1]; ++i) rows.push_back(i);
    const DenseF64 w0 = f64(decode_weights(packed[0][size_t(e)]), m, k);
    DenseF64 w1;
    if (t.gated) w1 = f64(decode_weights(packed[1][size_t(e)]), m, k);
    DenseF64 ref = reference_ssmm(w0, xd, rows, t.gated ? Epilogue::GatedSilu : Epilogue::None, t.gated ? &w1 : nullptr);
    for (size_t i = 0; i < rows.size(); ++i)
      for (int64_t r = 0; r < m; ++r) ref.data[i * size_t(m) + size_t(r)] *= p[size_t(rows[i])];
    const std::vector<uint16_t> slice(got.begin() + offsets[size_t(e)] * m, got.begin() + offsets[size_t(e) + 1] * m);
    const test::Comparison c = test::compare(slice, DType::bf16, ref);
    EXPECT_EQ(c.non_finite, 0) << c.first_non_finite;
    EXPECT_LT(c.rel_error, test::tolerance(DType::bf16));
  }
  for (int64_t i = list * m; i < room * m; ++i) ASSERT_EQ(got[size_t(i)], 0xffff) << "row " << i / m << " past the list was written";
}

TEST(WgmmaSpFp8Gpu, GroupedLaunchMatchesTheReferenceForEveryExpert) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  check_grouped({128, 64, 4, false}, /*scaled=*/true);
  check_grouped({64, 64, 4, true}, /*scaled=*/false);
}

}  // namespace
}  // namespace samoyeds
