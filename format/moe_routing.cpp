#include "samoyeds/moe_routing.hpp"

#include <cmath>

#include <fmt/format.h>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

struct MethodName {
  RoutingMethod method;
  const char* name;
};
constexpr MethodName kMethods[] = {{RoutingMethod::SoftmaxTopK, "softmax_topk"},
                                   {RoutingMethod::SigmoidGroupTopK, "sigmoid_group_topk"},
                                   {RoutingMethod::TopKSoftmax, "topk_softmax"}};

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, "MoE routing: " + what);
}

}  // namespace

const char* routing_method_name(RoutingMethod method) {
  for (const MethodName& m : kMethods)
    if (m.method == method) return m.name;
  return "?";
}

RoutingMethod parse_routing_method(const std::string& name) {
  std::string known;
  for (const MethodName& m : kMethods) {
    if (name == m.name) return m.method;
    known += (known.empty() ? "" : ", ") + std::string(m.name);
  }
  throw Error(ErrorCode::InvalidArgument, fmt::format("unknown routing method '{}' (known: {})", name, known));
}

void MoeRouting::validate(int experts, int top_k) const {
  const char* name = routing_method_name(method);
  require(std::isfinite(scale) && scale > 0.0, fmt::format("scale {} (a positive number)", scale));
  if (method != RoutingMethod::SigmoidGroupTopK) {
    require(groups == 1 && topk_groups == 1,
            fmt::format("groups {} / topk_groups {}: group-limited choice is sigmoid_group_topk's, not {}'s", groups,
                        topk_groups, name));
    require(choice_bias.empty(), fmt::format("a choice bias is sigmoid_group_topk's, not {}'s", name));
  }
  if (method == RoutingMethod::TopKSoftmax)
    require(!renormalize, "topk_softmax's weights sum to 1 already: renormalize must be off");
  if (method == RoutingMethod::SigmoidGroupTopK) {
    // A lane per group on the GPU; a group's score needs two members.
    require(groups >= 1 && groups <= 32 && experts % groups == 0,
            fmt::format("groups {}: 1 to 32, dividing the {} experts", groups, experts));
    require(groups == 1 || experts / groups >= 2,
            fmt::format("groups {} of {} experts: a group scores its two best, so needs two", groups, experts));
    require(topk_groups >= 1 && topk_groups <= groups,
            fmt::format("topk_groups {} (1 to groups = {})", topk_groups, groups));
    require(int64_t(topk_groups) * (experts / groups) >= top_k,
            fmt::format("topk_groups {} of {} experts each hold fewer than top_k = {} experts", topk_groups,
                        experts / groups, top_k));
    require(choice_bias.empty() || int64_t(choice_bias.size()) == experts,
            fmt::format("choice bias of {} values for {} experts", choice_bias.size(), experts));
    for (float b : choice_bias) require(std::isfinite(b), "a choice bias value is not finite");
  }
}

}  // namespace samoyeds
