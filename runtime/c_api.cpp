// The C ABI over the C++ API: every entry point catches, maps the error to a
// status code and keeps the message for samoyeds_last_error().
#include "samoyeds/samoyeds.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "format/packed_checkpoint.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "samoyeds/moe_layer.hpp"
#include "samoyeds/moe_router.hpp"
#include "samoyeds/tuning_record.hpp"

// Shared: a layer keeps its runtime alive (MoeLayer holds a reference).
struct samoyeds_runtime {
  std::shared_ptr<samoyeds::KernelRuntime> rt;
};
struct samoyeds_weights {
  samoyeds::PackedExpertWeights w;
};
struct samoyeds_moe_layer {
  std::shared_ptr<samoyeds::KernelRuntime> rt;  // declared first: destroyed after the layer
  std::unique_ptr<samoyeds::MoeLayer> layer;
};
struct samoyeds_router {
  std::shared_ptr<samoyeds::KernelRuntime> rt;  // as the layer's
  std::unique_ptr<samoyeds::MoeRouter> router;
};

namespace {

thread_local std::string g_last_error;

template <class F>
samoyeds_status guarded(F&& f) {
  try {
    f();
    g_last_error.clear();
    return SAMOYEDS_OK;
  } catch (const samoyeds::Error& e) {
    g_last_error = e.what();
    return static_cast<samoyeds_status>(static_cast<int>(e.code()));
  } catch (const std::exception& e) {
    g_last_error = std::string("samoyeds: internal error: ") + e.what();
    return SAMOYEDS_INTERNAL_ERROR;
  } catch (...) {
    g_last_error = "samoyeds: unknown internal error";
    return SAMOYEDS_INTERNAL_ERROR;
  }
}

void require(bool ok, const std::string& what) {
  if (!ok) throw samoyeds::Error(samoyeds::ErrorCode::InvalidArgument, what);
}

samoyeds::DType dtype_of(samoyeds_dtype d) {
  require(d == SAMOYEDS_F16 || d == SAMOYEDS_BF16, "dtype must be SAMOYEDS_F16 or SAMOYEDS_BF16");
  return d == SAMOYEDS_F16 ? samoyeds::DType::f16 : samoyeds::DType::bf16;
}

static_assert(int(samoyeds::RoutingMethod::SoftmaxTopK) == SAMOYEDS_ROUTING_SOFTMAX_TOPK &&
                  int(samoyeds::RoutingMethod::SigmoidGroupTopK) == SAMOYEDS_ROUTING_SIGMOID_GROUP_TOPK &&
                  int(samoyeds::RoutingMethod::TopKSoftmax) == SAMOYEDS_ROUTING_TOPK_SOFTMAX,
              "the C enum numbers the routing methods as the C++ one does");

// The spec's routing fields as the C++ routing, its choice bias copied
// (spec->experts long).
samoyeds::MoeRouting routing_of(const samoyeds_moe_spec* spec) {
  samoyeds::MoeRouting r;
  require(spec->routing >= SAMOYEDS_ROUTING_SOFTMAX_TOPK && spec->routing <= SAMOYEDS_ROUTING_TOPK_SOFTMAX,
          "routing must be a samoyeds_routing_method");
  r.method = static_cast<samoyeds::RoutingMethod>(int(spec->routing));
  r.renormalize = spec->renormalize != 0;
  r.groups = spec->groups ? spec->groups : 1;
  r.topk_groups = spec->topk_groups ? spec->topk_groups : 1;
  r.scale = spec->routed_scaling_factor != 0.0 ? spec->routed_scaling_factor : 1.0;
  // The expert count first: it sizes the copy of the caller's bias.
  require(spec->experts >= 1 && spec->experts <= 65535, "experts must be 1 to 65535");
  if (spec->choice_bias) r.choice_bias.assign(spec->choice_bias, spec->choice_bias + spec->experts);
  return r;
}

// The C spec as the C++ one, checked (before any runtime, so that a bad
// spec is named even where no GPU is).
samoyeds::MoeLayerSpec layer_spec(const samoyeds_moe_spec* spec) {
  require(spec != nullptr, "spec is null");
  samoyeds::MoeLayerSpec s;
  s.hidden = spec->hidden;
  s.ffn = spec->ffn;
  s.experts = spec->experts;
  s.top_k = spec->top_k;
  s.dtype = dtype_of(spec->dtype);
  s.sparsity = {spec->V, spec->N, spec->M};
  s.expert_parallel = spec->expert_parallel != 0;
  s.fp8_experts = spec->experts_e4m3 != 0;
  require(spec->activation == SAMOYEDS_ACTIVATION_SILU || spec->activation == SAMOYEDS_ACTIVATION_CLAMPED_SWIGLU,
          "activation must be a samoyeds_activation");
  if (spec->activation == SAMOYEDS_ACTIVATION_CLAMPED_SWIGLU) {
    s.activation.kind = samoyeds::ExpertActivation::Kind::ClampedSwiglu;
    if (spec->swiglu_alpha != 0.0) s.activation.alpha = spec->swiglu_alpha;
    if (spec->swiglu_limit != 0.0) s.activation.limit = spec->swiglu_limit;
  }
  s.routing = routing_of(spec);
  s.validate();
  return s;
}

samoyeds::LaunchOptions on(void* stream) {
  samoyeds::LaunchOptions o;
  o.stream = stream;
  return o;
}

}  // namespace

extern "C" {

const char* samoyeds_last_error(void) { return g_last_error.c_str(); }

samoyeds_status samoyeds_runtime_create(int device, const char* cache_path, samoyeds_runtime** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    auto r = std::make_unique<samoyeds_runtime>();
    r->rt = std::make_shared<samoyeds::KernelRuntime>(samoyeds::Device::get(device), cache_path ? cache_path : "");
    *out = r.release();
  });
}

void samoyeds_runtime_destroy(samoyeds_runtime* rt) { delete rt; }

size_t samoyeds_runtime_kernels(const samoyeds_runtime* rt, char* buf, size_t size) {
  if (!rt) return 0;
  std::string text;
  for (const auto& r : rt->rt->load_log())
    text += fmt::format("{}\t{}\t{:.1f}\n", r.kernel, r.compiled ? "nvrtc" : "cache", r.load_ms);
  if (buf && size > 0) {
    const size_t n = std::min(size - 1, text.size());
    std::memcpy(buf, text.data(), n);
    buf[n] = '\0';
  }
  return text.size() + 1;
}

samoyeds_status samoyeds_weights_pack(const uint16_t* host_dense, int64_t m, int64_t k, samoyeds_dtype dtype, int V,
                                      int N, int M, int strict, samoyeds_weights** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    auto w = std::make_unique<samoyeds_weights>();
    w->w = samoyeds::PackedExpertWeights::pack(host_dense, m, k, dtype_of(dtype), {V, N, M},
                                               strict ? samoyeds::PackMode::Strict : samoyeds::PackMode::Magnitude);
    *out = w.release();
  });
}

samoyeds_status samoyeds_weights_pack_device(const void* device_dense, int64_t m, int64_t k, samoyeds_dtype dtype,
                                             int V, int N, int M, int strict, samoyeds_weights** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    auto w = std::make_unique<samoyeds_weights>();
    w->w = samoyeds::PackedExpertWeights::pack_device(
        device_dense, m, k, dtype_of(dtype), {V, N, M},
        strict ? samoyeds::PackMode::Strict : samoyeds::PackMode::Magnitude);
    *out = w.release();
  });
}

void samoyeds_weights_destroy(samoyeds_weights* w) { delete w; }

int64_t samoyeds_weights_device_bytes(const samoyeds_weights* w) { return w ? w->w.device_bytes() : 0; }

samoyeds_status samoyeds_ssmm(samoyeds_runtime* rt, const samoyeds_weights* w, const void* x, int64_t x_rows,
                              const int32_t* ids, int64_t n, void* y, int silu, void* stream) {
  return guarded([&] {
    require(rt && w, "runtime or weights handle is null");
    samoyeds::ssmm(*rt->rt, w->w, x, x_rows, ids, n, y,
                   silu ? samoyeds::Epilogue::Silu : samoyeds::Epilogue::None, on(stream));
  });
}

samoyeds_status samoyeds_gated_up(samoyeds_runtime* rt, const samoyeds_weights* w1, const samoyeds_weights* w3,
                                  const void* x, int64_t x_rows, const int32_t* ids, int64_t n, void* h,
                                  void* stream) {
  return guarded([&] {
    require(rt && w1 && w3, "runtime or weights handle is null");
    samoyeds::gated_up(*rt->rt, w1->w, w3->w, x, x_rows, ids, n, h, on(stream));
  });
}

size_t samoyeds_down_combine_workspace_bytes(const samoyeds_weights* w2, int64_t n) {
  return w2 && n > 0 ? samoyeds::down_combine_workspace_bytes(w2->w, n) : 0;
}

samoyeds_status samoyeds_down_combine(samoyeds_runtime* rt, const samoyeds_weights* w2, const void* h, int64_t n,
                                      const int32_t* ids, const float* p, void* y, int64_t y_rows, void* workspace,
                                      void* stream) {
  return guarded([&] {
    require(rt && w2, "runtime or weights handle is null");
    samoyeds::down_combine(*rt->rt, w2->w, h, n, ids, p, y, y_rows, workspace, on(stream));
  });
}

samoyeds_status samoyeds_moe_layer_create(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                          const uint16_t* const* w1, const uint16_t* const* w3,
                                          const uint16_t* const* w2, const uint16_t* const* shared_w1,
                                          const uint16_t* const* shared_w3, const uint16_t* const* shared_w2,
                                          samoyeds_moe_layer** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    const samoyeds::MoeLayerSpec s = layer_spec(spec);
    require(rt && w1 && w3 && w2, "runtime or weight arrays are null");
    std::vector<samoyeds::DenseExpert> experts, shared;
    for (int e = 0; e < s.experts; ++e) {
      samoyeds::DenseExpert d{w1[e], w3[e], w2[e], 0, spec->weights_on_device != 0};
      d.b1 = spec->expert_b1 ? spec->expert_b1[e] : nullptr;
      d.b3 = spec->expert_b3 ? spec->expert_b3[e] : nullptr;
      d.b2 = spec->expert_b2 ? spec->expert_b2[e] : nullptr;
      experts.push_back(d);
    }
    require(spec->n_shared >= 0, "n_shared is negative");
    if (spec->n_shared > 0) require(shared_w1 && shared_w3 && shared_w2, "shared expert weight arrays are null");
    require(!spec->shared_gate || spec->n_shared == 1, "a shared gate needs exactly one shared expert");
    for (int e = 0; e < spec->n_shared; ++e)
      shared.push_back({shared_w1[e], shared_w3[e], shared_w2[e], spec->shared_ffn, spec->weights_on_device != 0,
                        spec->shared_gate});
    auto l = std::make_unique<samoyeds_moe_layer>();
    l->rt = rt->rt;
    l->layer = std::make_unique<samoyeds::MoeLayer>(*l->rt, s, experts, shared,
                                                    spec->strict ? samoyeds::PackMode::Strict
                                                                 : samoyeds::PackMode::Magnitude);
    *out = l.release();
  });
}

samoyeds_status samoyeds_moe_layer_create_packed(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                                 const samoyeds_packed_matrix* w1, const samoyeds_packed_matrix* w3,
                                                 const samoyeds_packed_matrix* w2,
                                                 const samoyeds_packed_matrix* shared, samoyeds_moe_layer** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    const samoyeds::MoeLayerSpec s = layer_spec(spec);
    // The matrices are checked before the runtime is needed (named where no GPU is).
    require(w1 && w3 && w2, "packed matrix arrays are null");
    require(spec->n_shared == (shared ? 1 : 0), "n_shared must be 1 with a packed shared expert, else 0");
    require(!spec->shared_gate || shared, "a shared gate needs the shared expert");
    // The caller states each buffer's length: compared with what the shape
    // and pattern need before anything is read.
    auto matrix = [&](const samoyeds_packed_matrix& c, const std::string& what) {
      require(c.values && c.sel && c.meta, what + ": a null buffer");
      const samoyeds::PackedSizes z = samoyeds::packed_sizes(c.m, c.k, s.sparsity);
      require(c.values_count == z.values && c.sel_bytes == z.sel && c.meta_bytes == z.meta,
              fmt::format("{}: [{}, {}] at {} needs {} values, {} selector and {} metadata bytes; given {}, {}, {}",
                          what, c.m, c.k, s.sparsity.to_string(), z.values, z.sel, z.meta, c.values_count,
                          c.sel_bytes, c.meta_bytes));
      samoyeds::PackedWeights p;
      p.dtype = dtype_of(c.dtype);
      p.sparsity = s.sparsity;
      p.m = c.m;
      p.k = c.k;
      p.m_pad = z.m_pad;
      p.k_pad = z.k_pad;
      p.values.assign(c.values, c.values + z.values);
      p.sel.assign(c.sel, c.sel + z.sel);
      p.meta.assign(c.meta, c.meta + z.meta);
      return p;
    };
    std::vector<samoyeds::PackedExpert> experts;
    for (int e = 0; e < s.experts; ++e)
      experts.push_back({matrix(w1[e], fmt::format("expert {}'s w1", e)), matrix(w3[e], fmt::format("expert {}'s w3", e)),
                         matrix(w2[e], fmt::format("expert {}'s w2", e))});
    samoyeds::PackedExpert packed_shared;
    if (shared)
      packed_shared = {matrix(shared[0], "shared w1"), matrix(shared[1], "shared w3"), matrix(shared[2], "shared w2")};
    require(rt != nullptr, "runtime is null");
    auto l = std::make_unique<samoyeds_moe_layer>();
    l->rt = rt->rt;
    l->layer = std::make_unique<samoyeds::MoeLayer>(*l->rt, s, std::move(experts), shared ? &packed_shared : nullptr,
                                                    spec->shared_gate);
    *out = l.release();
  });
}

samoyeds_status samoyeds_moe_layer_load_packed(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                               const char* checkpoint_dir, const char* const* w1,
                                               const char* const* w3, const char* const* w2,
                                               const char* const* shared, const char* shared_gate,
                                               samoyeds_moe_layer** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    const samoyeds::MoeLayerSpec s = layer_spec(spec);
    require(rt && checkpoint_dir && w1 && w3 && w2, "runtime, folder or name arrays are null");
    require(spec->n_shared == (shared ? 1 : 0), "n_shared must be 1 with a shared expert, else 0");
    require(!shared_gate || shared, "a shared gate needs the shared expert");
    const samoyeds::PackedCheckpointReader ckpt(checkpoint_dir);
    std::vector<samoyeds::PackedExpert> experts;
    for (int e = 0; e < s.experts; ++e) {
      require(w1[e] && w3[e] && w2[e], fmt::format("expert {} has a null name", e));
      experts.push_back({ckpt.matrix(w1[e]), ckpt.matrix(w3[e]), ckpt.matrix(w2[e])});
    }
    samoyeds::PackedExpert packed_shared;
    std::vector<uint16_t> gate;
    if (shared) {
      require(shared[0] && shared[1] && shared[2], "a shared expert name is null");
      packed_shared = {ckpt.matrix(shared[0]), ckpt.matrix(shared[1]), ckpt.matrix(shared[2])};
      if (shared_gate) gate = ckpt.vector16(shared_gate, s.dtype, s.hidden);
    }
    auto l = std::make_unique<samoyeds_moe_layer>();
    l->rt = rt->rt;
    l->layer = std::make_unique<samoyeds::MoeLayer>(*l->rt, s, std::move(experts), shared ? &packed_shared : nullptr,
                                                    gate.empty() ? nullptr : gate.data());
    *out = l.release();
  });
}

samoyeds_status samoyeds_pack_checkpoint(const char* in_dir, const char* out_dir, int V, int N, int M, int strict) {
  return guarded([&] {
    require(in_dir && out_dir, "folder paths are null");
    samoyeds::PackCheckpointOptions o;
    o.sparsity = {V, N, M};
    o.mode = strict ? samoyeds::PackMode::Strict : samoyeds::PackMode::Magnitude;
    o.metadata["samoyeds.library_version"] = samoyeds::library_version();
    samoyeds::pack_checkpoint(in_dir, out_dir, o);
  });
}

void samoyeds_moe_layer_destroy(samoyeds_moe_layer* layer) { delete layer; }

int64_t samoyeds_moe_layer_device_bytes(const samoyeds_moe_layer* layer) {
  return layer ? layer->layer->weight_bytes() : 0;
}

size_t samoyeds_moe_workspace_bytes(const samoyeds_moe_layer* layer, int64_t max_tokens) {
  return layer && max_tokens > 0 ? layer->layer->workspace_bytes(max_tokens) : 0;
}

samoyeds_status samoyeds_moe_workspace_bound(const samoyeds_moe_layer* layer, int64_t* per_token, int64_t* fixed) {
  return guarded([&] {
    require(layer && per_token && fixed, "layer handle or outputs are null");
    const samoyeds::MoeLayer::WorkspaceBound b = layer->layer->workspace_bound();
    *per_token = b.per_token;
    *fixed = b.fixed;
  });
}

samoyeds_status samoyeds_moe_forward(const samoyeds_moe_layer* layer, const void* x, int64_t tokens,
                                     const void* router_logits, int logits_fp32, void* y, void* workspace,
                                     size_t workspace_size, int* error_flag, void* stream) {
  return guarded([&] {
    require(layer != nullptr, "layer handle is null");
    layer->layer->forward(x, tokens, samoyeds::RouterLogits(router_logits, logits_fp32 != 0), y, workspace,
                          workspace_size, stream, error_flag);
  });
}

samoyeds_status samoyeds_moe_forward_routed(const samoyeds_moe_layer* layer, const void* x, int64_t tokens,
                                            const int32_t* topk_ids, const float* topk_weights, void* y,
                                            void* workspace, size_t workspace_size, int* error_flag, void* stream) {
  return guarded([&] {
    require(layer != nullptr, "layer handle is null");
    layer->layer->forward_routed(x, tokens, topk_ids, topk_weights, y, workspace, workspace_size, stream, error_flag);
  });
}

samoyeds_status samoyeds_router_create(samoyeds_runtime* rt, const samoyeds_moe_spec* spec, samoyeds_router** out) {
  return guarded([&] {
    require(out != nullptr, "out is null");
    *out = nullptr;
    require(spec != nullptr, "spec is null");
    samoyeds::MoeRouting routing = routing_of(spec);
    const samoyeds::DType dtype = dtype_of(spec->dtype);
    // Checked before the runtime, as a layer's spec is: a mistake is named even where no GPU is.
    samoyeds::MoeRouter::validate(spec->experts, spec->top_k, routing);
    require(rt != nullptr, "runtime handle is null");
    auto r = std::make_unique<samoyeds_router>();
    r->rt = rt->rt;
    r->router = std::make_unique<samoyeds::MoeRouter>(*r->rt, spec->experts, spec->top_k, dtype, std::move(routing));
    *out = r.release();
  });
}

void samoyeds_router_destroy(samoyeds_router* router) { delete router; }

samoyeds_status samoyeds_route(const samoyeds_router* router, const void* router_logits, int64_t tokens,
                               int logits_fp32, int32_t* topk_ids, float* topk_weights, void* stream) {
  return guarded([&] {
    require(router != nullptr, "router handle is null");
    router->router->route(tokens, samoyeds::RouterLogits(router_logits, logits_fp32 != 0), topk_ids, topk_weights,
                          stream);
  });
}

const char* samoyeds_version(void) {
  static const std::string version = samoyeds::library_version();
  return version.c_str();
}

void samoyeds_set_programmatic_launch(int on) { samoyeds::set_programmatic_launch(on != 0); }

}  // extern "C"
