// Dense baseline: cublasLt matmul (fp32 compute) on already-gathered tokens,
// with the fastest of cublasLt's heuristic top candidates for each shape
// (each timed once, on first use), not one default pick.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "samoyeds/device.hpp"
#include "samoyeds/dtype.hpp"

namespace samoyeds::tuning {

class CublasBaseline {
 public:
  CublasBaseline();
  ~CublasBaseline();
  CublasBaseline(const CublasBaseline&) = delete;
  CublasBaseline& operator=(const CublasBaseline&) = delete;
  // y[n, m] = x[n, k] . w[m, k]^T, all row-major device pointers. The first
  // call of a shape times the candidates on these pointers (it synchronizes
  // the stream): make it before any timed span, e.g. in a warm-up.
  void gemm(void* stream, DType dtype, int64_t m, int64_t n, int64_t k, const void* w, const void* x, void* y);

 private:
  struct Plan;
  using Shape = std::tuple<int, int64_t, int64_t, int64_t, int>;  // dtype, m, n, k, pointers' alignment
  Plan& plan(void* stream, DType dtype, int64_t m, int64_t n, int64_t k, const void* w, const void* x, void* y,
             int alignment);
  void* handle_ = nullptr;
  DeviceBuffer workspace_;
  std::map<Shape, std::unique_ptr<Plan>> plans_;
};

}  // namespace samoyeds::tuning
