#include "runtime/fp8_routed_experts.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "backends/wgmma_sp/fp8_projection.hpp"
#include "core/cuda_driver.hpp"  // check
#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

// The tiles (fp8_tiles()): the gated projection keeps two operands' sums,
// so 64 rows by 64 tokens; the down projection 128 by 64.
const Fp8Tile kGatedTile{64, 64, 4, true};
const Fp8Tile kDownTile{128, 64, 4, false};

size_t align_up(size_t b) { return (b + 255) / 256 * 256; }

std::string kernel_key(const Fp8Tile& t) { return "fp8 grouped " + t.to_string(); }

const LoadedKernel& grouped_kernel(KernelRuntime& rt, const Fp8Tile& t) {
  return rt.get_generated(kernel_key(t), [&] { return Fp8RoutedExperts::generate(t); });
}

}  // namespace

Fp8RoutedExperts::Fp8RoutedExperts(const std::vector<PackedFp8Weights>& w1, const std::vector<PackedFp8Weights>& w3,
                                   const std::vector<PackedFp8Weights>& w2)
    : experts_(int(w1.size())) {
  if (w1.empty() || w3.size() != w1.size() || w2.size() != w1.size())
    throw Error(ErrorCode::InvalidArgument, "FP8 experts: w1, w3 and w2 for the same experts, at least one");
  hidden_ = w1[0].selection.k;
  ffn_ = w1[0].selection.m;
  if (w2[0].selection.m != hidden_ || w2[0].selection.k != ffn_ || w3[0].selection.m != ffn_ ||
      w3[0].selection.k != hidden_)
    throw Error(ErrorCode::InvalidArgument, "FP8 experts: w1, w3 [ffn, hidden] and w2 [hidden, ffn]");
  w1_ = Fp8DeviceWeights::upload_experts(w1);
  w3_ = Fp8DeviceWeights::upload_experts(w3);
  w2_ = Fp8DeviceWeights::upload_experts(w2);
}

std::vector<Fp8RoutedExperts::Kernel> Fp8RoutedExperts::kernels() {
  return {{kernel_key(kGatedTile), kGatedTile}, {kernel_key(kDownTile), kDownTile}};
}

GeneratedKernel Fp8RoutedExperts::generate(const Fp8Tile& tile) { return generate_fp8_projection(tile, true); }

int64_t Fp8RoutedExperts::weight_bytes() const {
  int64_t b = 0;
  for (const Fp8DeviceWeights* w : {&w1_, &w3_, &w2_})
    b += int64_t(w->values.bytes() + w->meta.bytes() + w->sel.bytes() + w->scale_inv.bytes());
  return b;
}

size_t Fp8RoutedExperts::scratch_bytes(int64_t rows, int64_t hidden, int64_t ffn) {
  const int64_t k = std::max(hidden, ffn);
  return align_up(size_t(rows * k)) + align_up(size_t((k + 127) / 128 * fp8_token_scale_ld(rows)) * 4);
}

void Fp8RoutedExperts::forward(KernelRuntime& rt, const void* x, int64_t x_rows, const int32_t* list_token,
                               const int32_t* offsets, const float* list_weight, int64_t rows, void* h, void* z,
                               void* scratch, void* stream, int* error_flag) const {
  if (rows == 0) return;
  const int64_t k = std::max(hidden_, ffn_), ld = fp8_token_scale_ld(rows);
  unsigned char* codes = static_cast<unsigned char*>(scratch);
  float* scales = reinterpret_cast<float*>(codes + align_up(size_t(rows * k)));
  const Device& dev = rt.device();
  auto project = [&](const Fp8Tile& t, const Fp8DeviceWeights* a, const Fp8DeviceWeights* b, void* y,
                     const float* row_scale) {
    Fp8ProjectionCall c = fp8_projection_call(*a, b, codes, scales, ld, rows, y);
    c.row_scale = row_scale;
    c.error_flag = error_flag;
    c.experts = experts_;
    c.offsets = offsets;
    const LoadedKernel& kernel = grouped_kernel(rt, t);
    check(launch_fp8_projection(dev, static_cast<CUfunction>(kernel.function), t, c, fp8_projection_maps(t, c),
                                CUstream(stream)),
          ("launch FP8 " + t.to_string()).c_str());
  };
  // The routed tokens into list order, quantized; then the gated projection.
  QuantizeRowsArgs q{static_cast<const unsigned short*>(x), list_token, codes, scales, error_flag, int(rows),
                     int(hidden_), int(x_rows), int(ld)};
  launch_quantize_rows(rt, DType::bf16, q, stream);
  project(kGatedTile, &w1_, &w3_, h, nullptr);
  // h quantized in place of the tokens (the up projection has read them: same stream), then down.
  QuantizeRowsArgs qh{static_cast<const unsigned short*>(h), nullptr, codes, scales, error_flag, int(rows), int(ffn_),
                      int(rows), int(ld)};
  launch_quantize_rows(rt, DType::bf16, qh, stream);
  project(kDownTile, &w2_, nullptr, z, list_weight);
}

}  // namespace samoyeds
