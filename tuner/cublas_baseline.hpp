// Dense baseline: cublasGemmEx (fp32 compute) on already-gathered tokens.
#pragma once
#include <cstdint>

#include "samoyeds/dtype.hpp"

namespace samoyeds::tuning {

class CublasBaseline {
 public:
  CublasBaseline();
  ~CublasBaseline();
  // y[n, m] = x[n, k] . w[m, k]^T, all row-major device pointers.
  void gemm(void* stream, DType dtype, int64_t m, int64_t n, int64_t k, const void* w, const void* x, void* y);

 private:
  void* handle_ = nullptr;
};

}  // namespace samoyeds::tuning
