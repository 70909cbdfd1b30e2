#include "runtime/fp8_weights.hpp"

#include <algorithm>
#include <climits>
#include <vector>

#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

template <class T>
DeviceBuffer device_copy(const std::vector<T>& host) {
  DeviceBuffer b(host.size() * sizeof(T));
  b.upload(host.data(), host.size() * sizeof(T));
  return b;
}

}  // namespace

Fp8DeviceWeights Fp8DeviceWeights::upload(const PackedFp8Weights& packed) { return upload_experts({packed}); }

Fp8DeviceWeights Fp8DeviceWeights::upload_experts(const std::vector<PackedFp8Weights>& experts) {
  if (experts.empty()) throw Error(ErrorCode::InvalidArgument, "FP8 weights: no experts");
  Fp8DeviceWeights w;
  std::vector<uint8_t> values, sel;
  std::vector<uint32_t> meta;
  std::vector<float> transposed;
  const int64_t count = int64_t(experts.size());
  for (int64_t e = 0; e < count; ++e) {
    const Fp8DeviceLayout L = to_device_layout(experts[size_t(e)]);
    if (e == 0) {
      w.m = L.m;
      w.k = L.k;
      w.rows_pad = L.rows_pad;
      w.k_phys = L.k_phys;
      transposed.assign(size_t(count * L.rows_pad / 16 * (L.k_phys / 128)), 1.0f);
    } else if (L.m != w.m || L.k != w.k || !(L.sparsity == experts[0].selection.sparsity)) {
      throw Error(ErrorCode::InvalidArgument, "FP8 weights: expert " + std::to_string(e) +
                                                  " differs in shape or pattern from expert 0");
    }
    values.insert(values.end(), L.values.begin(), L.values.end());
    meta.insert(meta.end(), L.meta.begin(), L.meta.end());
    sel.insert(sel.end(), L.sel.begin(), L.sel.end());
    const int64_t tiles = L.rows_pad / 16, blocks = L.k_phys / 128;
    for (int64_t t = 0; t < tiles; ++t)
      for (int64_t b = 0; b < blocks; ++b)
        transposed[size_t(b * count * tiles + e * tiles + t)] = L.scale_inv[size_t(t * blocks + b)];
  }
  w.values = device_copy(values);
  w.meta = device_copy(meta);
  w.sel = device_copy(sel);
  w.scale_inv = device_copy(transposed);
  return w;
}

Fp8ProjectionCall fp8_projection_call(const Fp8DeviceWeights& a, const Fp8DeviceWeights* b, const void* codes,
                                      const void* scale_inv, int64_t scale_ld, int64_t n, void* y) {
  Fp8ProjectionCall c;
  c.operands[0] = a.view();
  if (b) c.operands[1] = b->view();
  c.m = a.m;
  c.k = a.k;
  c.n = n;
  c.rows_pad = a.rows_pad;
  c.k_phys = a.k_phys;
  c.x = codes;
  c.x_scale_inv = scale_inv;
  c.x_scale_ld = scale_ld;
  c.y = y;
  return c;
}

Fp8DeviceTokens Fp8DeviceTokens::upload(const Fp8Weights& q) {
  validate(q);
  if (q.scaling != Fp8Scaling::Group1x128)
    throw Error(ErrorCode::InvalidArgument, "FP8 tokens need one scale per 1 x 128 group of a token");
  Fp8DeviceTokens t;
  t.n = q.rows;
  t.k = q.cols;
  t.scale_ld = fp8_token_scale_ld(q.rows);
  const int64_t groups = (q.cols + 127) / 128;
  std::vector<float> transposed(size_t(groups * t.scale_ld), 0.0f);
  for (int64_t i = 0; i < q.rows; ++i)
    for (int64_t g = 0; g < groups; ++g) transposed[size_t(g * t.scale_ld + i)] = q.scale_inv[size_t(i * groups + g)];
  t.codes = device_copy(q.values);
  t.scale_inv = device_copy(transposed);
  return t;
}

Fp8DeviceTokens Fp8DeviceTokens::quantize(KernelRuntime& rt, const void* x, int64_t x_rows, const int32_t* ids,
                                          int64_t n, int64_t k, DType dtype, void* stream, int* error_flag) {
  // k: the projection's TMA reads rows of k codes, a multiple of 16 bytes;
  // x: the quantizing kernel reads 4 values (8 bytes) a lane.
  if (n < 0 || k <= 0 || k % 16 != 0 || x_rows < 0 || x_rows > INT32_MAX || (n > 0 && !x) || n > INT32_MAX / 2 ||
      k > INT32_MAX / 2 || reinterpret_cast<uintptr_t>(x) % 8 != 0)
    throw Error(ErrorCode::InvalidArgument,
                "FP8 tokens: n >= 0 rows of k > 0 values, k a multiple of 16, x 8-byte aligned");
  const DeviceInfo& dev = rt.device().info();
  if (dev.cc_major * 10 + dev.cc_minor < 89)
    throw Error(ErrorCode::Unsupported, "FP8 tokens need an sm_89 or newer GPU (" + dev.name + " is sm_" +
                                            std::to_string(dev.cc_major * 10 + dev.cc_minor) + ")");
  if (dtype != DType::bf16 && dtype != DType::f16)
    throw Error(ErrorCode::InvalidArgument, "FP8 tokens are quantized from bf16 or f16");
  Fp8DeviceTokens t;
  t.n = n;
  t.k = k;
  t.scale_ld = fp8_token_scale_ld(n);
  t.codes = DeviceBuffer(size_t(std::max<int64_t>(n * k, 16)));
  t.scale_inv = DeviceBuffer(size_t(std::max<int64_t>((k + 127) / 128 * t.scale_ld, 4)) * 4);
  QuantizeRowsArgs a{static_cast<const unsigned short*>(x), ids, static_cast<unsigned char*>(t.codes.data()),
                     static_cast<float*>(t.scale_inv.data()), error_flag, int(n), int(k), int(x_rows),
                     int(t.scale_ld)};
  launch_quantize_rows(rt, dtype, a, stream);
  return t;
}

}  // namespace samoyeds
