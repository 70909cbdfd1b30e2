#include "samoyeds/moe_router.hpp"

#include <climits>

#include <fmt/format.h>

#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, "MoE router: " + what);
}

static_assert(int(RoutingMethod::SoftmaxTopK) == kRouteSoftmaxTopK &&
                  int(RoutingMethod::SigmoidGroupTopK) == kRouteSigmoidGroupTopK &&
                  int(RoutingMethod::TopKSoftmax) == kRouteTopKSoftmax,
              "the routing kernel numbers the methods as RoutingMethod does");

}  // namespace

void MoeRouter::validate(int experts, int top_k, const MoeRouting& routing) {
  require(experts >= 1 && experts <= 65535, fmt::format("{} experts (1 to 65535)", experts));
  require(top_k >= 1 && top_k <= experts && top_k <= 32, fmt::format("top_k {} (1 to min(32, experts))", top_k));
  routing.validate(experts, top_k);
}

MoeRouter::MoeRouter(KernelRuntime& rt, int experts, int top_k, DType dtype, MoeRouting routing)
    : rt_(rt), experts_(experts), top_k_(top_k), dtype_(dtype), routing_(std::move(routing)) {
  validate(experts_, top_k_, routing_);
  if (!routing_.choice_bias.empty()) {
    rt_.device().make_current();  // the bias lives on the runtime's device, whatever the caller's current one
    choice_bias_ = DeviceBuffer(routing_.choice_bias.size() * 4);
    choice_bias_.upload(routing_.choice_bias.data(), choice_bias_.bytes());
  }
}

int64_t MoeRouter::max_tokens() const { return INT_MAX / top_k_; }

void MoeRouter::route(int64_t tokens, RouterLogits logits, int32_t* topk_ids, float* topk_weights,
                      void* stream) const {
  if (tokens == 0) return;
  require(tokens > 0 && tokens <= max_tokens(), fmt::format("{} tokens (1 to {} a call)", tokens, max_tokens()));
  require(logits.data != nullptr, "router logits are null");
  require(topk_ids && topk_weights, "null routing output pointer");
  rt_.device().make_current();
  RouteArgs r{};
  r.logits = logits.data;
  r.choice_bias = static_cast<const float*>(choice_bias_.data());
  r.topk_ids = topk_ids;
  r.topk_weights = topk_weights;
  r.tokens = int(tokens);
  r.experts = experts_;
  r.top_k = top_k_;
  r.method = int(routing_.method);
  r.renormalize = routing_.renormalize ? 1 : 0;
  r.groups = routing_.groups;
  r.topk_groups = routing_.topk_groups;
  r.scale = float(routing_.scale);
  launch_route(rt_, dtype_, logits.fp32, r, stream);
}

}  // namespace samoyeds
