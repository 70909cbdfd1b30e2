#include "tuner/sampled_check.hpp"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include <fmt/format.h>

namespace samoyeds::tuning {

std::vector<int64_t> one_per_block(int64_t count, int64_t block, uint32_t seed) {
  std::set<int64_t> s = {0, count - 1};
  std::mt19937 gen(seed);
  for (int64_t b = 0; b < count; b += block) s.insert(b + int64_t(gen() % uint64_t(std::min(block, count - b))));
  return {s.begin(), s.end()};
}

bool rows_and_cols_match(const std::vector<double>& got, const std::vector<double>& ref, size_t rows, size_t cols,
                         DType dtype, std::string* why) {
  const double tol = dtype_tolerance(dtype);
  double ref2 = 0.0, err2 = 0.0;
  std::vector<double> row_err(rows, 0.0), col_err(cols, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) {
      const double d = got[r * cols + c] - ref[r * cols + c];
      const double d2 = std::isfinite(d) ? d * d : INFINITY;
      ref2 += ref[r * cols + c] * ref[r * cols + c];
      err2 += d2;
      row_err[r] += d2;
      col_err[c] += d2;
    }
  const double rms = std::sqrt(ref2 / double(rows * cols));
  const double whole = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 == 0 ? 0.0 : INFINITY);
  if (!(whole <= tol)) {
    *why = fmt::format("{} x {} sampled outputs: relative error {:.3g} > {:.0e}", rows, cols, whole, tol);
    return false;
  }
  const auto worst = [&](const std::vector<double>& e, size_t n) {
    size_t at = 0;
    for (size_t i = 1; i < e.size(); ++i)
      if (!(e[i] <= e[at])) at = i;
    return std::make_pair(at, rms > 0 ? std::sqrt(e[at] / double(n)) / rms : (e[at] == 0 ? 0.0 : INFINITY));
  };
  const auto [r, re] = worst(row_err, cols);
  const auto [c, ce] = worst(col_err, rows);
  if (!(re <= 4 * tol && ce <= 4 * tol)) {
    *why = fmt::format("{} x {} sampled outputs: {} {} off by {:.3g} of the sample's RMS (limit {:.0e})", rows, cols,
                       re >= ce ? "sampled token row" : "sampled output row", re >= ce ? r : c, std::max(re, ce),
                       4 * tol);
    return false;
  }
  return true;
}

}  // namespace samoyeds::tuning
