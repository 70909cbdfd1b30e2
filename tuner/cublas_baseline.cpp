#include "tuner/cublas_baseline.hpp"
#include "tuner/cuda_data_type.hpp"

#include <cublas_v2.h>

#include <string>

#include "samoyeds/error.hpp"

namespace samoyeds::tuning {

static void cublas_check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::CudaError, std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}

CublasBaseline::CublasBaseline() {
  cublasHandle_t h;
  cublas_check(cublasCreate(&h), "cublasCreate");
  handle_ = h;
}
CublasBaseline::~CublasBaseline() { cublasDestroy(static_cast<cublasHandle_t>(handle_)); }

void CublasBaseline::gemm(void* stream, DType dtype, int64_t m, int64_t n, int64_t k, const void* w, const void* x,
                          void* y) {
  auto h = static_cast<cublasHandle_t>(handle_);
  cublas_check(cublasSetStream(h, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  const cudaDataType t = cuda_data_type(dtype);
  const float alpha = 1.0f, beta = 0.0f;
  // Column-major view: y^T [m, n] = (w^T)^T [m, k] . x^T [k, n].
  cublas_check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &alpha, w, t, int(k), x, t, int(k),
                            &beta, y, t, int(m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace samoyeds::tuning
