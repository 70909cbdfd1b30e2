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

#include "backends/wgmma_sp/tma_weight_maps.hpp"
#include "core/cuda_driver.hpp"
#include "core/kernel_launch.hpp"
#include "format/fp8_device_layout.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/reference.hpp"
#include "templates/kernel_args.cuh"
#include "tests/backends/wgmma_sp/fp8_projection_kernel.hpp"
#include "tests/test_util/gpu_check.hpp"
#include "tests/test_util/random_data.hpp"

namespace samoyeds {
namespace {

// One weight operand on the device, in the FP8 layout, scales transposed.
struct Fp8Operand {
  PackedFp8Weights packed;
  Fp8DeviceLayout layout;
  DeviceBuffer values, meta, sel, scales;
  PackedFp8WeightView view() const { return {values.data(), meta.data(), sel.data(), scales.data()}; }
};

Fp8Operand upload_operand(const std::vector<uint16_t>& w, int64_t m, int64_t k, const SparsityParams& sp) {
  Fp8Operand o;
  o.packed = pack_weights_e4m3(w.data(), m, k, DType::bf16, sp);
  o.layout = to_device_layout(o.packed);
  const Fp8DeviceLayout& L = o.layout;
  const int64_t tiles = L.rows_pad / 16, kblocks = L.k_phys / 128;
  std::vector<float> transposed(size_t(tiles * kblocks));
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t b = 0; b < kblocks; ++b) transposed[size_t(b * tiles + t)] = L.scale_inv[size_t(t * kblocks + b)];
  o.values = test::to_device(L.values);
  o.meta = test::to_device(L.meta);
  o.sel = test::to_device(L.sel);
  o.scales = test::to_device(transposed);
  return o;
}

DenseF64 f64(const std::vector<float>& v, int64_t rows, int64_t cols) {
  DenseF64 d{rows, cols, std::vector<double>(v.begin(), v.end())};
  return d;
}

// y = epi(x W^T) for n tokens of a [m, k] projection (two of them, gated),
// 1:2 x 2:4 at V = 128, weights quantized per 128 x 128 block and tokens per
// 1 x 128 group, against the float64 product of the dequantized values.
void check_projection(const test::Fp8Tile& t, int64_t m, int64_t k, int64_t n) {
  SCOPED_TRACE(fmt::format("bm{} bn{} s{}{} m {} k {} n {}", t.block_m, t.block_n, t.stages,
                           t.gated ? " gated" : "", m, k, n));
  const SparsityParams sp{128, 1, 2};
  Device& dev = Device::get();
  dev.make_current();
  const auto& d = driver();
  std::vector<Fp8Operand> ops;
  for (int w = 0; w < (t.gated ? 2 : 1); ++w)
    ops.push_back(upload_operand(test::random_matrix(m, k, DType::bf16), m, k, sp));
  const std::vector<uint16_t> x = test::random_matrix(n, k, DType::bf16);
  const Fp8Weights xq = quantize_e4m3(x.data(), n, k, DType::bf16, Fp8Scaling::Group1x128);
  const int64_t groups = (k + 127) / 128, ld = (n + 3) / 4 * 4;
  std::vector<float> xs(size_t(groups * ld), 0.0f);  // transposed, zero past the tokens
  for (int64_t i = 0; i < n; ++i)
    for (int64_t g = 0; g < groups; ++g) xs[size_t(g * ld + i)] = xq.scale_inv[size_t(i * groups + g)];
  const DeviceBuffer dx = test::to_device(xq.values), dxs = test::to_device(xs);
  test::PoisonedOutput y(n * m);
  DeviceBuffer error_flag(4);
  error_flag.fill_bytes(0);

  const Fp8DeviceLayout& L = ops[0].layout;
  WeightMapShape shape;
  shape.rows_pad = L.rows_pad;
  shape.k_phys = L.k_phys;
  shape.V = sp.V;
  shape.block_m = t.block_m;
  shape.block_k = 256;
  PackedFp8WeightView views[2];
  for (size_t w = 0; w < ops.size(); ++w) views[w] = ops[w].view();
  const TmaWeightMaps maps =
      encode_fp8_maps(views, int(ops.size()), shape, dx.data(), n, k, dxs.data(), ld, t.block_n);
  SsmmArgs args{};
  args.x = static_cast<const unsigned short*>(dx.data());  // TMA reads the tokens; no pointer arithmetic on x
  args.y = static_cast<unsigned short*>(y.data());
  args.error_flag = static_cast<int*>(error_flag.data());
  args.m = int(m);
  args.k = int(k);
  args.n = int(n);
  args.x_rows = int(n);
  args.ldx = int(k);
  args.ldy = int(m);
  args.rows_pad = int(L.rows_pad);
  args.k_phys = int(L.k_phys);

  const GeneratedKernel g = test::fp8_projection_kernel(t);
  const CompiledBinary bin = nvrtc_compile(g, "sm_90a");
  ASSERT_EQ(bin.spill_bytes, 0) << bin.log;
  CUmodule module;
  check(d.cuModuleLoadData(&module, bin.cubin.data()), "cuModuleLoadData(fp8 projection)");
  CUfunction fn;
  check(d.cuModuleGetFunction(&fn, module, g.kernel_name.c_str()), "cuModuleGetFunction");
  const int smem = dev.info().max_smem_optin;  // at least the kernel's; one block per SM either way
  check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem), "cuFuncSetAttribute");
  const int64_t row_tiles = ((m + 1) / 2 + t.block_m - 1) / t.block_m, tok_tiles = (n + t.block_n - 1) / t.block_n;
  void* params[] = {&args, const_cast<TmaWeightMaps*>(&maps)};
  check(launch_kernel(dev, fn, LaunchShape{unsigned(row_tiles * tok_tiles), 1, 1, unsigned(g.threads), unsigned(smem)},
                      nullptr, params),
        "launch fp8 projection");
  dev.synchronize();
  EXPECT_EQ(test::from_device<int>(error_flag, 1)[0], 0);
  const std::vector<uint16_t> got = y.read();
  check(d.cuModuleUnload(module), "cuModuleUnload");

  const DenseF64 xd = f64(dequantize(xq), n, k);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[size_t(i)] = int32_t(i);
  const DenseF64 w0 = f64(decode_weights(ops[0].packed), m, k);
  DenseF64 w1;
  if (t.gated) w1 = f64(decode_weights(ops[1].packed), m, k);
  const DenseF64 ref = reference_ssmm(w0, xd, ids, t.gated ? Epilogue::GatedSilu : Epilogue::None,
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
  check_projection({128, 64, 4, false}, 384, 896, 100);
}

TEST(WgmmaSpFp8Gpu, GatedProjectionMatchesTheDequantizedReference) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  check_projection({64, 64, 4, true}, 256, 1024, 70);
  check_projection({128, 32, 4, true}, 384, 768, 33);
}

}  // namespace
}  // namespace samoyeds
