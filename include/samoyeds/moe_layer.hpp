// A whole MoE layer on the GPU (DESIGN.md op 3): routing, per-expert token
// lists built on the device, the gated up-projection of all experts in one
// launch, the weighted down-projection of all experts in one launch, and a
// deterministic combine. No host synchronization and no device allocation in
// forward (the caller passes a workspace sized by workspace_bytes), so a
// forward can be captured in a CUDA graph.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "samoyeds/expert_ops.hpp"
#include "samoyeds/moe_router.hpp"
#include "samoyeds/moe_routing.hpp"

namespace samoyeds {

class Fp8RoutedExperts;  // runtime/fp8_routed_experts.hpp

struct MoeLayerSpec {
  // Multiples of 8 (validate): each is some projection's k, whose activation
  // rows the kernels copy in 16-byte pieces. Shared experts' ffn too.
  int64_t hidden = 0, ffn = 0;
  int experts = 0, top_k = 0;
  DType dtype = DType::bf16;
  SparsityParams sparsity;
  MoeRouting routing;  // how forward() routes (forward_routed takes the caller's)
  // Expert parallelism: this layer holds some of the model's experts, and a
  // routed id outside [0, experts) names one another rank holds. Such entries
  // add nothing either way; this only stops them raising the error flag.
  // Such a layer never routes (callers route over all the model's experts
  // with a MoeRouter): its routing is not read, and top_k may exceed experts.
  bool expert_parallel = false;
  // How each routed expert joins its gate and up projections: silu(g) * u,
  // or gpt-oss's clamped SwiGLU (with the experts' biases, zero if none given).
  ExpertActivation activation;
  // Routed experts in FP8 (docs/fp8.md): E4M3 with one scale per 128 x 128
  // weight block, packed from the dense experts; the routed tokens and the
  // gated activation quantized per 1 x 128 group on the GPU. About half the
  // routed weight bytes of bf16. sm_90a (wgmma_sp); bf16 activations, 1:2
  // row groups, V a multiple of 128, silu(g) * u. Shared experts stay bf16.
  // Experimental: checked on an H100 (2026-12-07), slower than its speed
  // goals (docs/fp8.md). Strict packing verifies the 16-bit weights' pattern,
  // then quantizes the kept values.
  bool fp8_experts = false;
  void validate() const;
};

// One expert's dense weights, 16-bit row-major: w1, w3 [ffn, hidden] (gate,
// up), w2 [hidden, ffn] (down); in host memory, or in device memory of the
// runtime's device (copied to the host for packing, one matrix at a time).
struct DenseExpert {
  const uint16_t* w1 = nullptr;
  const uint16_t* w3 = nullptr;
  const uint16_t* w2 = nullptr;
  int64_t ffn = 0;  // rows of w1/w3; 0 = the layer's ffn (shared experts may differ)
  bool on_device = false;
  // A shared expert only, and then the only one: [hidden] weights of its
  // gate, which scales its output by sigmoid(gate . x) (Qwen2-MoE).
  const uint16_t* gate = nullptr;
  // Routed experts with the clamped SwiGLU (gpt-oss): 16-bit biases of the
  // gate and up projections [ffn] and of the down projection [hidden], on
  // the same side as the weights; null: zero.
  const uint16_t* b1 = nullptr;
  const uint16_t* b3 = nullptr;
  const uint16_t* b2 = nullptr;
};

// One expert's weights already packed (the canonical form of format.hpp,
// e.g. read from a packed checkpoint): w1, w3 [ffn, hidden], w2 [hidden, ffn].
struct PackedExpert {
  PackedWeights w1, w3, w2;
};

class MoeLayer {
 public:
  // Packs every expert once. Shared experts (always on, weight 1) are folded
  // into one wide expert: a sum of gated experts is one expert with their
  // rows stacked.
  MoeLayer(KernelRuntime& rt, const MoeLayerSpec& spec, const std::vector<DenseExpert>& experts,
           const std::vector<DenseExpert>& shared = {}, PackMode mode = PackMode::Magnitude);
  // The same from packed experts: nothing is pruned; every matrix is checked
  // (validate_packed) against the spec's shape, dtype and pattern. At most one
  // shared expert (its ffn may differ), with an optional gate [hidden] in
  // host memory (Qwen2-MoE).
  // Taken by value: move them in (a large model's layer is gigabytes).
  MoeLayer(KernelRuntime& rt, const MoeLayerSpec& spec, std::vector<PackedExpert> experts,
           const PackedExpert* shared = nullptr, const uint16_t* shared_gate = nullptr);

  const MoeLayerSpec& spec() const { return spec_; }
  // Device bytes of the packed weights.
  int64_t weight_bytes() const;
  // The most tokens one forward call takes (65535): split larger batches.
  int64_t max_tokens() const;
  // Workspace for up to max_tokens tokens: T*top_k*(ffn + hidden)*2 bytes of
  // expert activations, 20*T*top_k of routing and lists, O(experts), plus the shared
  // experts' T*(shared ffn + hidden)*2.
  size_t workspace_bytes(int64_t max_tokens) const;
  // workspace_bytes(T) <= per_token * T + fixed for every T: a size a tracer
  // holding T as a symbol (torch.compile) can compute without calling here.
  struct WorkspaceBound {
    int64_t per_token = 0, fixed = 0;
  };
  WorkspaceBound workspace_bound() const;

  // y[T, hidden] from x[T, hidden] and router logits [T, experts], routed by
  // spec().routing. Refused for an expert-parallel layer: its logits would
  // cover only its own experts (route over all of them, then forward_routed).
  // error_flag: a device int the kernels OR their error bits into, as
  // LaunchOptions::error_flag (bit 0: an id out of range, such as a top-k
  // expert id of forward_routed).
  void forward(const void* x, int64_t tokens, RouterLogits router_logits, void* y, void* workspace,
               size_t workspace_size, void* stream = nullptr, int* error_flag = nullptr) const;
  // The routing of forward() alone: each token's top_k expert ids [T, top_k]
  // int32 and weights [T, top_k] f32, by spec().routing, on the device.
  // Refused for an expert-parallel layer, as forward() is.
  void route(int64_t tokens, RouterLogits router_logits, int32_t* topk_ids, float* topk_weights,
             void* stream = nullptr) const;
  // The same with routing done by the caller: topk_ids [T, top_k] int32,
  // topk_weights [T, top_k] f32 (used as given).
  void forward_routed(const void* x, int64_t tokens, const int32_t* topk_ids, const float* topk_weights, void* y,
                      void* workspace, size_t workspace_size, void* stream = nullptr,
                      int* error_flag = nullptr) const;

 private:
  struct Workspace;
  Workspace carve(void* workspace, size_t size, int64_t tokens) const;
  void upload_routed(const std::vector<PackedWeights>& p1, const std::vector<PackedWeights>& p3,
                     const std::vector<PackedWeights>& p2);
  void upload_expert_biases(const std::vector<DenseExpert>& experts);
  void upload_shared_gate(const uint16_t* host_gate);
  KernelRuntime& rt_;
  MoeLayerSpec spec_;
  GroupedExpertWeights w1_, w3_, w2_;  // bf16 routed experts, or
  std::shared_ptr<const Fp8RoutedExperts> fp8_;  // FP8 ones (spec.fp8_experts)
  bool has_shared_ = false;
  int64_t shared_ffn_ = 0;
  PackedExpertWeights shared_w1_, shared_w3_, shared_w2_;
  std::optional<MoeRouter> router_;  // over spec.experts, by spec.routing; none if expert-parallel
  DeviceBuffer shared_gate_;  // empty where the layer has none
  // The routed experts' biases as float, expert e's at e * ffn (e * hidden for
  // the down projection's): the clamped SwiGLU's epilogues read them.
  DeviceBuffer bias1_, bias3_, bias2_;
};

}  // namespace samoyeds
