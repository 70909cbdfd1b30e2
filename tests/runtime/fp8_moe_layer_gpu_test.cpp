// The MoE layer with FP8 routed experts (MoeLayerSpec::fp8_experts) against
// a float64 model of what it computes: each token quantized per 1 x 128
// group, the experts' dequantized E4M3 weights, the gated activation
// rounded to bf16 and quantized per 1 x 128 group, the routing weights, the
// experts summed in slot order. Also its distance from the bf16 layer on the
// same weights, printed (docs/fp8.md states it).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "format/fp8_pack.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/moe_layer.hpp"
#include "tests/test_util/gpu_check.hpp"
#include "tests/test_util/random_data.hpp"

namespace samoyeds {
namespace {

std::vector<double> matvec(const std::vector<float>& w, int64_t m, int64_t k, const std::vector<double>& x) {
  std::vector<double> out(static_cast<size_t>(m), 0.0);
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; ++c) out[size_t(r)] += double(w[size_t(r * k + c)]) * x[size_t(c)];
  return out;
}

std::vector<uint16_t> forward(const MoeLayer& layer, const std::vector<uint16_t>& x, int64_t T,
                              const std::vector<int32_t>& ids, const std::vector<float>& weights) {
  const DeviceBuffer dx = test::to_device(x), dids = test::to_device(ids), dw = test::to_device(weights);
  const size_t bytes = layer.workspace_bytes(T);
  DeviceBuffer ws(bytes + 256);
  void* aligned = reinterpret_cast<void*>((reinterpret_cast<uintptr_t>(ws.data()) + 255) / 256 * 256);
  test::PoisonedOutput y(T * layer.spec().hidden);
  DeviceBuffer flag(4);
  flag.fill_bytes(0);
  layer.forward_routed(dx.data(), T, static_cast<const int32_t*>(dids.data()), static_cast<const float*>(dw.data()),
                       y.data(), aligned, bytes, nullptr, static_cast<int*>(flag.data()));
  Device::get().synchronize();
  EXPECT_EQ(test::from_device<int>(flag, 1)[0], 0);
  return y.read();
}

TEST(Fp8MoeLayerGpu, MatchesTheFloat64ModelOfItsQuantization) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "FP8 experts need sm_90a";
  const int64_t H = 512, I = 384;
  const int E = 6, K = 2;
  MoeLayerSpec spec;
  spec.hidden = H;
  spec.ffn = I;
  spec.experts = E;
  spec.top_k = K;
  spec.dtype = DType::bf16;
  spec.sparsity = {128, 1, 2};
  std::vector<std::vector<uint16_t>> w(size_t(3 * E));
  std::vector<DenseExpert> dense;
  for (int e = 0; e < E; ++e) {
    w[size_t(3 * e)] = test::random_matrix(I, H, DType::bf16, 0.1f);
    w[size_t(3 * e + 1)] = test::random_matrix(I, H, DType::bf16, 0.1f);
    w[size_t(3 * e + 2)] = test::random_matrix(H, I, DType::bf16, 0.1f);
    dense.push_back({w[size_t(3 * e)].data(), w[size_t(3 * e + 1)].data(), w[size_t(3 * e + 2)].data(), 0});
  }
  spec.fp8_experts = true;
  const MoeLayer fp8(test::shared_runtime(), spec, dense);
  spec.fp8_experts = false;
  const MoeLayer bf16(test::shared_runtime(), spec, dense);
  // The values halve; metadata and selectors stay, and k pads to the FP8
  // k-tile of 256 (w2's 384 to 512 here): 0.61x on 2026-12-07.
  EXPECT_LT(fp8.weight_bytes(), bf16.weight_bytes() * 65 / 100) << "FP8 experts should take about half the bytes";
  // The float64 model's weights: the FP8 packing, dequantized.
  std::vector<std::vector<float>> deq(size_t(3 * E));
  for (int e = 0; e < E; ++e)
    for (int q = 0; q < 3; ++q) {
      const int64_t rows = q == 2 ? H : I, cols = q == 2 ? I : H;
      deq[size_t(3 * e + q)] =
          decode_weights(pack_weights_e4m3(w[size_t(3 * e + q)].data(), rows, cols, DType::bf16, spec.sparsity));
    }
  for (int64_t T : {1, 7, 64, 200}) {
    SCOPED_TRACE(fmt::format("T = {}", T));
    const std::vector<uint16_t> x = test::random_matrix(T, H, DType::bf16);
    std::vector<int32_t> ids(size_t(T * K));
    std::vector<float> pw(size_t(T * K));
    for (int64_t t = 0; t < T; ++t) {
      ids[size_t(t * K)] = int32_t(t % E);
      ids[size_t(t * K + 1)] = int32_t((t * 5 + 2) % E == t % E ? (t + 1) % E : (t * 5 + 2) % E);
      pw[size_t(t * K)] = 0.6f;
      pw[size_t(t * K + 1)] = 0.4f;
    }
    DenseF64 ref{T, H, std::vector<double>(size_t(T * H), 0.0)};
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> xt(static_cast<size_t>(H));
      for (int64_t c = 0; c < H; ++c) xt[size_t(c)] = bf16_bits_to_float(x[size_t(t * H + c)]);
      const std::vector<double> xq = e4m3_token_round_trip(xt);
      for (int j = 0; j < K; ++j) {
        const int e = ids[size_t(t * K + j)];
        const std::vector<double> g = matvec(deq[size_t(3 * e)], I, H, xq), u = matvec(deq[size_t(3 * e + 1)], I, H, xq);
        std::vector<double> h(static_cast<size_t>(I));
        for (int64_t r = 0; r < I; ++r)
          h[size_t(r)] = bf16_bits_to_float(float_to_bf16_bits(float(g[size_t(r)] / (1.0 + std::exp(-g[size_t(r)])) * u[size_t(r)])));
        const std::vector<double> z = matvec(deq[size_t(3 * e + 2)], H, I, e4m3_token_round_trip(h));
        for (int64_t c = 0; c < H; ++c) ref.data[size_t(t * H + c)] += double(pw[size_t(t * K + j)]) * z[size_t(c)];
      }
    }
    const std::vector<uint16_t> got = forward(fp8, x, T, ids, pw);
    const test::Comparison c = test::compare(got, DType::bf16, ref);
    EXPECT_EQ(c.non_finite, 0) << c.first_non_finite;
    EXPECT_LT(c.rel_error, test::tolerance(DType::bf16));
    const std::vector<uint16_t> base = forward(bf16, x, T, ids, pw);
    DenseF64 base64{T, H, std::vector<double>(base.size())};
    for (size_t i = 0; i < base.size(); ++i) base64.data[i] = bf16_bits_to_float(base[i]);
    std::printf("FP8 layer at T = %lld: %.3g from its float64 model, %.3g from the bf16 layer on the same weights\n",
                static_cast<long long>(T), c.rel_error, test::compare(got, DType::bf16, base64).rel_error);
  }
}

// The spec alone (no GPU): what FP8 experts cannot run is refused up front.
TEST(Fp8MoeLayerGpu, RefusesWhatItCannotRun) {
  MoeLayerSpec spec;
  spec.hidden = 256;
  spec.ffn = 256;
  spec.experts = 2;
  spec.top_k = 1;
  spec.dtype = DType::bf16;
  spec.sparsity = {64, 1, 2};  // V not a multiple of 128
  spec.fp8_experts = true;
  EXPECT_THROW(spec.validate(), Error);
  spec.sparsity = {128, 2, 4};
  EXPECT_THROW(spec.validate(), Error);
  spec.sparsity = {256, 1, 2};  // the kernel's segments are 128 columns
  EXPECT_THROW(spec.validate(), Error);
  spec.sparsity = {128, 1, 2};
  spec.dtype = DType::f16;
  EXPECT_THROW(spec.validate(), Error);
  spec.dtype = DType::bf16;
  spec.validate();  // what it can run
  spec.hidden = 264;  // a multiple of 8, not of 16: TMA's rows of E4M3 codes
  EXPECT_THROW(spec.validate(), Error);
  spec.hidden = 256;
  spec.expert_parallel = true;
  EXPECT_THROW(spec.validate(), Error);
}

}  // namespace
}  // namespace samoyeds
