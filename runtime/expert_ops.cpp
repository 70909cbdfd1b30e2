// The expert ops: argument checks, the config choice, then the launch of
// the backend that owns the chosen kernel (backends/<name>/).
#include <fmt/format.h>

#include "backends/backend.hpp"
#include "backends/launch_common.hpp"
#include "generator/utility_kernels.hpp"
#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

void require_aligned(const void* p, size_t align, const char* name) {
  require(p != nullptr, fmt::format("{} is null", name));
  require(reinterpret_cast<uintptr_t>(p) % align == 0,
          fmt::format("{} ({}) must be {}-byte aligned", name, p, align));
}


// The gated projection's epilogue as the options ask: the clamped SwiGLU
// comes with its biases; the down projection takes a bias where given.
Epilogue gated_epilogue_of(const LaunchOptions& opt) {
  if (opt.activation.kind == ExpertActivation::Kind::Silu) {
    require(!opt.bias[0] && !opt.bias[1], "gated_up with silu takes no biases (the clamped SwiGLU does)");
    return Epilogue::GatedSilu;
  }
  require(opt.bias[0] && opt.bias[1], "the clamped SwiGLU needs the gate and up biases");
  return Epilogue::ClampedSwiglu;
}
Epilogue down_epilogue_of(const LaunchOptions& opt) { return opt.bias[0] ? Epilogue::Bias : Epilogue::None; }

// Set for the grouped launch: one kernel over all experts (blockIdx.z).
struct Grouping {
  const GroupedExpertWeights* ws[2];
  const int32_t* offsets;  // device, [experts + 1]
  bool x_is_compact;       // x rows follow the token list (down projection)
};

// out[i, :] = x[ids[i], :] for i < n, rows of k 16-bit values (templates/gather_rows.cuh).
void gather_rows(KernelRuntime& rt, DType dtype, const void* x, int64_t x_rows, int64_t k, const int32_t* ids,
                 int64_t n, void* out, const LaunchOptions& opt) {
  GatherRowsArgs a{};
  a.x = static_cast<const unsigned short*>(x);
  a.ids = ids;
  a.out = static_cast<unsigned short*>(out);
  a.error_flag = opt.error_flag;
  a.n = int(n);
  a.k = int(k);
  a.x_rows = int(x_rows);
  const int64_t rows_per_block = utility_kernel_threads(UtilityKernel::GatherRows) / 32;  // a warp per row
  launch_utility(rt, UtilityKernel::GatherRows, dtype, unsigned((n + rows_per_block - 1) / rows_per_block), 1, &a,
                 opt.stream);
}

void launch(KernelRuntime& rt, Op op, Epilogue epi, const PackedExpertWeights* const* ws, int n_w, const void* x,
            int64_t x_rows, int64_t ldx, const int32_t* ids, int64_t n, const float* row_scale, void* y,
            const LaunchOptions& opt, const Grouping* grouping = nullptr, const ListOrderSpace* in_order = nullptr) {
  const PackedExpertWeights& w0 = *ws[0];
  for (int i = 0; i < n_w; ++i) {
    const PackedExpertWeights& w = *ws[i];
    require(w.dtype() == w0.dtype() && w.sparsity() == w0.sparsity() && w.m() == w0.m() && w.k() == w0.k(),
            "gate and up weights must have the same shape, dtype and sparsity");
  }
  require(n >= 0 && n <= kMaxDim, fmt::format("token count {} out of range", n));
  require(x_rows >= 1 && x_rows <= kMaxDim, fmt::format("x_rows {} out of range", x_rows));
  require(w0.m() <= kMaxDim && w0.k() <= kMaxDim, "weight shape too large");
  // Rows of x start 16-byte aligned only then; a misaligned copy would fault
  // on the GPU (and poison the context) instead of failing here.
  require(ldx % 8 == 0, fmt::format("k = {}: the kernels copy activation rows in 16-byte pieces, so k must be a "
                                    "multiple of 8 (pad activations and weights with zero columns)",
                                    ldx));
  if (n == 0) return;
  require_aligned(x, 16, "x");
  require_aligned(y, 16, "y");
  if (ids) require_aligned(ids, 4, "ids");
  if (row_scale) require_aligned(row_scale, 4, "row scale");

  KernelSpec spec;
  spec.op = op;
  spec.backend = opt.backend ? *opt.backend : Backend::MmaSp;
  spec.arch = rt.device().info().arch();
  spec.dtype = w0.dtype();
  spec.m = w0.m();
  spec.k = w0.k();
  spec.sparsity = w0.sparsity();
  spec.epilogue = epi;
  if (grouping) {
    spec.grouped = true;
    spec.experts = grouping->ws[0]->experts();
  }
  spec.validate();
  TileConfig cfg, gathered_cfg;
  if (opt.config) {
    cfg = gathered_cfg = *opt.config;
  } else {  // the tuning record's backend and config, unless the caller fixed the backend
    const ConfigChoice choice = rt.choose_config(spec, n, opt.backend);
    spec.backend = choice.backend;
    cfg = choice.config;
    gathered_cfg = choice.gathered;
  }
  const KernelFamily& family = kernel_family(spec.backend);
  if (auto why = family.invalid_reason(spec, cfg))
    throw Error(ErrorCode::Unsupported,
                fmt::format("{} config {}: {}{}", backend_name(spec.backend), cfg.to_string(), *why,
                            opt.config && !opt.backend ? " (a config without LaunchOptions::backend means mma_sp)" : ""));
  // A kernel that reads x's rows in order cannot take a gather by id: the
  // call first copies the rows into list order where the caller gave room
  // for that (one pass over the tokens); otherwise a tuned or default
  // config gives way to the choice's gathered config, and a config the
  // caller fixed is an error.
  Grouping in_order_grouping;
  if (ids != nullptr && family.reads_rows_in_order(cfg)) {
    if (in_order && in_order->data) {
      require(in_order->rows >= 1 && in_order->rows <= kMaxDim,
              fmt::format("list-order space of {} rows", in_order->rows));
      require_aligned(in_order->data, 16, "list-order space");
      gather_rows(rt, spec.dtype, x, x_rows, ldx, ids, in_order->rows, in_order->data, opt);
      x = in_order->data;
      x_rows = in_order->rows;
      ids = nullptr;
      if (grouping) {
        in_order_grouping = *grouping;
        in_order_grouping.x_is_compact = true;
        grouping = &in_order_grouping;
      }
    } else {
      require(!opt.config, fmt::format("config {} reads the token rows in order; this call gathers them by id: use "
                                       "a config that gathers, or give room for the rows in list order",
                                       cfg.to_string()));
      cfg = gathered_cfg;
    }
  }
  const LoadedKernel& kernel = rt.get(spec, cfg);
  // The kernel names the packed layout it reads; weights in any other would
  // be read in the wrong order and give wrong answers, not an error.
  for (int i = 0; i < n_w; ++i)
    require(ws[i]->layout_id() == kernel.layout_id,
            fmt::format("weights are in layout '{}', kernel {} reads '{}'", ws[i]->layout_id(), cfg.to_string(),
                        kernel.layout_id));

  ExpertLaunch l;
  l.spec = spec;
  l.config = cfg;
  l.kernel = &kernel;
  l.n_operands = n_w;
  for (int i = 0; i < n_w; ++i) {
    if (grouping)
      l.operands[i] = {grouping->ws[i]->values(), grouping->ws[i]->meta(), grouping->ws[i]->sel()};
    else
      l.operands[i] = {ws[i]->values(), ws[i]->meta(), ws[i]->sel()};
  }
  l.m = w0.m();
  l.k = w0.k();
  l.rows = w0.rows();
  l.rows_pad = w0.rows_pad();
  l.k_phys = w0.k_phys();
  l.x = x;
  l.x_rows = x_rows;
  l.ldx = ldx;
  l.ids = ids;
  l.n = n;
  l.row_scale = row_scale;
  if (biased_epilogue(epi)) {
    for (int i = 0; i < n_w; ++i) require_aligned(opt.bias[i], 4, i == 0 ? "bias" : "up bias");
    l.bias[0] = opt.bias[0];
    l.bias[1] = n_w > 1 ? opt.bias[1] : nullptr;
    l.bias_stride = grouping ? w0.m() : 0;
    l.act_alpha = float(opt.activation.alpha);
    l.act_limit = float(opt.activation.limit);
  }
  l.y = y;
  l.error_flag = opt.error_flag;
  l.stream = opt.stream;
  if (grouping) {
    const GroupedExpertWeights& gw = *grouping->ws[0];
    l.offsets = grouping->offsets;
    l.values_stride = gw.values_stride();
    l.meta_stride = gw.meta_stride();
    l.sel_stride = gw.sel_stride();
    l.x_is_compact = grouping->x_is_compact;
  }
  LaunchContext context{rt.device(), rt.launch_scratch()};
  family.launch(l, context);
}

}  // namespace

void ssmm(KernelRuntime& rt, const PackedExpertWeights& w, const void* x, int64_t x_rows, const int32_t* ids,
          int64_t n, void* y, Epilogue epi, const LaunchOptions& opt) {
  require(epi == Epilogue::None || epi == Epilogue::Silu, "ssmm takes the none or silu epilogue; use gated_up");
  require(!opt.bias[0] && !opt.bias[1], "ssmm takes no biases (down_scaled and gated_up do)");
  const PackedExpertWeights* ws[] = {&w};
  launch(rt, Op::Ssmm, epi, ws, 1, x, x_rows, w.k(), ids, n, nullptr, y, opt);
}

void gated_up(KernelRuntime& rt, const PackedExpertWeights& w1, const PackedExpertWeights& w3, const void* x,
              int64_t x_rows, const int32_t* ids, int64_t n, void* h, const LaunchOptions& opt) {
  const PackedExpertWeights* ws[] = {&w1, &w3};
  launch(rt, Op::GatedUp, gated_epilogue_of(opt), ws, 2, x, x_rows, w1.k(), ids, n, nullptr, h, opt);
}

void down_scaled(KernelRuntime& rt, const PackedExpertWeights& w2, const void* h, int64_t n, const float* p, void* z,
                 const LaunchOptions& opt) {
  require(p != nullptr, "routing weights are null");
  const PackedExpertWeights* ws[] = {&w2};
  launch(rt, Op::Down, down_epilogue_of(opt), ws, 1, h, n > 0 ? n : 1, w2.k(), nullptr, n, p, z, opt);
}

void grouped_gated_up(KernelRuntime& rt, const GroupedExpertWeights& w1, const GroupedExpertWeights& w3,
                      const void* x, int64_t x_rows, const int32_t* list_tokens, const int32_t* offsets,
                      int64_t max_rows, void* h, const LaunchOptions& opt, const ListOrderSpace& in_order) {
  require(w1.experts() == w3.experts(), "gate and up weights have different expert counts");
  require_aligned(offsets, 4, "offsets");
  require_aligned(list_tokens, 4, "token list");
  const Grouping grouping{{&w1, &w3}, offsets, false};
  const PackedExpertWeights* ws[] = {&w1.layout(), &w3.layout()};
  launch(rt, Op::GatedUp, gated_epilogue_of(opt), ws, 2, x, x_rows, w1.layout().k(), list_tokens, max_rows, nullptr, h,
         opt, &grouping, &in_order);
}

void grouped_down_scaled(KernelRuntime& rt, const GroupedExpertWeights& w2, const void* h, int64_t h_rows,
                         const int32_t* offsets, int64_t max_rows, const float* list_weights, void* z,
                         const LaunchOptions& opt) {
  require_aligned(offsets, 4, "offsets");
  require(list_weights != nullptr, "routing weights are null");
  require(max_rows <= h_rows, fmt::format("max_rows {} exceeds h's {} rows", max_rows, h_rows));
  const Grouping grouping{{&w2, &w2}, offsets, true};
  const PackedExpertWeights* ws[] = {&w2.layout()};
  launch(rt, Op::Down, down_epilogue_of(opt), ws, 1, h, h_rows > 0 ? h_rows : 1, w2.layout().k(), nullptr, max_rows,
         list_weights, z, opt, &grouping);
}

size_t down_combine_workspace_bytes(const PackedExpertWeights& w2, int64_t n) {
  return size_t((n * w2.m() * 2 + 15) / 16 * 16);
}

void down_combine(KernelRuntime& rt, const PackedExpertWeights& w2, const void* h, int64_t n, const int32_t* ids,
                  const float* p, void* y, int64_t y_rows, void* workspace, const LaunchOptions& opt) {
  require(y_rows >= 1 && y_rows <= kMaxDim, fmt::format("y_rows {} out of range", y_rows));
  if (n == 0) return;
  require_aligned(ids, 4, "ids");
  require_aligned(y, 2, "y");
  require_aligned(workspace, 16, "workspace");
  down_scaled(rt, w2, h, n, p, workspace, opt);
  ScatterAddArgs a{};
  a.z = static_cast<const unsigned short*>(workspace);
  a.ids = ids;
  a.y = static_cast<unsigned short*>(y);
  a.error_flag = opt.error_flag;
  a.n = int(n);
  a.m = int(w2.m());
  a.y_rows = int(y_rows);
  a.ldy = int(w2.m());
  const int threads = utility_kernel_threads(UtilityKernel::ScatterAddRows);  // a thread per column
  launch_utility(rt, UtilityKernel::ScatterAddRows, w2.dtype(), unsigned((w2.m() + threads - 1) / threads), 1, &a,
                 opt.stream);
}

}  // namespace samoyeds
