#include "runtime/fp8_weights.hpp"

#include <vector>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

template <class T>
DeviceBuffer device_copy(const std::vector<T>& host) {
  DeviceBuffer b(host.size() * sizeof(T));
  b.upload(host.data(), host.size() * sizeof(T));
  return b;
}

}  // namespace

Fp8DeviceWeights Fp8DeviceWeights::upload(const PackedFp8Weights& packed) {
  const Fp8DeviceLayout L = to_device_layout(packed);
  Fp8DeviceWeights w;
  w.m = L.m;
  w.k = L.k;
  w.rows_pad = L.rows_pad;
  w.k_phys = L.k_phys;
  const int64_t tiles = L.rows_pad / 16, blocks = L.k_phys / 128;
  std::vector<float> transposed(size_t(tiles * blocks));
  for (int64_t t = 0; t < tiles; ++t)
    for (int64_t b = 0; b < blocks; ++b) transposed[size_t(b * tiles + t)] = L.scale_inv[size_t(t * blocks + b)];
  w.values = device_copy(L.values);
  w.meta = device_copy(L.meta);
  w.sel = device_copy(L.sel);
  w.scale_inv = device_copy(transposed);
  return w;
}

Fp8DeviceTokens Fp8DeviceTokens::upload(const Fp8Weights& q) {
  validate(q);
  if (q.scaling != Fp8Scaling::Group1x128)
    throw Error(ErrorCode::InvalidArgument, "FP8 tokens need one scale per 1 x 128 group of a token");
  Fp8DeviceTokens t;
  t.n = q.rows;
  t.k = q.cols;
  t.scale_ld = (q.rows + 3) / 4 * 4;  // TMA: rows of a multiple of 16 bytes
  const int64_t groups = (q.cols + 127) / 128;
  std::vector<float> transposed(size_t(groups * t.scale_ld), 0.0f);
  for (int64_t i = 0; i < q.rows; ++i)
    for (int64_t g = 0; g < groups; ++g) transposed[size_t(g * t.scale_ld + i)] = q.scale_inv[size_t(i * groups + g)];
  t.codes = device_copy(q.values);
  t.scale_inv = device_copy(transposed);
  return t;
}

}  // namespace samoyeds
