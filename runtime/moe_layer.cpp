#include "samoyeds/moe_layer.hpp"

#include <algorithm>
#include <optional>

#include <fmt/format.h>

#include "generator/utility_kernels.hpp"
#include "core/parallel_for.hpp"
#include "format/fp8_pack.hpp"
#include "runtime/fp8_routed_experts.hpp"
#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, "MoE layer: " + what);
}

size_t align_up(size_t v) { return (v + 255) / 256 * 256; }

// Stacks expert matrices [rows_i, cols] (row-major, host) into one.
std::vector<uint16_t> stack_rows(const std::vector<std::pair<const uint16_t*, int64_t>>& parts, int64_t cols) {
  std::vector<uint16_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.first, p.first + p.second * cols);
  return out;
}
// Concatenates [rows, cols_i] matrices side by side.
std::vector<uint16_t> stack_cols(const std::vector<std::pair<const uint16_t*, int64_t>>& parts, int64_t rows) {
  int64_t total = 0;
  for (const auto& p : parts) total += p.second;
  std::vector<uint16_t> out(size_t(rows * total));
  int64_t c0 = 0;
  for (const auto& p : parts) {
    for (int64_t r = 0; r < rows; ++r) std::copy_n(p.first + r * p.second, p.second, &out[size_t(r * total + c0)]);
    c0 += p.second;
  }
  return out;
}

// Host pointer to `count` weights of expert e: the weights themselves, or
// for device-resident weights a copy in `staging`.
const uint16_t* host_view(const DenseExpert& e, const uint16_t* w, int64_t count, std::vector<uint16_t>& staging) {
  if (!e.on_device) return w;
  staging.resize(size_t(count));
  copy_to_host(staging.data(), w, staging.size() * 2);
  return staging.data();
}

// The spec checked before any member is built from it.
const MoeLayerSpec& validated(const MoeLayerSpec& spec) {
  spec.validate();
  return spec;
}

// The layer's router; none for an expert-parallel layer (its callers route
// over all the model's experts).
std::optional<MoeRouter> router_of(KernelRuntime& rt, const MoeLayerSpec& spec) {
  if (spec.expert_parallel) return std::nullopt;
  return std::optional<MoeRouter>(std::in_place, rt, spec.experts, spec.top_k, spec.dtype, spec.routing);
}

}  // namespace

void MoeLayerSpec::validate() const {
  sparsity.validate();
  require(hidden > 0 && ffn > 0, fmt::format("empty shape hidden={} ffn={}", hidden, ffn));
  // Both are some projection's k, whose rows the kernels copy in 16-byte pieces.
  require(hidden % 8 == 0 && ffn % 8 == 0,
          fmt::format("hidden={} ffn={}: both must be multiples of 8 (pad with zero rows and columns)", hidden, ffn));
  // An expert-parallel layer holds some of the experts a token may pick: its
  // top_k may exceed them, and it never routes (forward_routed only).
  if (expert_parallel) {
    require(experts >= 1 && experts <= 65535, fmt::format("{} experts (1 to 65535)", experts));
    require(top_k >= 1 && top_k <= 32, fmt::format("top_k {} (1 to 32)", top_k));
  } else {
    MoeRouter::validate(experts, top_k, routing);
  }
  if (activation.kind == ExpertActivation::Kind::ClampedSwiglu)
    require(activation.alpha > 0 && activation.limit > 0,
            fmt::format("clamped SwiGLU alpha {} and limit {}: both positive", activation.alpha, activation.limit));
  if (fp8_experts) {
    require(dtype == DType::bf16, fmt::format("FP8 experts take bf16 activations, not {}", dtype_name(dtype)));
    require(sparsity.N == 1 && sparsity.M == 2 && sparsity.V == 128,
            fmt::format("FP8 experts are 1:2 row groups at V = 128, not {}", sparsity.to_string()));
    require(activation.kind == ExpertActivation::Kind::Silu, "FP8 experts join gate and up as silu(g) * u only");
    // TMA reads the E4M3 token rows: k bytes a multiple of 16.
    require(hidden % 16 == 0 && ffn % 16 == 0,
            fmt::format("FP8 experts: hidden={} and ffn={} must be multiples of 16", hidden, ffn));
    // Its quantizing gather would walk list rows of experts held elsewhere.
    require(!expert_parallel, "FP8 experts are not expert-parallel yet");
  }
}

struct MoeLayer::Workspace {
  int* topk_ids;
  float* topk_weights;
  int* offsets;
  int* list_token;
  float* list_weight;
  int* position;
  void* h;         // [T*top_k, ffn]
  void* z;         // [T*top_k, hidden]
  void* shared_h;  // [T, shared ffn]
  void* shared_z;  // [T, hidden]
  void* fp8_scratch;  // FP8 experts: the quantized rows (Fp8RoutedExperts::scratch_bytes)
};

MoeLayer::MoeLayer(KernelRuntime& rt, const MoeLayerSpec& spec, const std::vector<DenseExpert>& experts,
                   const std::vector<DenseExpert>& shared, PackMode mode)
    : rt_(rt), spec_(validated(spec)), router_(router_of(rt, spec_)) {
  require(int(experts.size()) == spec_.experts,
          fmt::format("{} expert weight sets for {} experts", experts.size(), spec_.experts));
  const bool clamped = spec_.activation.kind == ExpertActivation::Kind::ClampedSwiglu;
  for (size_t e = 0; e < experts.size(); ++e) {
    const DenseExpert& d = experts[e];
    require(d.w1 && d.w3 && d.w2, fmt::format("expert {} has a null weight pointer", e));
    require(d.ffn == 0 || d.ffn == spec_.ffn, fmt::format("expert {} has ffn {}", e, d.ffn));
    // The plain silu(g) * u epilogue adds no bias: biases given to it would be dropped.
    require(clamped || (!d.b1 && !d.b3 && !d.b2),
            fmt::format("expert {} has biases: the layer takes them with the clamped SwiGLU (gpt-oss) only", e));
  }
  require(!clamped || shared.empty(), "the clamped SwiGLU is for routed experts only (gpt-oss has no shared expert)");
  if (spec_.fp8_experts) {
    require(rt.device().info().arch() == "sm_90a",
            fmt::format("FP8 experts need sm_90a (the sparse FP8 wgmma); this device is {}", rt.device().info().arch()));
  }
  // Packing is pure CPU work per matrix (~0.7 s for a Mixtral expert's):
  // all 3E matrices on all cores.
  std::vector<PackedWeights> p1(experts.size()), p3(experts.size()), p2(experts.size());
  std::vector<PackedFp8Weights> f1(spec_.fp8_experts ? experts.size() : 0), f3(f1.size()), f2(f1.size());
  parallel_for(3 * experts.size(), 0, [&](size_t i) {
    const DenseExpert& d = experts[i / 3];
    std::vector<uint16_t> staging;
    if (spec_.fp8_experts) {
      const uint16_t* src = i % 3 == 0 ? d.w1 : i % 3 == 1 ? d.w3 : d.w2;
      const int64_t rows = i % 3 == 2 ? spec_.hidden : spec_.ffn, cols = i % 3 == 2 ? spec_.ffn : spec_.hidden;
      auto& out = i % 3 == 0 ? f1 : i % 3 == 1 ? f3 : f2;
      out[i / 3] =
          pack_weights_e4m3(host_view(d, src, rows * cols, staging), rows, cols, spec_.dtype, spec_.sparsity, mode);
      return;
    }
    switch (i % 3) {
      case 0:
        p1[i / 3] = pack_weights(host_view(d, d.w1, spec_.ffn * spec_.hidden, staging), spec_.ffn, spec_.hidden,
                                 spec_.dtype, spec_.sparsity, mode);
        break;
      case 1:
        p3[i / 3] = pack_weights(host_view(d, d.w3, spec_.ffn * spec_.hidden, staging), spec_.ffn, spec_.hidden,
                                 spec_.dtype, spec_.sparsity, mode);
        break;
      default:
        p2[i / 3] = pack_weights(host_view(d, d.w2, spec_.hidden * spec_.ffn, staging), spec_.hidden, spec_.ffn,
                                 spec_.dtype, spec_.sparsity, mode);
    }
  });
  if (spec_.fp8_experts)
    fp8_ = std::make_shared<const Fp8RoutedExperts>(f1, f3, f2);
  else
    upload_routed(p1, p3, p2);
  if (clamped) upload_expert_biases(experts);
  for (size_t i = 0; i < shared.size(); ++i)
    if (shared[i].gate) {
      // One gate scales one expert: folded experts would need one each.
      require(shared.size() == 1, fmt::format("shared expert {} of {} has a gate: a gated shared expert must be the "
                                              "only one",
                                              i, shared.size()));
      std::vector<uint16_t> staging;
      upload_shared_gate(host_view(shared[i], shared[i].gate, spec_.hidden, staging));
    }
  if (!shared.empty()) {
    std::vector<std::pair<const uint16_t*, int64_t>> g, u, d;
    std::vector<std::vector<uint16_t>> staging(3 * shared.size());
    for (size_t i = 0; i < shared.size(); ++i) {
      const DenseExpert& s = shared[i];
      require(s.w1 && s.w3 && s.w2, "a shared expert has a null weight pointer");
      const int64_t f = s.ffn ? s.ffn : spec_.ffn;
      require(f > 0 && f % 8 == 0, fmt::format("shared expert {} has ffn {} (a positive multiple of 8)", i, f));
      g.push_back({host_view(s, s.w1, f * spec_.hidden, staging[3 * i]), f});
      u.push_back({host_view(s, s.w3, f * spec_.hidden, staging[3 * i + 1]), f});
      d.push_back({host_view(s, s.w2, f * spec_.hidden, staging[3 * i + 2]), f});
      shared_ffn_ += f;
    }
    const auto sw1 = stack_rows(g, spec_.hidden), sw3 = stack_rows(u, spec_.hidden);
    const auto sw2 = stack_cols(d, spec_.hidden);
    shared_w1_ = PackedExpertWeights::pack(sw1.data(), shared_ffn_, spec_.hidden, spec_.dtype, spec_.sparsity, mode);
    shared_w3_ = PackedExpertWeights::pack(sw3.data(), shared_ffn_, spec_.hidden, spec_.dtype, spec_.sparsity, mode);
    shared_w2_ = PackedExpertWeights::pack(sw2.data(), spec_.hidden, shared_ffn_, spec_.dtype, spec_.sparsity, mode);
    has_shared_ = true;
  }
}

MoeLayer::MoeLayer(KernelRuntime& rt, const MoeLayerSpec& spec, std::vector<PackedExpert> experts,
                   const PackedExpert* shared, const uint16_t* shared_gate)
    : rt_(rt), spec_(validated(spec)), router_(router_of(rt, spec_)) {
  require(spec_.activation.kind == ExpertActivation::Kind::Silu,
          "packed experts with the clamped SwiGLU (their biases) are not loaded yet");
  require(!spec_.fp8_experts, "FP8 experts are packed from dense ones; packed FP8 experts are not loaded yet");
  require(int(experts.size()) == spec_.experts,
          fmt::format("{} packed experts for {} experts", experts.size(), spec_.experts));
  // A packed matrix carries no proof of its shape's meaning: one of another
  // shape, dtype or pattern would be read as garbage, so each is compared.
  auto check = [&](const PackedWeights& w, int64_t m, int64_t k, const std::string& what) {
    validate_packed(w);
    require(w.m == m && w.k == k && w.dtype == spec_.dtype && w.sparsity == spec_.sparsity,
            fmt::format("{} is [{}, {}] {} {}; the layer needs [{}, {}] {} {}", what, w.m, w.k, dtype_name(w.dtype),
                        w.sparsity.to_string(), m, k, dtype_name(spec_.dtype), spec_.sparsity.to_string()));
  };
  std::vector<PackedWeights> p1, p3, p2;
  for (size_t e = 0; e < experts.size(); ++e) {
    check(experts[e].w1, spec_.ffn, spec_.hidden, fmt::format("expert {}'s w1", e));
    check(experts[e].w3, spec_.ffn, spec_.hidden, fmt::format("expert {}'s w3", e));
    check(experts[e].w2, spec_.hidden, spec_.ffn, fmt::format("expert {}'s w2", e));
    p1.push_back(std::move(experts[e].w1));
    p3.push_back(std::move(experts[e].w3));
    p2.push_back(std::move(experts[e].w2));
  }
  upload_routed(p1, p3, p2);
  require(!shared_gate || shared, "a shared gate needs a shared expert");
  if (shared) {
    const int64_t f = shared->w1.m;
    require(f > 0 && f % 8 == 0, fmt::format("the shared expert has ffn {} (a positive multiple of 8)", f));
    check(shared->w1, f, spec_.hidden, "the shared expert's w1");
    check(shared->w3, f, spec_.hidden, "the shared expert's w3");
    check(shared->w2, spec_.hidden, f, "the shared expert's w2");
    shared_w1_ = PackedExpertWeights::upload(shared->w1);
    shared_w3_ = PackedExpertWeights::upload(shared->w3);
    shared_w2_ = PackedExpertWeights::upload(shared->w2);
    shared_ffn_ = f;
    has_shared_ = true;
    if (shared_gate) upload_shared_gate(shared_gate);
  }
}

void MoeLayer::upload_routed(const std::vector<PackedWeights>& p1, const std::vector<PackedWeights>& p3,
                             const std::vector<PackedWeights>& p2) {
  w1_ = GroupedExpertWeights::upload(p1);
  w3_ = GroupedExpertWeights::upload(p3);
  w2_ = GroupedExpertWeights::upload(p2);
}

void MoeLayer::upload_expert_biases(const std::vector<DenseExpert>& experts) {
  const int64_t E = spec_.experts, F = spec_.ffn, H = spec_.hidden;
  std::vector<float> b1(size_t(E * F), 0.0f), b3(size_t(E * F), 0.0f), b2(size_t(E * H), 0.0f);
  auto take = [&](const DenseExpert& d, const uint16_t* bits, int64_t count, float* out) {
    if (!bits) return;  // zero
    std::vector<uint16_t> staging;
    const uint16_t* h = host_view(d, bits, count, staging);
    for (int64_t i = 0; i < count; ++i) out[i] = to_float(spec_.dtype, h[i]);
  };
  for (int64_t e = 0; e < E; ++e) {
    const DenseExpert& d = experts[size_t(e)];
    take(d, d.b1, F, &b1[size_t(e * F)]);
    take(d, d.b3, F, &b3[size_t(e * F)]);
    take(d, d.b2, H, &b2[size_t(e * H)]);
  }
  for (auto [buf, host] : {std::pair{&bias1_, &b1}, std::pair{&bias3_, &b3}, std::pair{&bias2_, &b2}}) {
    *buf = DeviceBuffer(host->size() * 4);
    buf->upload(host->data(), buf->bytes());
  }
}

void MoeLayer::upload_shared_gate(const uint16_t* host_gate) {
  shared_gate_ = DeviceBuffer(size_t(spec_.hidden) * 2);
  shared_gate_.upload(host_gate, shared_gate_.bytes());
}

int64_t MoeLayer::max_tokens() const {
  // The combine's grid has a row of blocks per token (at most 65535), and
  // the token lists count tokens * top_k entries in an int.
  return std::min<int64_t>(65535, (int64_t(1) << 31) / spec_.top_k - 1);
}

int64_t MoeLayer::weight_bytes() const {
  int64_t b = fp8_ ? fp8_->weight_bytes() : w1_.device_bytes() + w3_.device_bytes() + w2_.device_bytes();
  if (has_shared_) b += shared_w1_.device_bytes() + shared_w3_.device_bytes() + shared_w2_.device_bytes();
  return b;
}

size_t MoeLayer::workspace_bytes(int64_t tokens) const {
  const size_t tk = size_t(tokens) * size_t(spec_.top_k), E = size_t(spec_.experts);
  size_t b = align_up(tk * 4) * 5 + align_up((E + 1) * 4);  // topk ids/weights, lists
  b += align_up(tk * size_t(spec_.ffn) * 2) + align_up(tk * size_t(spec_.hidden) * 2);
  if (has_shared_) b += align_up(size_t(tokens) * size_t(shared_ffn_) * 2) + align_up(size_t(tokens) * size_t(spec_.hidden) * 2);
  if (fp8_) b += align_up(Fp8RoutedExperts::scratch_bytes(int64_t(tk), spec_.hidden, spec_.ffn));
  return b;
}

MoeLayer::WorkspaceBound MoeLayer::workspace_bound() const {
  // workspace_bytes' regions, each affine in T, and each rounded up by less than 256.
  const int64_t k = spec_.top_k;
  WorkspaceBound b;
  b.per_token = k * (5 * 4 + 2 * spec_.ffn + 2 * spec_.hidden);
  b.fixed = int64_t(align_up(size_t(spec_.experts + 1) * 4)) + 7 * 256;
  if (has_shared_) {
    b.per_token += 2 * shared_ffn_ + 2 * spec_.hidden;
    b.fixed += 2 * 256;
  }
  if (fp8_) {  // codes, and scales with rows rounded up to 4, each aligned
    const int64_t wide = std::max(spec_.hidden, spec_.ffn), groups = (wide + 127) / 128;
    b.per_token += k * (wide + 4 * groups);
    b.fixed += 16 * groups + 3 * 256;
  }
  return b;
}

MoeLayer::Workspace MoeLayer::carve(void* workspace, size_t size, int64_t tokens) const {
  require(workspace != nullptr, "workspace is null");
  require(reinterpret_cast<uintptr_t>(workspace) % 256 == 0, "workspace must be 256-byte aligned");
  require(size >= workspace_bytes(tokens),
          fmt::format("workspace of {} bytes, {} tokens need {}", size, tokens, workspace_bytes(tokens)));
  char* p = static_cast<char*>(workspace);
  auto take = [&](size_t bytes) {
    void* r = p;
    p += align_up(bytes);
    return r;
  };
  const size_t tk = size_t(tokens) * size_t(spec_.top_k), E = size_t(spec_.experts);
  Workspace w{};
  w.topk_ids = static_cast<int*>(take(tk * 4));
  w.topk_weights = static_cast<float*>(take(tk * 4));
  w.offsets = static_cast<int*>(take((E + 1) * 4));
  w.list_token = static_cast<int*>(take(tk * 4));
  w.list_weight = static_cast<float*>(take(tk * 4));
  w.position = static_cast<int*>(take(tk * 4));
  w.h = take(tk * size_t(spec_.ffn) * 2);
  w.z = take(tk * size_t(spec_.hidden) * 2);
  if (has_shared_) {
    w.shared_h = take(size_t(tokens) * size_t(shared_ffn_) * 2);
    w.shared_z = take(size_t(tokens) * size_t(spec_.hidden) * 2);
  }
  if (fp8_) w.fp8_scratch = take(Fp8RoutedExperts::scratch_bytes(int64_t(tk), spec_.hidden, spec_.ffn));
  return w;
}

void MoeLayer::route(int64_t tokens, RouterLogits router_logits, int32_t* topk_ids, float* topk_weights,
                     void* stream) const {
  if (tokens == 0) return;
  require(tokens > 0 && tokens <= max_tokens(), fmt::format("{} tokens (1 to {} a call)", tokens, max_tokens()));
  require(router_.has_value(), "an expert-parallel layer holds some of the experts: route over all of them with a "
                              "MoeRouter");
  router_->route(tokens, router_logits, topk_ids, topk_weights, stream);
}

void MoeLayer::forward(const void* x, int64_t tokens, RouterLogits router_logits, void* y, void* workspace,
                       size_t workspace_size, void* stream, int* error_flag) const {
  require(!spec_.expert_parallel, "an expert-parallel layer holds some of the experts: route over all of them and "
                                  "call forward_routed");
  if (tokens == 0) return;
  const Workspace w = carve(workspace, workspace_size, tokens);
  route(tokens, router_logits, w.topk_ids, w.topk_weights, stream);
  forward_routed(x, tokens, w.topk_ids, w.topk_weights, y, workspace, workspace_size, stream, error_flag);
}

void MoeLayer::forward_routed(const void* x, int64_t tokens, const int32_t* topk_ids, const float* topk_weights,
                              void* y, void* workspace, size_t workspace_size, void* stream, int* error_flag) const {
  if (tokens == 0) return;
  require(tokens > 0 && tokens <= max_tokens(), fmt::format("{} tokens (1 to {} a call)", tokens, max_tokens()));
  require(x && y && topk_ids && topk_weights, "null input or output pointer");
  require(reinterpret_cast<uintptr_t>(x) % 16 == 0 && reinterpret_cast<uintptr_t>(y) % 16 == 0,
          "x and y must be 16-byte aligned");
  const Workspace w = carve(workspace, workspace_size, tokens);
  rt_.device().make_current();
  const int64_t tk = tokens * spec_.top_k;
  // Entries with an out-of-range expert id get position -1 (BuildExpertLists)
  // and add nothing.
  TokenListArgs l{};
  l.topk_ids = topk_ids;
  l.topk_weights = topk_weights;
  l.offsets = w.offsets;
  l.list_token = w.list_token;
  l.list_weight = w.list_weight;
  l.position = w.position;
  l.error_flag = spec_.expert_parallel ? nullptr : error_flag;  // the lists kernel flags only bad ids
  l.tokens = int(tokens);
  l.experts = spec_.experts;
  l.top_k = spec_.top_k;
  launch_token_lists(rt_, spec_.dtype, l, stream);

  LaunchOptions opt;
  opt.stream = stream;
  opt.error_flag = error_flag;
  // The shared experts go first, so that the combine follows the down
  // projection that wrote z and finds its last rows still in L2 (DeepSeek
  // at 4096 tokens: combine 37.5 -> 35.4 us, layer -1%; docs/perf-log.md).
  if (has_shared_) {
    gated_up(rt_, shared_w1_, shared_w3_, x, tokens, nullptr, tokens, w.shared_h, opt);
    ssmm(rt_, shared_w2_, w.shared_h, tokens, nullptr, tokens, w.shared_z, Epilogue::None, opt);
  }
  // z (the down projection's output, written later) is also the room for
  // the tokens in list order, which a config reading them by TMA copies there.
  LaunchOptions up = opt, down = opt;
  if (spec_.activation.kind == ExpertActivation::Kind::ClampedSwiglu) {
    up.activation = spec_.activation;
    up.bias[0] = static_cast<const float*>(bias1_.data());
    up.bias[1] = static_cast<const float*>(bias3_.data());
    down.bias[0] = static_cast<const float*>(bias2_.data());  // added before the routing weight
  }
  if (fp8_) {
    fp8_->forward(rt_, x, tokens, w.list_token, w.offsets, w.list_weight, tk, w.h, w.z, w.fp8_scratch, stream,
                  error_flag);
  } else {
    grouped_gated_up(rt_, w1_, w3_, x, tokens, w.list_token, w.offsets, tokens, w.h, up, {w.z, tk});
    grouped_down_scaled(rt_, w2_, w.h, tk, w.offsets, tokens, w.list_weight, w.z, down);
  }
  CombineArgs c{};
  c.z = static_cast<const unsigned short*>(w.z);
  c.position = w.position;
  c.shared = has_shared_ ? static_cast<const unsigned short*>(w.shared_z) : nullptr;
  c.shared_gate = static_cast<const unsigned short*>(shared_gate_.data());
  c.x = static_cast<const unsigned short*>(x);
  c.y = static_cast<unsigned short*>(y);
  c.tokens = int(tokens);
  c.top_k = spec_.top_k;
  c.hidden = int(spec_.hidden);
  // Eight columns a thread (templates/moe_routing.cuh).
  const int64_t columns_per_block = int64_t(utility_kernel_threads(UtilityKernel::MoeCombine)) * 8;
  launch_utility(rt_, UtilityKernel::MoeCombine, spec_.dtype,
                 unsigned((spec_.hidden + columns_per_block - 1) / columns_per_block), unsigned(tokens), &c, stream);
}

}  // namespace samoyeds
