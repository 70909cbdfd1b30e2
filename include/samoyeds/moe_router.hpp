// An MoE layer's router on its own: each token's top-k experts and their
// weights from the router's logits, on the GPU, by one of the routing
// methods (moe_routing.hpp). The layer routes through one; expert-parallel
// callers hold one over all the model's experts, route, then send each token
// to the ranks that hold its experts (python/samoyeds/parallel.py).
#pragma once
#include <cstdint>

#include "samoyeds/device.hpp"
#include "samoyeds/dtype.hpp"
#include "samoyeds/moe_routing.hpp"

namespace samoyeds {

class KernelRuntime;

// The router's output: [tokens, experts] logits, with the router's bias if
// it has one (gpt-oss), in the layer's dtype or in float. The caller says
// which: float logits read as 16-bit would route silently wrong.
struct RouterLogits {
  RouterLogits(const void* data, bool fp32) : data(data), fp32(fp32) {}
  const void* data;
  bool fp32;
};

class MoeRouter {
 public:
  // Throws as validate() does.
  MoeRouter(KernelRuntime& rt, int experts, int top_k, DType dtype, MoeRouting routing);
  // Throws InvalidArgument where experts or top_k exceed what the routing
  // kernel takes, or routing does not fit them. Needs no GPU.
  static void validate(int experts, int top_k, const MoeRouting& routing);

  // topk_ids [tokens, top_k] int32 and topk_weights [tokens, top_k] f32 on
  // the device, enqueued on `stream`; no host synchronization.
  void route(int64_t tokens, RouterLogits logits, int32_t* topk_ids, float* topk_weights,
             void* stream = nullptr) const;
  // The most tokens one call takes: tokens * top_k entries count in an int.
  int64_t max_tokens() const;
  int experts() const { return experts_; }
  int top_k() const { return top_k_; }
  const MoeRouting& routing() const { return routing_; }

 private:
  KernelRuntime& rt_;
  int experts_, top_k_;
  DType dtype_;
  MoeRouting routing_;
  DeviceBuffer choice_bias_;  // empty where the routing has none
};

}  // namespace samoyeds
