#include <vector>

#include "runtime/format/mma_sp_layout.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"

namespace samoyeds {

PackedExpertWeights PackedExpertWeights::upload(const PackedWeights& packed) {
  validate_packed(packed);
  const MmaSpLayout L = to_mma_sp_layout(packed);
  PackedExpertWeights w;
  w.layout_id_ = MmaSpLayout::kLayoutId;
  w.dtype_ = L.dtype;
  w.sparsity_ = L.sparsity;
  w.m_ = L.m;
  w.k_ = L.k;
  w.rows_ = L.rows;
  w.rows_pad_ = L.rows_pad;
  w.k_phys_ = L.k_phys;
  w.values_ = DeviceBuffer(L.values.size() * 2);
  w.values_.upload(L.values.data(), L.values.size() * 2);
  w.meta_ = DeviceBuffer(L.meta.size() * 4);
  w.meta_.upload(L.meta.data(), L.meta.size() * 4);
  w.sel_ = DeviceBuffer(L.sel.size());
  w.sel_.upload(L.sel.data(), L.sel.size());
  return w;
}

PackedExpertWeights PackedExpertWeights::pack(const uint16_t* host_dense, int64_t m, int64_t k, DType dtype,
                                              const SparsityParams& sparsity, PackMode mode) {
  return upload(pack_weights(host_dense, m, k, dtype, sparsity, mode));
}

PackedExpertWeights PackedExpertWeights::pack_device(const void* device_dense, int64_t m, int64_t k, DType dtype,
                                                     const SparsityParams& sparsity, PackMode mode) {
  if (!device_dense) throw Error(ErrorCode::InvalidArgument, "dense weights pointer is null");
  if (m <= 0 || k <= 0) throw Error(ErrorCode::InvalidArgument, "empty weight shape");
  std::vector<uint16_t> host(size_t(m * k));
  copy_to_host(host.data(), device_dense, host.size() * 2);
  return pack(host.data(), m, k, dtype, sparsity, mode);
}

}  // namespace samoyeds
