#include "tuner/cusparselt_baseline.hpp"
#include "tuner/cuda_data_type.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <vector>

#include <cusparseLt.h>
#include <fmt/format.h>

#include "samoyeds/device.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds::tuning {

#define SAMOYEDS_LT_FUNCS(X)                                                                          \
  X(cusparseLtInit) X(cusparseLtDestroy) X(cusparseLtDenseDescriptorInit) X(cusparseLtStructuredDescriptorInit) \
  X(cusparseLtMatDescriptorDestroy) X(cusparseLtMatmulDescriptorInit) X(cusparseLtMatmulAlgSelectionInit)     \
  X(cusparseLtMatmulAlgSelectionDestroy) X(cusparseLtMatmulPlanInit) X(cusparseLtMatmulPlanDestroy)           \
  X(cusparseLtMatmulGetWorkspace) X(cusparseLtMatmul) X(cusparseLtMatmulSearch) X(cusparseLtSpMMAPrune)       \
  X(cusparseLtSpMMACompressedSize) X(cusparseLtSpMMACompress)

struct CusparseLtBaseline::Impl {
  void* lib = nullptr;
#define X(f) decltype(&::f) f = nullptr;
  SAMOYEDS_LT_FUNCS(X)
#undef X
  cusparseLtHandle_t handle;
};

struct CusparseLtBaseline::Plan {
  cusparseLtMatDescriptor_t a, b, c;
  cusparseLtMatmulDescriptor_t mm;
  cusparseLtMatmulAlgSelection_t alg;
  cusparseLtMatmulPlan_t plan;
  DeviceBuffer compressed, workspace;
  size_t compressed_size = 0;
};

static void lt_check(cusparseStatus_t s, const char* what) {
  if (s != CUSPARSE_STATUS_SUCCESS)
    throw Error(ErrorCode::CudaError, fmt::format("{}: cuSPARSELt status {}", what, int(s)));
}

std::unique_ptr<CusparseLtBaseline> CusparseLtBaseline::create(std::string* why) {
  std::vector<std::string> candidates;
  if (const char* e = std::getenv("SAMOYEDS_CUSPARSELT_LIB")) candidates.push_back(e);
  candidates.push_back("libcusparseLt.so.0");
  void* lib = nullptr;
  for (const auto& c : candidates)
    if ((lib = dlopen(c.c_str(), RTLD_NOW | RTLD_LOCAL))) break;
  if (!lib) {
    *why = "libcusparseLt.so.0 not found (set SAMOYEDS_CUSPARSELT_LIB)";
    return nullptr;
  }
  std::unique_ptr<CusparseLtBaseline> b(new CusparseLtBaseline());
  b->impl_ = std::make_unique<Impl>();
  Impl& I = *b->impl_;
  I.lib = lib;
#define X(f)                                                     \
  I.f = reinterpret_cast<decltype(&::f)>(dlsym(lib, #f));        \
  if (!I.f) {                                                    \
    *why = "cuSPARSELt lacks " #f;                               \
    return nullptr;                                              \
  }
  SAMOYEDS_LT_FUNCS(X)
#undef X
  lt_check(I.cusparseLtInit(&I.handle), "cusparseLtInit");
  return b;
}

CusparseLtBaseline::~CusparseLtBaseline() {
  if (impl_) impl_->cusparseLtDestroy(&impl_->handle);
}

std::shared_ptr<CusparseLtBaseline::Plan> CusparseLtBaseline::prepare(void* stream, DType dtype, int64_t m, int64_t n,
                                                                      int64_t k, const void* w, const void* x,
                                                                      void* y) {
  Impl& I = *impl_;
  auto p = std::make_shared<Plan>();
  const cudaDataType t = cuda_data_type(dtype);
  // Column-major view as for cuBLAS: D^T [m, n] = op_T(W col-major [k, m]) . X col-major [k, n].
  lt_check(I.cusparseLtStructuredDescriptorInit(&I.handle, &p->a, k, m, k, 16, t, CUSPARSE_ORDER_COL,
                                                CUSPARSELT_SPARSITY_50_PERCENT),
           "structured descriptor");
  lt_check(I.cusparseLtDenseDescriptorInit(&I.handle, &p->b, k, n, k, 16, t, CUSPARSE_ORDER_COL), "dense B");
  lt_check(I.cusparseLtDenseDescriptorInit(&I.handle, &p->c, m, n, m, 16, t, CUSPARSE_ORDER_COL), "dense C");
  lt_check(I.cusparseLtMatmulDescriptorInit(&I.handle, &p->mm, CUSPARSE_OPERATION_TRANSPOSE,
                                            CUSPARSE_OPERATION_NON_TRANSPOSE, &p->a, &p->b, &p->c, &p->c,
                                            CUSPARSE_COMPUTE_32F),
           "matmul descriptor");
  lt_check(I.cusparseLtMatmulAlgSelectionInit(&I.handle, &p->alg, &p->mm, CUSPARSELT_MATMUL_ALG_DEFAULT), "alg");
  lt_check(I.cusparseLtMatmulPlanInit(&I.handle, &p->plan, &p->mm, &p->alg), "plan");
  DeviceBuffer pruned(size_t(m * k * 2));
  auto s = static_cast<cudaStream_t>(stream);
  lt_check(I.cusparseLtSpMMAPrune(&I.handle, &p->mm, w, pruned.data(), CUSPARSELT_PRUNE_SPMMA_STRIP, s), "prune");
  size_t buf_size = 0;
  lt_check(I.cusparseLtSpMMACompressedSize(&I.handle, &p->plan, &p->compressed_size, &buf_size), "compressed size");
  p->compressed = DeviceBuffer(p->compressed_size);
  DeviceBuffer tmp(std::max<size_t>(buf_size, 16));
  lt_check(I.cusparseLtSpMMACompress(&I.handle, &p->plan, pruned.data(), p->compressed.data(), tmp.data(), s),
           "compress");
  size_t ws = 0;
  lt_check(I.cusparseLtMatmulGetWorkspace(&I.handle, &p->plan, &ws), "workspace");
  p->workspace = DeviceBuffer(std::max<size_t>(ws, 16));
  const float alpha = 1.0f, beta = 0.0f;
  lt_check(I.cusparseLtMatmulSearch(&I.handle, &p->plan, &alpha, p->compressed.data(), x, &beta, y, y,
                                    p->workspace.data(), &s, 1),
           "search");
  lt_check(I.cusparseLtMatmulGetWorkspace(&I.handle, &p->plan, &ws), "workspace");
  if (ws > p->workspace.bytes()) p->workspace = DeviceBuffer(ws);
  return p;
}

size_t CusparseLtBaseline::compressed_bytes(const Plan& p) const { return p.compressed_size; }
const void* CusparseLtBaseline::compressed(const Plan& p) const { return p.compressed.data(); }

void CusparseLtBaseline::matmul(void* stream, Plan& p, const void* cw, const void* x, void* y) {
  Impl& I = *impl_;
  const float alpha = 1.0f, beta = 0.0f;
  auto s = static_cast<cudaStream_t>(stream);
  lt_check(I.cusparseLtMatmul(&I.handle, &p.plan, &alpha, cw, x, &beta, y, y, p.workspace.data(), &s, 1), "matmul");
}

}  // namespace samoyeds::tuning
