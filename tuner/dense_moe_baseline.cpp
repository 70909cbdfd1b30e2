#include "tuner/dense_moe_baseline.hpp"
#include "tuner/cublas_baseline.hpp"
#include "tuner/cuda_data_type.hpp"

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
  DType dtype = DType::bf16;
  int64_t hidden = 0;
  struct Expert {
    int64_t ffn = 0;
    const void* w[3] = {};     // dense weights w1, w3, w2: the caller's on the device, else `owned`'s
    DeviceBuffer owned[3];
    DeviceBuffer x;           // gathered tokens [n, hidden]
    DeviceBuffer g, u;        // [n, ffn]
    DeviceBuffer z;           // [n, hidden]
    int n = 0;
  };
  std::vector<Expert> experts;  // routed, then shared
  size_t routed = 0;
  // Grouped: one problem per non-empty expert and GEMM; pointer arrays on the device.
  DeviceBuffer ptrs;  // 9 arrays of problem pointers: A, B, C for gate, up, down
  std::vector<int> n, m_up, k_up, m_dn, k_dn;  // per problem

  // The loop's GEMMs: y[n, m] = x[n, k] . w[m, k]^T, each shape with the
  // fastest of cublasLt's candidates.
  CublasBaseline lt;
};

DenseMoeBaseline::DenseMoeBaseline(DType dtype, int64_t hidden, int64_t ffn, const std::vector<DenseExpert>& routed,
                                   const std::vector<DenseExpert>& shared)
    : impl_(std::make_unique<Impl>()) {
  Impl& I = *impl_;
  ok(cublasCreate(&I.handle), "cublasCreate");
  I.type = cuda_data_type(dtype);
  I.dtype = dtype;
  I.hidden = hidden;
  I.routed = routed.size();
  auto add = [&](const DenseExpert& d) {
    Impl::Expert ex;
    ex.ffn = d.ffn ? d.ffn : ffn;
    const size_t wb = size_t(ex.ffn * hidden * 2);
    const uint16_t* src[3] = {d.w1, d.w3, d.w2};
    for (int i = 0; i < 3; ++i) {
      if (d.on_device) {
        ex.w[i] = src[i];
        continue;
      }
      ex.owned[i] = DeviceBuffer(wb);
      ex.owned[i].upload(src[i], wb);
      ex.w[i] = ex.owned[i].data();
    }
    I.experts.push_back(std::move(ex));
  };
  for (const auto& d : routed) add(d);
  for (const auto& d : shared) add(d);
}

DenseMoeBaseline::~DenseMoeBaseline() {
  if (impl_ && impl_->handle) cublasDestroy(impl_->handle);
}

int64_t DenseMoeBaseline::hidden() const { return impl_->hidden; }

void DenseMoeBaseline::set_tokens(const std::vector<uint16_t>& x, const Routing& routing) {
  Impl& I = *impl_;
  const int64_t H = I.hidden;
  const ExpertTokenLists lists = build_token_lists(routing, int(I.routed));
  std::vector<const void*> a[3], b[3];
  std::vector<void*> c[3];
  I.n.clear(), I.m_up.clear(), I.k_up.clear(), I.m_dn.clear(), I.k_dn.clear();
  for (size_t e = 0; e < I.experts.size(); ++e) {
    Impl::Expert& ex = I.experts[e];
    const bool is_shared = e >= I.routed;
    ex.n = int(is_shared ? routing.tokens : lists.offsets[e + 1] - lists.offsets[e]);
    if (ex.n == 0) continue;
    std::vector<uint16_t> xe(size_t(ex.n) * size_t(H));
    for (int i = 0; i < ex.n; ++i) {
      const int64_t t = is_shared ? i : lists.token[size_t(lists.offsets[e] + i)];
      std::copy_n(&x[size_t(t * H)], H, &xe[size_t(i) * size_t(H)]);
    }
    ex.x = DeviceBuffer(xe.size() * 2);
    ex.x.upload(xe.data(), xe.size() * 2);
    ex.g = DeviceBuffer(size_t(ex.n) * size_t(ex.ffn) * 2);
    ex.u = DeviceBuffer(size_t(ex.n) * size_t(ex.ffn) * 2);
    ex.z = DeviceBuffer(size_t(ex.n) * size_t(H) * 2);
    a[0].push_back(ex.w[0]), b[0].push_back(ex.x.data()), c[0].push_back(ex.g.data());
    a[1].push_back(ex.w[1]), b[1].push_back(ex.x.data()), c[1].push_back(ex.u.data());
    a[2].push_back(ex.w[2]), b[2].push_back(ex.u.data()), c[2].push_back(ex.z.data());
    I.n.push_back(ex.n);
    I.m_up.push_back(int(ex.ffn)), I.k_up.push_back(int(H));
    I.m_dn.push_back(int(H)), I.k_dn.push_back(int(ex.ffn));
  }
  std::vector<const void*> all;
  for (int g = 0; g < 3; ++g) {
    all.insert(all.end(), a[g].begin(), a[g].end());
    all.insert(all.end(), b[g].begin(), b[g].end());
    all.insert(all.end(), c[g].begin(), c[g].end());
  }
  I.ptrs = DeviceBuffer(all.size() * sizeof(void*) + 16);
  if (!all.empty()) I.ptrs.upload(all.data(), all.size() * sizeof(void*));
}

void DenseMoeBaseline::enqueue_loop(void* stream) {
  Impl& I = *impl_;
  for (auto& ex : I.experts) {
    if (ex.n == 0) continue;
    I.lt.gemm(stream, I.dtype, ex.ffn, ex.n, I.hidden, ex.w[0], ex.x.data(), ex.g.data());
    I.lt.gemm(stream, I.dtype, ex.ffn, ex.n, I.hidden, ex.w[1], ex.x.data(), ex.u.data());
    I.lt.gemm(stream, I.dtype, I.hidden, ex.n, ex.ffn, ex.w[2], ex.u.data(), ex.z.data());
  }
}

double DenseMoeBaseline::loop_ms(void* stream) {
  return median_ms(stream, [&](int) { enqueue_loop(stream); }, 1, 7, 2);
}

void DenseMoeBaseline::enqueue_grouped(void* stream) {
  Impl& I = *impl_;
  ok(cublasSetStream(I.handle, static_cast<cudaStream_t>(stream)), "cublasSetStream");
  const int P = int(I.n.size());
  if (P == 0) return;
  std::vector<cublasOperation_t> ta(size_t(P), CUBLAS_OP_T), tb(size_t(P), CUBLAS_OP_N);
  std::vector<int> sizes(size_t(P), 1);
  std::vector<float> one(size_t(P), 1.0f), zero(size_t(P), 0.0f);
  auto arr = [&](int gemm, int which) {
    return reinterpret_cast<void**>(static_cast<char*>(I.ptrs.data()) + size_t(gemm * 3 + which) * P * sizeof(void*));
  };
  auto grouped = [&](int gemm, const std::vector<int>& m, const std::vector<int>& k) {
    ok(cublasGemmGroupedBatchedEx(I.handle, ta.data(), tb.data(), m.data(), I.n.data(), k.data(), one.data(),
                                  const_cast<const void* const*>(arr(gemm, 0)), I.type, k.data(),
                                  const_cast<const void* const*>(arr(gemm, 1)), I.type, k.data(), zero.data(),
                                  arr(gemm, 2), I.type, m.data(), P, sizes.data(), CUBLAS_COMPUTE_32F),
       "cublasGemmGroupedBatchedEx");
  };
  grouped(0, I.m_up, I.k_up);
  grouped(1, I.m_up, I.k_up);
  grouped(2, I.m_dn, I.k_dn);
}

double DenseMoeBaseline::grouped_ms(void* stream) {
  if (impl_->n.empty()) return 0.0;
  return median_ms(stream, [&](int) { enqueue_grouped(stream); }, 1, 7, 2);
}

}  // namespace samoyeds::tuning
