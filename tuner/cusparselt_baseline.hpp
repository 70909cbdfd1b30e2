// 2:4 baseline: cuSPARSELt with the weights pruned (strip) and compressed
// once, the plan built once and its algorithm searched once per shape.
// The library is dlopen'ed; if it is not found the baseline reports absent.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "samoyeds/dtype.hpp"

namespace samoyeds::tuning {

class CusparseLtBaseline {
 public:
  // Empty when the library is unavailable (see why_absent()).
  static std::unique_ptr<CusparseLtBaseline> create(std::string* why_absent);
  ~CusparseLtBaseline();

  struct Plan;
  // Prunes w [m, k] (row-major, device) to 2:4 and compresses it; searches
  // the algorithm for x [n, k] -> y [n, m].
  std::shared_ptr<Plan> prepare(void* stream, DType dtype, int64_t m, int64_t n, int64_t k, const void* w,
                                const void* x, void* y);
  size_t compressed_bytes(const Plan& p) const;
  // Runs with compressed weights `cw` (a copy made by copy_compressed).
  void matmul(void* stream, Plan& p, const void* cw, const void* x, void* y);
  const void* compressed(const Plan& p) const;

 private:
  CusparseLtBaseline() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace samoyeds::tuning
