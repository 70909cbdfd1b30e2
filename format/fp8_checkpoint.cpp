#include "format/fp8_checkpoint.hpp"

#include <cmath>
#include <cstring>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

[[noreturn]] void refuse(const SafetensorsReader& reader, const std::string& name, const std::string& why) {
  throw Error(ErrorCode::InvalidArgument, fmt::format("{}: {}: {}", reader.path(), name, why));
}

std::string shape_text(const std::vector<int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace

std::string fp8_scale_name(const std::string& weight_name) { return weight_name + "_scale_inv"; }

Fp8Weights read_fp8_weights(SafetensorsReader& reader, const std::string& weight_name) {
  const SafetensorsEntry* w = reader.find(weight_name);
  if (!w) refuse(reader, weight_name, "no such tensor");
  if (w->dtype != "F8_E4M3") refuse(reader, weight_name, w->dtype + ", not F8_E4M3");
  if (w->shape.size() != 2 || w->shape[0] <= 0 || w->shape[1] <= 0)
    refuse(reader, weight_name, "shape " + shape_text(w->shape) + ", not a matrix");
  const std::string scale_name = fp8_scale_name(weight_name);
  const SafetensorsEntry* s = reader.find(scale_name);
  if (!s) refuse(reader, scale_name, "missing: FP8 weights need their per-block scales");
  Fp8Weights q;
  q.rows = w->shape[0];
  q.cols = w->shape[1];
  q.scaling = Fp8Scaling::Block128;
  const Fp8ScaleGrid grid = fp8_scale_grid(Fp8Scaling::Block128, q.rows, q.cols);
  const std::vector<int64_t> want{grid.rows, grid.cols};
  if (s->dtype != "F32") refuse(reader, scale_name, s->dtype + ", not F32");
  if (s->shape != want)
    refuse(reader, scale_name,
           fmt::format("shape {}, not {} (one scale per 128 x 128 block of {})", shape_text(s->shape),
                       shape_text(want), shape_text(w->shape)));
  q.values = reader.read(*w);
  for (size_t i = 0; i < q.values.size(); ++i)
    if ((q.values[i] & 0x7Fu) == 0x7Fu)
      throw Error(ErrorCode::NonFiniteInput, fmt::format("{}: {}: NaN at ({}, {})", reader.path(), weight_name,
                                                         int64_t(i) / q.cols, int64_t(i) % q.cols));
  const std::vector<uint8_t> bytes = reader.read(*s);
  q.scale_inv.resize(bytes.size() / 4);
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors stores little-endian floats");
  std::memcpy(q.scale_inv.data(), bytes.data(), bytes.size());
  for (size_t i = 0; i < q.scale_inv.size(); ++i)
    if (!std::isfinite(q.scale_inv[i]) || q.scale_inv[i] <= 0.0f)
      refuse(reader, scale_name,
             fmt::format("block ({}, {}) has scale {}, not finite and positive", int64_t(i) / want[1],
                         int64_t(i) % want[1], q.scale_inv[i]));
  return q;
}

}  // namespace samoyeds
