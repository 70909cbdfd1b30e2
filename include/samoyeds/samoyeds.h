/* samoyeds C ABI: opaque handles, status codes, and a per-thread last-error
 * message, so any language that can load a shared library can use the
 * expert ops. Pointers named x, y, h, ids, p, workspace are device pointers;
 * `stream` is a CUstream (NULL = legacy default stream). */
#ifndef SAMOYEDS_H_
#define SAMOYEDS_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  SAMOYEDS_OK = 0,
  SAMOYEDS_INVALID_ARGUMENT = 1,
  SAMOYEDS_PATTERN_VIOLATION = 2,
  SAMOYEDS_NON_FINITE_INPUT = 3,
  SAMOYEDS_UNSUPPORTED = 4,
  SAMOYEDS_COMPILE_ERROR = 5,
  SAMOYEDS_CUDA_ERROR = 6,
  SAMOYEDS_CACHE_ERROR = 7,
  SAMOYEDS_IO_ERROR = 8,
  SAMOYEDS_INTERNAL_ERROR = 99
} samoyeds_status;

typedef enum { SAMOYEDS_F16 = 0, SAMOYEDS_BF16 = 1 } samoyeds_dtype;

typedef struct samoyeds_runtime samoyeds_runtime;
typedef struct samoyeds_weights samoyeds_weights;

/* Message of the last failed call on this thread ("" if none). */
const char* samoyeds_last_error(void);

/* cache_path: NULL or "" = default cache file, "none" = no disk cache. */
samoyeds_status samoyeds_runtime_create(int device, const char* cache_path, samoyeds_runtime** out);
void samoyeds_runtime_destroy(samoyeds_runtime* rt);
/* The kernels the runtime has loaded, in load order, one line each:
 * "<backend, spec and config>\t<nvrtc|cache>\t<load ms>\n" (what calls ran, and
 * whether a call compiled). Copies at most size bytes, NUL-terminated, and
 * returns the size the whole text needs, NUL included (0 for a null runtime). */
size_t samoyeds_runtime_kernels(const samoyeds_runtime* rt, char* buf, size_t size);

/* Packs dense row-major [m, k] 16-bit weights (host memory) with N:M rows per
 * V columns and 2:4; strict != 0 verifies instead of pruning. */
samoyeds_status samoyeds_weights_pack(const uint16_t* host_dense, int64_t m, int64_t k, samoyeds_dtype dtype, int V,
                                      int N, int M, int strict, samoyeds_weights** out);
/* The same from dense weights in device memory. */
samoyeds_status samoyeds_weights_pack_device(const void* device_dense, int64_t m, int64_t k, samoyeds_dtype dtype,
                                             int V, int N, int M, int strict, samoyeds_weights** out);
void samoyeds_weights_destroy(samoyeds_weights* w);
int64_t samoyeds_weights_device_bytes(const samoyeds_weights* w);

/* y[i] = x[ids[i]] . W^T (silu != 0: then SiLU); ids NULL = row i. */
samoyeds_status samoyeds_ssmm(samoyeds_runtime* rt, const samoyeds_weights* w, const void* x, int64_t x_rows,
                              const int32_t* ids, int64_t n, void* y, int silu, void* stream);
/* h[i] = silu(x[ids[i]] . W1^T) * (x[ids[i]] . W3^T). */
samoyeds_status samoyeds_gated_up(samoyeds_runtime* rt, const samoyeds_weights* w1, const samoyeds_weights* w3,
                                  const void* x, int64_t x_rows, const int32_t* ids, int64_t n, void* h, void* stream);
/* y[ids[i]] += p[i] * (h[i] . W2^T), deterministic. workspace: at least
 * samoyeds_down_combine_workspace_bytes(w2, n) bytes, 16-byte aligned. */
size_t samoyeds_down_combine_workspace_bytes(const samoyeds_weights* w2, int64_t n);
samoyeds_status samoyeds_down_combine(samoyeds_runtime* rt, const samoyeds_weights* w2, const void* h, int64_t n,
                                      const int32_t* ids, const float* p, void* y, int64_t y_rows, void* workspace,
                                      void* stream);

/* A whole MoE layer. Expert weights are pointers to 16-bit row-major
 * matrices: w1[e], w3[e] [ffn, hidden] (gate, up), w2[e] [hidden, ffn]; host
 * pointers, or device pointers when weights_on_device is nonzero.
 * Shared experts (always on) may be omitted: n_shared = 0. The layer keeps
 * its runtime alive: destroying the runtime first is safe. */
typedef struct samoyeds_moe_layer samoyeds_moe_layer;
/* How forward picks each token's experts (docs/models.md). */
typedef enum {
  SAMOYEDS_ROUTING_SOFTMAX_TOPK = 0,      /* Mixtral, Qwen2/3-MoE, OLMoE */
  SAMOYEDS_ROUTING_SIGMOID_GROUP_TOPK = 1, /* DeepSeek-V3/R1, Kimi-K2 */
  SAMOYEDS_ROUTING_TOPK_SOFTMAX = 2        /* gpt-oss */
} samoyeds_routing_method;
/* How each routed expert joins its gate and up projections. */
typedef enum {
  SAMOYEDS_ACTIVATION_SILU = 0,           /* silu(g) * u */
  SAMOYEDS_ACTIVATION_CLAMPED_SWIGLU = 1  /* gpt-oss: (u' + 1) * g' * sigmoid(alpha g'), with biases */
} samoyeds_activation;
/* Zero-initialize, then set what applies: a zero field takes its default
 * (renormalize 0 is off; forward takes at most 65535 tokens a call). */
typedef struct {
  int64_t hidden, ffn;
  int experts, top_k;
  samoyeds_dtype dtype;
  int V, N, M;
  int renormalize; /* divide the top-k weights by their sum (norm_topk_prob) */
  int n_shared;
  int64_t shared_ffn; /* per shared expert */
  int weights_on_device;
  int strict; /* nonzero: the weights already follow the pattern; verify, never prune */
  samoyeds_routing_method routing;
  int groups, topk_groups;       /* sigmoid_group_topk: n_group, topk_group (0: 1) */
  double routed_scaling_factor;  /* multiplies the weights (0: 1) */
  const float* choice_bias;      /* [experts] host, or NULL: e_score_correction_bias (sigmoid_group_topk) */
  const uint16_t* shared_gate;   /* [hidden] (host or device, as the weights) or NULL: the one shared
                                    expert's output scaled by sigmoid(shared_gate . x) (Qwen2-MoE) */
  int expert_parallel; /* nonzero: routed ids outside [0, experts) are other ranks' experts; they add
                          nothing (as always) and raise no error bit */
  samoyeds_activation activation; /* how the routed experts join gate and up (default silu) */
  double swiglu_alpha, swiglu_limit; /* the clamped SwiGLU's (0: 1.702 and 7.0) */
  /* The clamped SwiGLU's biases, as the weights (host or device): [experts]
   * arrays of 16-bit [ffn] (gate, up) and [hidden] (down) vectors; NULL: zero. */
  const uint16_t* const* expert_b1;
  const uint16_t* const* expert_b3;
  const uint16_t* const* expert_b2;
  /* Nonzero: the routed experts' weights in FP8 e4m3 with 128 x 128 block
   * scales, their inputs quantized per 1 x 128 token group (experimental:
   * sm_90a, bf16, silu, 1:2 rows, V 128; docs/fp8.md). Shared experts stay 16-bit. */
  int experts_e4m3;
} samoyeds_moe_spec;

samoyeds_status samoyeds_moe_layer_create(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                          const uint16_t* const* w1, const uint16_t* const* w3,
                                          const uint16_t* const* w2, const uint16_t* const* shared_w1,
                                          const uint16_t* const* shared_w3, const uint16_t* const* shared_w2,
                                          samoyeds_moe_layer** out);
/* One matrix in the canonical packed form (docs/python.md, format.hpp), in
 * host memory: its dense shape [m, k], its dtype, and its buffers with their
 * lengths, which must be those of the shape and the layer's pattern: values
 * [rows, k_pad / 2] (16-bit), sel [k_pad / V, rows], meta ceil(values / 4)
 * bytes, where k_pad is k rounded up to V and rows is m rounded up to M,
 * times N / M. */
typedef struct {
  int64_t m, k;
  samoyeds_dtype dtype;
  const uint16_t* values;
  int64_t values_count;
  const uint8_t* sel;
  int64_t sel_bytes;
  const uint8_t* meta;
  int64_t meta_bytes;
} samoyeds_packed_matrix;
/* A layer from packed experts (nothing is pruned; each matrix is checked
 * against the spec's shape, dtype and pattern): w1, w3, w2 [experts]; shared
 * NULL or its w1, w3, w2 (spec->n_shared 1, shared_ffn its rows, shared_gate
 * a host pointer or NULL). spec->weights_on_device and strict are unused. */
samoyeds_status samoyeds_moe_layer_create_packed(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                                 const samoyeds_packed_matrix* w1, const samoyeds_packed_matrix* w3,
                                                 const samoyeds_packed_matrix* w2,
                                                 const samoyeds_packed_matrix* shared, samoyeds_moe_layer** out);
/* The same from a packed checkpoint folder (samoyeds_pack_checkpoint), by
 * weight names without their .values/.sel/.meta/.shape suffixes: w1, w3, w2
 * [experts]; shared NULL or 3 names; shared_gate NULL or the name of a
 * [1, hidden] (or [hidden]) tensor of the layer's dtype. The pattern and
 * dtype are the checkpoint's and must be the spec's. */
samoyeds_status samoyeds_moe_layer_load_packed(samoyeds_runtime* rt, const samoyeds_moe_spec* spec,
                                               const char* checkpoint_dir, const char* const* w1,
                                               const char* const* w3, const char* const* w2,
                                               const char* const* shared, const char* shared_gate,
                                               samoyeds_moe_layer** out);
/* A Hugging Face checkpoint folder (model.safetensors or its index and
 * shards) -> a packed checkpoint folder, one tensor in memory at a time, as
 * `samoyeds pack` does. No GPU needed. */
samoyeds_status samoyeds_pack_checkpoint(const char* in_dir, const char* out_dir, int V, int N, int M, int strict);
void samoyeds_moe_layer_destroy(samoyeds_moe_layer* layer);
/* Device bytes of the layer's packed weights. */
int64_t samoyeds_moe_layer_device_bytes(const samoyeds_moe_layer* layer);
/* Workspace bytes for up to max_tokens tokens (pass a 256-byte aligned buffer). */
size_t samoyeds_moe_workspace_bytes(const samoyeds_moe_layer* layer, int64_t max_tokens);
/* An affine bound: workspace_bytes(T) <= per_token * T + fixed for every T
 * (for tracers that hold T as a symbol, such as torch.compile). */
samoyeds_status samoyeds_moe_workspace_bound(const samoyeds_moe_layer* layer, int64_t* per_token, int64_t* fixed);

/* error_flag: NULL, or a device int the kernels OR their error bits into
 * (bit 0: an expert or token id out of range, its entry added nothing). The
 * calls do not synchronize: read it after the stream. */

/* y[T, hidden] = layer(x[T, hidden]) routed by router_logits [T, experts]:
 * in the layer's dtype, or float when logits_fp32 is nonzero. */
samoyeds_status samoyeds_moe_forward(const samoyeds_moe_layer* layer, const void* x, int64_t tokens,
                                     const void* router_logits, int logits_fp32, void* y, void* workspace,
                                     size_t workspace_size, int* error_flag, void* stream);
/* The same with caller routing: topk_ids [T, top_k] int32, topk_weights [T, top_k] float. */
samoyeds_status samoyeds_moe_forward_routed(const samoyeds_moe_layer* layer, const void* x, int64_t tokens,
                                            const int32_t* topk_ids, const float* topk_weights, void* y,
                                            void* workspace, size_t workspace_size, int* error_flag, void* stream);

/* The layer's routing on its own, for expert-parallel callers: they route
 * over all the model's experts, then send each token to the ranks that hold
 * its experts. It reads the spec's experts, top_k, dtype, routing,
 * renormalize, groups, topk_groups, routed_scaling_factor and choice_bias,
 * and no other field. It keeps its runtime alive, as a layer does. */
typedef struct samoyeds_router samoyeds_router;
samoyeds_status samoyeds_router_create(samoyeds_runtime* rt, const samoyeds_moe_spec* spec, samoyeds_router** out);
void samoyeds_router_destroy(samoyeds_router* router);
/* topk_ids [T, top_k] int32 and topk_weights [T, top_k] float, on the
 * device, from router_logits [T, experts] (the spec's dtype, or float when
 * logits_fp32 is nonzero), as the layer's forward routes. */
samoyeds_status samoyeds_route(const samoyeds_router* router, const void* router_logits, int64_t tokens,
                               int logits_fp32, int32_t* topk_ids, float* topk_weights, void* stream);

/* The library's version (the tuning records' library_version). */
const char* samoyeds_version(void);
/* Launches enqueued after this call use programmatic dependent launch
 * (sm_90+) when on is nonzero, and not when it is zero; by default they do
 * unless SAMOYEDS_PDL=0. For benchmarks that time both in one process. */
void samoyeds_set_programmatic_launch(int on);

#ifdef __cplusplus
}
#endif
#endif /* SAMOYEDS_H_ */
