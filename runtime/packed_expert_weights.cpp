#include <vector>

#include "format/device_layout.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"

namespace samoyeds {

// Layout, dtype and shape of a packed matrix, without its device buffers.
PackedExpertWeights PackedExpertWeights::describe(const DeviceLayout& L) {
  PackedExpertWeights w;
  w.layout_id_ = DeviceLayout::kLayoutId;
  w.dtype_ = L.dtype;
  w.sparsity_ = L.sparsity;
  w.m_ = L.m;
  w.k_ = L.k;
  w.rows_ = L.rows;
  w.rows_pad_ = L.rows_pad;
  w.k_phys_ = L.k_phys;
  return w;
}

PackedExpertWeights PackedExpertWeights::upload(const PackedWeights& packed) {
  validate_packed(packed);
  const DeviceLayout L = to_device_layout(packed);
  PackedExpertWeights w = describe(L);
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

GroupedExpertWeights GroupedExpertWeights::upload(const std::vector<PackedWeights>& experts) {
  if (experts.empty()) throw Error(ErrorCode::InvalidArgument, "no experts to upload");
  std::vector<DeviceLayout> layouts;
  for (const auto& p : experts) {
    validate_packed(p);
    if (p.dtype != experts[0].dtype || !(p.sparsity == experts[0].sparsity) || p.m != experts[0].m ||
        p.k != experts[0].k)
      throw Error(ErrorCode::InvalidArgument, "grouped experts must share shape, dtype and sparsity");
    layouts.push_back(to_device_layout(p));
  }
  const DeviceLayout& L = layouts[0];
  GroupedExpertWeights g;
  g.experts_ = int(experts.size());
  g.first_ = PackedExpertWeights::describe(L);
  g.values_stride_ = int64_t(L.values.size());
  g.meta_stride_ = int64_t(L.meta.size());
  g.sel_stride_ = int64_t(L.sel.size());
  const size_t E = experts.size();
  g.values_ = DeviceBuffer(E * L.values.size() * 2);
  g.meta_ = DeviceBuffer(E * L.meta.size() * 4);
  g.sel_ = DeviceBuffer(E * L.sel.size() + 16);  // keeps 16-byte copies of the last expert in bounds
  for (size_t e = 0; e < E; ++e) {
    g.values_.upload(layouts[e].values.data(), L.values.size() * 2, e * L.values.size() * 2);
    g.meta_.upload(layouts[e].meta.data(), L.meta.size() * 4, e * L.meta.size() * 4);
    g.sel_.upload(layouts[e].sel.data(), L.sel.size(), e * L.sel.size());
  }
  return g;
}

}  // namespace samoyeds
