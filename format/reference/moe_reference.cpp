// Written per token, not per expert, so that it shares no structure with the
// grouped GPU path it checks.
#include "samoyeds/moe_reference.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "core/parallel_for.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

Routing reference_route(const DenseF64& logits, int top_k, bool renormalize) {
  const int64_t T = logits.rows, E = logits.cols;
  if (top_k < 1 || top_k > E)
    throw Error(ErrorCode::InvalidArgument, fmt::format("top_k {} with {} experts", top_k, E));
  Routing r;
  r.tokens = T;
  r.top_k = top_k;
  r.expert.resize(size_t(T * top_k));
  r.weight.resize(size_t(T * top_k));
  std::vector<double> p(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    double mx = -INFINITY;
    for (int64_t e = 0; e < E; ++e) mx = std::max(mx, logits.at(t, e));
    double sum = 0.0;
    for (int64_t e = 0; e < E; ++e) sum += p[size_t(e)] = std::exp(logits.at(t, e) - mx);
    for (auto& v : p) v /= sum;
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[size_t(a)] > p[size_t(b)]; });
    double chosen = 0.0;
    for (int j = 0; j < top_k; ++j) chosen += p[size_t(order[size_t(j)])];
    for (int j = 0; j < top_k; ++j) {
      r.expert[size_t(t * top_k + j)] = order[size_t(j)];
      r.weight[size_t(t * top_k + j)] = float(p[size_t(order[size_t(j)])] / (renormalize ? chosen : 1.0));
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
std::vector<double> expert_forward(const ExpertWeightsF64& w, const double* x) {
  const int64_t ffn = w.w1.rows, hidden = w.w1.cols;
  std::vector<double> h(static_cast<size_t>(ffn));
  for (int64_t i = 0; i < ffn; ++i) {
    double g = 0.0, u = 0.0;
    for (int64_t c = 0; c < hidden; ++c) {
      g += w.w1.at(i, c) * x[c];
      u += w.w3.at(i, c) * x[c];
    }
    h[size_t(i)] = silu(g) * u;
  }
  std::vector<double> y(static_cast<size_t>(hidden), 0.0);
  for (int64_t r = 0; r < hidden; ++r)
    for (int64_t i = 0; i < ffn; ++i) y[size_t(r)] += w.w2.at(r, i) * h[size_t(i)];
  return y;
}

void check_expert(const ExpertWeightsF64& w, int64_t hidden) {
  if (w.w1.cols != hidden || w.w3.rows != w.w1.rows || w.w3.cols != hidden || w.w2.rows != hidden ||
      w.w2.cols != w.w1.rows)
    throw Error(ErrorCode::InvalidArgument, "expert weights do not match the hidden size");
}
}  // namespace

DenseF64 reference_moe_layer(const DenseF64& x, const Routing& routing, const std::vector<ExpertWeightsF64>& experts,
                             const std::vector<ExpertWeightsF64>& shared) {
  if (routing.tokens != x.rows) throw Error(ErrorCode::InvalidArgument, "routing and X disagree on the token count");
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
    for (const auto& s : shared) {
      const auto out = expert_forward(s, xt);
      for (int64_t c = 0; c < x.cols; ++c) yt[c] += out[size_t(c)];
    }
  });
  return y;
}

}  // namespace samoyeds
