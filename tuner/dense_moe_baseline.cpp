#include "tuner/dense_moe_baseline.hpp"

#include <cublas_v2.h>

#include <string>

#include "samoyeds/error.hpp"
#include "tuner/timing.hpp"

namespace samoyeds::tuning {
namespace {
void ok(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw Error(ErrorCode::CudaError, std::string(what) + ": cuBLAS status " + std::to_string(int(s)));
}
}  // namespace

struct DenseMoeBaseline::Impl {
  cublasHandle_t handle = nullptr;
  cudaDataType type = CUDA_R_16BF;
  int64_t hidden = 0, ffn = 0;
  struct Expert {
    DeviceBuffer w1, w3, w2;  // dense weights
    DeviceBuffer x;           // gathered tokens [n, hidden]
    DeviceBuffer g, u;        // [n, ffn]
    DeviceBuffer z;           // [n, hidden]
    int n = 0;
  };
  std::vector<Expert> experts;
  // Grouped: one problem per non-empty expert and GEMM; pointer arrays on the device.
  DeviceBuffer ptrs;  // 9 arrays of problem pointers: A, B, C for gate, up, down
  int problems = 0;

  // y[n, m] = x[n, k] . w[m, k]^T in cuBLAS's column-major view (as CublasBaseline).
  void gemm(const void* w, const void* x, void* y, int64_t m, int64_t n, int64_t k) {
    const float one = 1.0f, zero = 0.0f;
    ok(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, int(m), int(n), int(k), &one, w, type, int(k), x, type, int(k),
                    &zero, y, type, int(m), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
       "cublasGemmEx");
  }
};

DenseMoeBaseline::DenseMoeBaseline(DType dtype, int64_t hidden, int64_t ffn,
                                   const std::vector<std::vector<const uint16_t*>>& experts,
                                   const std::vector<uint16_t>& x, const Routing& routing)
    : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  ok(cublasCreate(&I.handle), "cublasCreate");
  I.type = dtype == DType::f16 ? CUDA_R_16F : CUDA_R_16BF;
  I.hidden = hidden;
  I.ffn = ffn;
  const ExpertTokenLists lists = build_token_lists(routing, int(experts.size()));
  std::vector<const void*> a[3], b[3];
  std::vector<void*> c[3];
  for (size_t e = 0; e < experts.size(); ++e) {
    Impl::Expert ex;
    ex.n = int(lists.offsets[e + 1] - lists.offsets[e]);
    const size_t wb = size_t(ffn * hidden * 2);
    ex.w1 = DeviceBuffer(wb);
    ex.w1.upload(experts[e][0], wb);
    ex.w3 = DeviceBuffer(wb);
    ex.w3.upload(experts[e][1], wb);
    ex.w2 = DeviceBuffer(wb);
    ex.w2.upload(experts[e][2], wb);
    if (ex.n > 0) {
      std::vector<uint16_t> xe(size_t(ex.n) * size_t(hidden));
      for (int i = 0; i < ex.n; ++i) {
        const int64_t t = lists.token[size_t(lists.offsets[e] + i)];
        std::copy_n(&x[size_t(t * hidden)], hidden, &xe[size_t(i) * size_t(hidden)]);
      }
      ex.x = DeviceBuffer(xe.size() * 2);
      ex.x.upload(xe.data(), xe.size() * 2);
      ex.g = DeviceBuffer(size_t(ex.n) * size_t(ffn) * 2);
      ex.u = DeviceBuffer(size_t(ex.n) * size_t(ffn) * 2);
      ex.z = DeviceBuffer(size_t(ex.n) * size_t(hidden) * 2);
    }
    I.experts.push_back(std::move(ex));
  }
  for (auto& ex : I.experts) {
    if (ex.n == 0) continue;
    a[0].push_back(ex.w1.data()), b[0].push_back(ex.x.data()), c[0].push_back(ex.g.data());
    a[1].push_back(ex.w3.data()), b[1].push_back(ex.x.data()), c[1].push_back(ex.u.data());
    a[2].push_back(ex.w2.data()), b[2].push_back(ex.u.data()), c[2].push_back(ex.z.data());
  }
  I.problems = int(a[0].size());
  std::vector<const void*> all;
  for (int g = 0; g < 3; ++g) {
    all.insert(all.end(), a[g].begin(), a[g].end());
    all.insert(all.end(), b[g].begin(), b[g].end());
    all.insert(all.end(), c[g].begin(), c[g].end());
  }
  I.ptrs = DeviceBuffer(all.size() * sizeof(void*) + 16);
  I.ptrs.upload(all.data(), all.size() * sizeof(void*));
}

DenseMoeBaseline::~DenseMoeBaseline() {
  if (impl_ && impl_->handle) cublasDestroy(impl_->handle);
}

double DenseMoeBaseline::loop_ms(void* stream) {
  Impl& I = *impl_;
  ok(cublasSetStream(I.handle, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  return median_ms(stream, [&](int) {
    for (auto& ex : I.experts) {
      if (ex.n == 0) continue;
      I.gemm(ex.w1.data(), ex.x.data(), ex.g.data(), I.ffn, ex.n, I.hidden);
      I.gemm(ex.w3.data(), ex.x.data(), ex.u.data(), I.ffn, ex.n, I.hidden);
      I.gemm(ex.w2.data(), ex.u.data(), ex.z.data(), I.hidden, ex.n, I.ffn);
    }
  }, 1, 7, 2);
}

double DenseMoeBaseline::grouped_ms(void* stream) {
  Impl& I = *impl_;
  ok(cublasSetStream(I.handle, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  const int P = I.problems;
  if (P == 0) return 0.0;
  std::vector<cublasOperation_t> ta(size_t(P), CUBLAS_OP_T), tb(size_t(P), CUBLAS_OP_N);
  std::vector<int> n(static_cast<size_t>(P)), sizes(size_t(P), 1), m_up(size_t(P), int(I.ffn)), k_up(size_t(P), int(I.hidden)),
      m_dn(size_t(P), int(I.hidden)), k_dn(size_t(P), int(I.ffn));
  std::vector<float> one(size_t(P), 1.0f), zero(size_t(P), 0.0f);
  int i = 0;
  for (auto& ex : I.experts)
    if (ex.n > 0) n[size_t(i++)] = ex.n;
  auto arr = [&](int gemm, int which) {
    return reinterpret_cast<void**>(static_cast<char*>(I.ptrs.data()) + size_t(gemm * 3 + which) * P * sizeof(void*));
  };
  auto grouped = [&](int gemm, const std::vector<int>& m, const std::vector<int>& k) {
    ok(cublasGemmGroupedBatchedEx(I.handle, ta.data(), tb.data(), m.data(), n.data(), k.data(), one.data(),
                                  const_cast<const void* const*>(arr(gemm, 0)), I.type, k.data(),
                                  const_cast<const void* const*>(arr(gemm, 1)), I.type, k.data(), zero.data(),
                                  arr(gemm, 2), I.type, m.data(), P, sizes.data(), CUBLAS_COMPUTE_32F),
       "cublasGemmGroupedBatchedEx");
  };
  return median_ms(stream, [&](int) {
    grouped(0, m_up, k_up);
    grouped(1, m_up, k_up);
    grouped(2, m_dn, k_dn);
  }, 1, 7, 2);
}

}  // namespace samoyeds::tuning
