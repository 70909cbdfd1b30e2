// Single-expert building blocks on the GPU (DESIGN.md op 4): sparse weights x
// index-selected activation rows, with fused epilogues. Pointers are device
// pointers; shapes are element counts.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>
#include <string>

#include "samoyeds/device.hpp"
#include "samoyeds/format.hpp"
#include "samoyeds/kernel_runtime.hpp"
#include "samoyeds/moe_reference.hpp"  // ExpertActivation

namespace samoyeds {

struct DeviceLayout;  // format/device_layout.hpp

// Packed weights on the device, in one backend's physical layout. Knows its
// layout, dtype and parameters; ops refuse mismatched uses.
class PackedExpertWeights {
 public:
  static PackedExpertWeights upload(const PackedWeights& packed);
  static PackedExpertWeights pack(const uint16_t* host_dense, int64_t m, int64_t k, DType dtype,
                                  const SparsityParams& sparsity, PackMode mode = PackMode::Magnitude);
  // Dense weights already on the device: copied to the host, packed, uploaded.
  static PackedExpertWeights pack_device(const void* device_dense, int64_t m, int64_t k, DType dtype,
                                         const SparsityParams& sparsity, PackMode mode = PackMode::Magnitude);

  const std::string& layout_id() const { return layout_id_; }
  friend class GroupedExpertWeights;  // builds its shape-only description
  DType dtype() const { return dtype_; }
  const SparsityParams& sparsity() const { return sparsity_; }
  int64_t m() const { return m_; }
  int64_t k() const { return k_; }
  int64_t device_bytes() const { return int64_t(values_.bytes() + meta_.bytes() + sel_.bytes()); }

  // For the launch code.
  const void* values() const { return values_.data(); }
  const void* meta() const { return meta_.data(); }
  const void* sel() const { return sel_.data(); }
  int64_t rows() const { return rows_; }
  int64_t rows_pad() const { return rows_pad_; }
  int64_t k_phys() const { return k_phys_; }

 private:
  static PackedExpertWeights describe(const DeviceLayout& layout);
  std::string layout_id_;
  DType dtype_ = DType::f16;
  SparsityParams sparsity_;
  int64_t m_ = 0, k_ = 0, rows_ = 0, rows_pad_ = 0, k_phys_ = 0;
  DeviceBuffer values_, meta_, sel_;
};

// Every expert of one projection in one device allocation per part (values,
// metadata, selectors), expert e at e * stride: what the grouped kernels read.
class GroupedExpertWeights {
 public:
  // All experts must share shape, dtype and sparsity.
  static GroupedExpertWeights upload(const std::vector<PackedWeights>& experts);

  int experts() const { return experts_; }
  const PackedExpertWeights& layout() const { return first_; }  // expert 0, for shape and pointers
  int64_t values_stride() const { return values_stride_; }    // elements
  int64_t meta_stride() const { return meta_stride_; }
  int64_t sel_stride() const { return sel_stride_; }
  int64_t device_bytes() const { return int64_t(values_.bytes() + meta_.bytes() + sel_.bytes()); }
  const void* values() const { return values_.data(); }
  const void* meta() const { return meta_.data(); }
  const void* sel() const { return sel_.data(); }

 private:
  int experts_ = 0;
  PackedExpertWeights first_;  // shape and parameters only (its buffers are empty)
  int64_t values_stride_ = 0, meta_stride_ = 0, sel_stride_ = 0;
  DeviceBuffer values_, meta_, sel_;
};

struct LaunchOptions {
  void* stream = nullptr;                 // CUstream; null = the legacy default stream
  std::optional<Backend> backend;         // default: the tuning record's, else default_backend() (wgmma_sp on sm_90a, else mma_sp)
  std::optional<TileConfig> config;       // default: this device's tuning record, else the heuristic
                                          // (a config without a backend means mma_sp)
  // Device int the kernels OR their errors into (templates/kernel_args.cuh):
  // bit 0 an id was out of range (its row read as zeros); bit 1 a grouped
  // launch's list (offsets[experts]) was longer than the rows of its compact
  // input, h_rows or ListOrderSpace::rows (the launch wrote nothing).
  int* error_flag = nullptr;
  // gpt-oss's experts: float biases per output row of each weight operand
  // (gate, up; or down's one), expert e's at + e * m in grouped launches.
  // Given to gated_up with the clamped SwiGLU (required there), and to the
  // down projections (then added before the routing weight).
  const float* bias[2] = {nullptr, nullptr};
  // gated_up's activation: silu(g) * u, or gpt-oss's clamped SwiGLU.
  ExpertActivation activation;
};

// y[i, :] = epi(x[ids[i], :] . W^T) for i < n; ids == null means row i.
// x: [x_rows, k], y: [n, m] compact. epi: None or Silu.
void ssmm(KernelRuntime& rt, const PackedExpertWeights& w, const void* x, int64_t x_rows, const int32_t* ids,
          int64_t n, void* y, Epilogue epi, const LaunchOptions& opt = {});

// h[i, :] = silu(x[ids[i]] . W1^T) * (x[ids[i]] . W3^T), one pass over x.
void gated_up(KernelRuntime& rt, const PackedExpertWeights& w1, const PackedExpertWeights& w3, const void* x,
              int64_t x_rows, const int32_t* ids, int64_t n, void* h, const LaunchOptions& opt = {});

// z[i, :] = p[i] * (h[i, :] . W2^T): the down projection with routing weights,
// compact, ready for a deterministic combine.
void down_scaled(KernelRuntime& rt, const PackedExpertWeights& w2, const void* h, int64_t n, const float* p,
                 void* z, const LaunchOptions& opt = {});

// Device memory for the routed tokens in list order: `rows` rows (the list
// length, offsets[experts]) of x's width, 16-byte aligned.
struct ListOrderSpace {
  void* data = nullptr;
  int64_t rows = 0;
};

// Grouped over all experts in one launch each, with the token lists built on
// the device: expert e's tokens are list_tokens[offsets[e] .. offsets[e+1]),
// and its compact output rows are the same range. max_rows bounds any
// expert's token count (the batch size T); offsets stay on the device.
// With `in_order` space, a config that reads token tiles by TMA (tokens_tma,
// "_xt") first copies the tokens into list order there; without it, such a
// config runs its tile with the gather (or, fixed by LaunchOptions::config,
// is refused).
void grouped_gated_up(KernelRuntime& rt, const GroupedExpertWeights& w1, const GroupedExpertWeights& w3,
                      const void* x, int64_t x_rows, const int32_t* list_tokens, const int32_t* offsets,
                      int64_t max_rows, void* h, const LaunchOptions& opt = {}, const ListOrderSpace& in_order = {});
// z[i, :] = list_weights[i] * (h[i, :] . W2[e]^T) for the rows i of expert e.
// h: [h_rows, w2's k], h_rows >= offsets[experts] (the rows the lists fill:
// kernels that read h by TMA see exactly these rows).
void grouped_down_scaled(KernelRuntime& rt, const GroupedExpertWeights& w2, const void* h, int64_t h_rows,
                         const int32_t* offsets, int64_t max_rows, const float* list_weights, void* z,
                         const LaunchOptions& opt = {});

// Bytes of device workspace down_combine needs for n tokens (16-byte aligned).
size_t down_combine_workspace_bytes(const PackedExpertWeights& w2, int64_t n);

// y[ids[i], :] += p[i] * (h[i, :] . W2^T) for i = 0 .. n-1 in that order:
// deterministic (same bits every run; repeated ids allowed, no atomics).
// y: [y_rows, w2.m()]; workspace: down_combine_workspace_bytes(w2, n) bytes.
void down_combine(KernelRuntime& rt, const PackedExpertWeights& w2, const void* h, int64_t n, const int32_t* ids,
                  const float* p, void* y, int64_t y_rows, void* workspace, const LaunchOptions& opt = {});

}  // namespace samoyeds
