// Written per token, not per expert, so that it shares no structure with the
// grouped GPU path it checks.
#include "samoyeds/moe_reference.hpp"

#include <algorithm>
#include <functional>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "core/parallel_for.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

Routing reference_route(const DenseF64& logits, int top_k, const MoeRouting& routing) {
  const int64_t T = logits.rows, E = logits.cols;
  if (top_k < 1 || top_k > E)
    throw Error(ErrorCode::InvalidArgument, fmt::format("top_k {} with {} experts", top_k, E));
  routing.validate(int(E), top_k);
  Routing r;
  r.tokens = T;
  r.top_k = top_k;
  r.expert.resize(size_t(T * top_k));
  r.weight.resize(size_t(T * top_k));
  // Per expert: what the choice ranks, and the weight it gets if chosen.
  std::vector<double> choice(static_cast<size_t>(E)), weight(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  const bool sigmoid = routing.method == RoutingMethod::SigmoidGroupTopK;
  for (int64_t t = 0; t < T; ++t) {
    switch (routing.method) {
      case RoutingMethod::SoftmaxTopK: {
        double mx = -INFINITY, sum = 0.0;
        for (int64_t e = 0; e < E; ++e) mx = std::max(mx, logits.at(t, e));
        for (int64_t e = 0; e < E; ++e) sum += weight[size_t(e)] = std::exp(logits.at(t, e) - mx);
        for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = weight[size_t(e)] /= sum;
        break;
      }
      case RoutingMethod::SigmoidGroupTopK:
        for (int64_t e = 0; e < E; ++e) {
          weight[size_t(e)] = 1.0 / (1.0 + std::exp(-logits.at(t, e)));
          choice[size_t(e)] = weight[size_t(e)] + (routing.choice_bias.empty() ? 0.0 : routing.choice_bias[size_t(e)]);
        }
        break;
      case RoutingMethod::TopKSoftmax:
        for (int64_t e = 0; e < E; ++e) choice[size_t(e)] = logits.at(t, e);
        break;
    }
    if (sigmoid && routing.groups > 1) {
      // A group scores the sum of its two best choices; the experts of all
      // but the best topk_groups groups are out.
      const int64_t size = E / routing.groups;
      std::vector<double> score(size_t(routing.groups));
      for (int g = 0; g < routing.groups; ++g) {
        std::vector<double> members(choice.begin() + g * size, choice.begin() + (g + 1) * size);
        std::partial_sort(members.begin(), members.begin() + 2, members.end(), std::greater<double>());
        score[size_t(g)] = members[0] + members[1];
      }
      std::vector<int> groups(size_t(routing.groups));
      std::iota(groups.begin(), groups.end(), 0);
      std::stable_sort(groups.begin(), groups.end(), [&](int a, int b) { return score[size_t(a)] > score[size_t(b)]; });
      for (size_t i = size_t(routing.topk_groups); i < groups.size(); ++i)
        std::fill_n(choice.begin() + groups[i] * size, size, -INFINITY);
    }
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return choice[size_t(a)] > choice[size_t(b)]; });
    std::vector<double> w(static_cast<size_t>(top_k));
    for (int j = 0; j < top_k; ++j) w[size_t(j)] = weight[size_t(order[size_t(j)])];
    if (routing.method == RoutingMethod::TopKSoftmax) {
      double sum = 0.0;
      for (int j = 0; j < top_k; ++j) sum += w[size_t(j)] = std::exp(choice[size_t(order[size_t(j)])] - choice[size_t(order[0])]);
      for (double& v : w) v /= sum;
    }
    if (routing.renormalize) {
      const double sum = std::accumulate(w.begin(), w.end(), 0.0) + (sigmoid ? 1e-20 : 0.0);
      for (double& v : w) v /= sum;
    }
    for (int j = 0; j < top_k; ++j) {
      r.expert[size_t(t * top_k + j)] = order[size_t(j)];
      r.weight[size_t(t * top_k + j)] = float(w[size_t(j)] * routing.scale);
    }
  }
  return r;
}

ExpertTokenLists build_token_lists(const Routing& routing, int experts) {
  ExpertTokenLists l;
  l.offsets.assign(size_t(experts) + 1, 0);
  for (int32_t e : routing.expert) {
    if (e < 0 || e >= experts) throw Error(ErrorCode::InvalidArgument, fmt::format("expert id {} out of range", e));
    ++l.offsets[size_t(e) + 1];
  }
  std::partial_sum(l.offsets.begin(), l.offsets.end(), l.offsets.begin());
  l.token.resize(routing.expert.size());
  l.slot.resize(routing.expert.size());
  std::vector<int64_t> fill(l.offsets.begin(), l.offsets.end() - 1);
  for (int64_t t = 0; t < routing.tokens; ++t)
    for (int j = 0; j < routing.top_k; ++j) {
      const int32_t e = routing.expert[size_t(t * routing.top_k + j)];
      l.token[size_t(fill[size_t(e)])] = int32_t(t);
      l.slot[size_t(fill[size_t(e)]++)] = j;
    }
  return l;
}

namespace {
double activate(const ExpertActivation& a, double g, double u) {
  return a.kind == ExpertActivation::Kind::Silu ? silu(g) * u : clamped_swiglu(g, u, a.alpha, a.limit);
}

std::vector<double> expert_forward(const ExpertWeightsF64& w, const double* x) {
  const int64_t ffn = w.w1.rows, hidden = w.w1.cols;
  std::vector<double> h(static_cast<size_t>(ffn));
  for (int64_t i = 0; i < ffn; ++i) {
    double g = w.b1.empty() ? 0.0 : w.b1[size_t(i)], u = w.b3.empty() ? 0.0 : w.b3[size_t(i)];
    for (int64_t c = 0; c < hidden; ++c) {
      g += w.w1.at(i, c) * x[c];
      u += w.w3.at(i, c) * x[c];
    }
    h[size_t(i)] = activate(w.activation, g, u);
  }
  std::vector<double> y(static_cast<size_t>(hidden), 0.0);
  for (int64_t r = 0; r < hidden; ++r) {
    if (!w.b2.empty()) y[size_t(r)] = w.b2[size_t(r)];
    for (int64_t i = 0; i < ffn; ++i) y[size_t(r)] += w.w2.at(r, i) * h[size_t(i)];
  }
  return y;
}

void check_expert(const ExpertWeightsF64& w, int64_t hidden) {
  if (w.w1.cols != hidden || w.w3.rows != w.w1.rows || w.w3.cols != hidden || w.w2.rows != hidden ||
      w.w2.cols != w.w1.rows)
    throw Error(ErrorCode::InvalidArgument, "expert weights do not match the hidden size");
  const size_t ffn = size_t(w.w1.rows);
  if ((!w.b1.empty() && w.b1.size() != ffn) || (!w.b3.empty() && w.b3.size() != ffn) ||
      (!w.b2.empty() && w.b2.size() != size_t(hidden)))
    throw Error(ErrorCode::InvalidArgument, "expert biases do not match the expert's rows");
}
}  // namespace

DenseF64 reference_moe_layer(const DenseF64& x, const Routing& routing, const std::vector<ExpertWeightsF64>& experts,
                             const std::vector<ExpertWeightsF64>& shared, const std::vector<double>& shared_gate) {
  if (routing.tokens != x.rows) throw Error(ErrorCode::InvalidArgument, "routing and X disagree on the token count");
  if (!shared_gate.empty() && (int64_t(shared_gate.size()) != x.cols || shared.empty()))
    throw Error(ErrorCode::InvalidArgument, "a shared-expert gate needs shared experts and one weight per hidden column");
  for (const auto& e : experts) check_expert(e, x.cols);
  for (const auto& e : shared) check_expert(e, x.cols);
  DenseF64 y{x.rows, x.cols, std::vector<double>(x.data.size(), 0.0)};
  // Tokens are independent: one per job, on all cores (T = 4096, top-8 is ~10 GFLOP of f64).
  parallel_for(size_t(x.rows), 0, [&](size_t ti) {
    const int64_t t = int64_t(ti);
    const double* xt = &x.data[size_t(t * x.cols)];
    double* yt = &y.data[size_t(t * x.cols)];
    for (int j = 0; j < routing.top_k; ++j) {
      const int32_t e = routing.expert[size_t(t * routing.top_k + j)];
      if (e < 0 || size_t(e) >= experts.size())
        throw Error(ErrorCode::InvalidArgument, fmt::format("token {} routed to expert {} of {}", t, e, experts.size()));
      const auto out = expert_forward(experts[size_t(e)], xt);
      const double w = routing.weight[size_t(t * routing.top_k + j)];
      for (int64_t c = 0; c < x.cols; ++c) yt[c] += w * out[size_t(c)];
    }
    double gate = 1.0;
    if (!shared_gate.empty()) {
      double dot = 0.0;
      for (int64_t c = 0; c < x.cols; ++c) dot += shared_gate[size_t(c)] * xt[c];
      gate = 1.0 / (1.0 + std::exp(-dot));
    }
    for (const auto& s : shared) {
      const auto out = expert_forward(s, xt);
      for (int64_t c = 0; c < x.cols; ++c) yt[c] += gate * out[size_t(c)];
    }
  });
  return y;
}

}  // namespace samoyeds
