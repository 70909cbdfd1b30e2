// Float64 reference: plain loops, no blocking tricks, so it is easy to trust.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/reference.hpp"

namespace samoyeds {

const char* epilogue_name(Epilogue e) {
  switch (e) {
    case Epilogue::None: return "none";
    case Epilogue::Silu: return "silu";
    case Epilogue::GatedSilu: return "gated_silu";
    case Epilogue::Bias: return "bias";
    case Epilogue::ClampedSwiglu: return "clamped_swiglu";
  }
  return "?";
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

double clamped_swiglu(double g, double u, double alpha, double limit) {
  g = std::min(g, limit);
  u = std::clamp(u, -limit, limit);
  return (u + 1.0) * g / (1.0 + std::exp(-alpha * g));
}

std::vector<uint16_t> take_rows(const uint16_t* x, int64_t cols, const std::vector<int32_t>& ids) {
  std::vector<uint16_t> out(ids.size() * size_t(cols));
  for (size_t i = 0; i < ids.size(); ++i) std::copy_n(x + int64_t(ids[i]) * cols, cols, &out[i * size_t(cols)]);
  return out;
}

DenseF64 to_f64(const uint16_t* bits, int64_t rows, int64_t cols, DType dtype) {
  DenseF64 d{rows, cols, std::vector<double>(size_t(rows * cols))};
  for (int64_t i = 0; i < rows * cols; ++i) d.data[size_t(i)] = to_float(dtype, bits[i]);
  return d;
}

namespace {
void check_ids(const std::vector<int32_t>& ids, int64_t rows) {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= rows)
      throw Error(ErrorCode::InvalidArgument,
                  fmt::format("token id {} at position {} outside [0, {})", ids[i], i, rows));
}
double dot(const double* a, const double* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
}  // namespace

DenseF64 reference_ssmm(const DenseF64& w, const DenseF64& x, const std::vector<int32_t>& ids,
                        Epilogue epi, const DenseF64* w_gate, const EpilogueInputs& in) {
  if (w.cols != x.cols)
    throw Error(ErrorCode::InvalidArgument, fmt::format("W has k={}, X has k={}", w.cols, x.cols));
  const bool gated = gated_epilogue(epi);
  if (gated && (!w_gate || w_gate->rows != w.rows || w_gate->cols != w.cols))
    throw Error(ErrorCode::InvalidArgument, "gated epilogue needs a gate weight of W's shape");
  const bool biased = biased_epilogue(epi);
  if (biased && (int64_t(in.bias.size()) != w.rows ||
                 (epi == Epilogue::ClampedSwiglu && int64_t(in.up_bias.size()) != w.rows)))
    throw Error(ErrorCode::InvalidArgument, fmt::format("{} needs a bias per output row ({})", epilogue_name(epi),
                                                        w.rows));
  check_ids(ids, x.rows);
  const int64_t n = int64_t(ids.size()), m = w.rows, k = w.cols;
  DenseF64 y{n, m, std::vector<double>(size_t(n * m))};
  for (int64_t i = 0; i < n; ++i) {
    const double* xr = &x.data[size_t(ids[size_t(i)] * k)];
    for (int64_t r = 0; r < m; ++r) {
      double v = dot(&w.data[size_t(r * k)], xr, k) + (biased ? in.bias[size_t(r)] : 0.0);
      if (epi == Epilogue::Silu) v = silu(v);
      if (epi == Epilogue::GatedSilu) v = silu(v) * dot(&w_gate->data[size_t(r * k)], xr, k);
      if (epi == Epilogue::ClampedSwiglu)
        v = clamped_swiglu(v, dot(&w_gate->data[size_t(r * k)], xr, k) + in.up_bias[size_t(r)], in.alpha, in.limit);
      y.data[size_t(i * m + r)] = v;
    }
  }
  return y;
}

void reference_down_combine(const DenseF64& w, const DenseF64& h, const std::vector<int32_t>& ids,
                            const std::vector<float>& p, DenseF64& y) {
  if (w.cols != h.cols || h.rows != int64_t(ids.size()) || p.size() != ids.size() || y.cols != w.rows)
    throw Error(ErrorCode::InvalidArgument, "reference_down_combine: inconsistent shapes");
  check_ids(ids, y.rows);
  for (int64_t i = 0; i < h.rows; ++i)
    for (int64_t r = 0; r < w.rows; ++r)
      y.data[size_t(ids[size_t(i)] * y.cols + r)] +=
          double(p[size_t(i)]) * dot(&w.data[size_t(r * w.cols)], &h.data[size_t(i * h.cols)], w.cols);
}

double relative_frobenius_error(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return INFINITY;
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

}  // namespace samoyeds
