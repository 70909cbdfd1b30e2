// Launch code of the expert ops: argument checks, config choice, the kernel
// argument block, grid shape.
#include <algorithm>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "generator/utility_kernels.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"
#include "core/cuda_driver.hpp"
#include "core/kernel_launch.hpp"
#include "backends/wgmma_sp/tma_weight_maps.hpp"
#include "runtime/utility_launch.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {
namespace {

constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(ErrorCode::InvalidArgument, what);
}
void require_aligned(const void* p, size_t align, const char* name) {
  require(p != nullptr, fmt::format("{} is null", name));
  require(reinterpret_cast<uintptr_t>(p) % align == 0,
          fmt::format("{} ({}) must be {}-byte aligned", name, p, align));
}


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
  // Token tiles by TMA read x's rows in order. A call that gathers rows by
  // id first copies them into list order where the caller gave room for
  // that (one pass over the tokens); otherwise a tuned or default config
  // gives way to the choice's gathered config (ConfigChoice::gathered), and
  // a config the caller fixed is an error.
  Grouping in_order_grouping;
  if (cfg.tokens_tma && ids != nullptr) {
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
      require(!opt.config, fmt::format("config {} reads the token rows in order (by TMA); this call gathers them by "
                                       "id: use the config without _xt, or give room for the rows in list order",
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

  SsmmArgs a{};
  for (int i = 0; i < 2; ++i) {
    const int w = i < n_w ? i : 0;
    if (grouping) {
      a.values[i] = static_cast<const unsigned short*>(grouping->ws[w]->values());
      a.meta[i] = static_cast<const unsigned int*>(grouping->ws[w]->meta());
      a.sel[i] = static_cast<const unsigned char*>(grouping->ws[w]->sel());
    } else {
      a.values[i] = static_cast<const unsigned short*>(ws[w]->values());
      a.meta[i] = static_cast<const unsigned int*>(ws[w]->meta());
      a.sel[i] = static_cast<const unsigned char*>(ws[w]->sel());
    }
  }
  a.x = static_cast<const unsigned short*>(x);
  a.ids = ids;
  a.row_scale = row_scale;
  a.y = static_cast<unsigned short*>(y);
  a.error_flag = opt.error_flag;
  a.m = int(w0.m());
  a.k = int(w0.k());
  a.n = int(n);
  a.x_rows = int(x_rows);
  a.ldx = int(ldx);
  a.ldy = int(w0.m());
  a.rows_pad = int(w0.rows_pad());
  a.k_phys = int(w0.k_phys());

  unsigned grid_x = unsigned((w0.rows() + cfg.block_m - 1) / cfg.block_m);
  unsigned grid_y = unsigned((n + cfg.block_n - 1) / cfg.block_n);
  require(kernel.weight_maps || grid_y <= 65535,
          fmt::format("{} tokens exceed the grid limit for block_n {}", n, cfg.block_n));
  GroupedSsmmArgs g{};
  void* params[] = {&a, nullptr};  // [1]: the tensor maps, for kernels that take them
  TmaWeightMaps with_call;          // the remembered weight maps plus this call's token and output maps
  unsigned grid_z = 1;
  if (kernel.weight_maps) {
    PackedWeightView views[2];
    WeightMapShape shape;
    shape.rows_pad = w0.rows_pad();
    shape.k_phys = w0.k_phys();
    shape.V = w0.sparsity().V;
    shape.block_m = cfg.block_m;
    shape.block_k = cfg.block_k;
    shape.multicast = cfg.multicast;
    if (grouping) {
      const GroupedExpertWeights& gw = *grouping->ws[0];
      shape.experts = gw.experts();
      // The maps see the experts as one tensor: each expert's part must
      // follow the previous one's with no gap.
      require(gw.values_stride() == w0.rows_pad() * (w0.k_phys() / 2) &&
                  gw.meta_stride() == w0.rows_pad() / 16 * (w0.k_phys() / 2) &&
                  gw.sel_stride() == (w0.k_phys() / w0.sparsity().V) * w0.rows_pad(),
              "grouped weights are not laid out back to back (the TMA maps need that)");
    }
    for (int i = 0; i < n_w; ++i) views[i] = {a.values[i], a.meta[i], a.sel[i]};
    // The launch copies the parameter: the remembered maps are passed as they are.
    params[1] = const_cast<TmaWeightMaps*>(&weight_maps_for(views, n_w, shape));
    // The kernel's chunk (0: it stores from registers); the launch stores by
    // TMA only where rows of y are 16-byte strides.
    const int out_chunk = WgmmaSpFamily::tma_store_chunk_tokens(spec, cfg);
    const bool store_by_tma = out_chunk > 0 && a.ldy % 8 == 0;
    a.out_by_tma = store_by_tma ? 1 : 0;
    if (cfg.tokens_tma || store_by_tma) with_call = *static_cast<const TmaWeightMaps*>(params[1]);
    if (cfg.tokens_tma) {  // rows in order (ids is null by now), k values apart
      require(ldx == w0.k(), "token tiles by TMA read rows of exactly k values");
      with_call.tokens = encode_token_map(x, x_rows, w0.k(), cfg.block_n);
    }
    if (store_by_tma)  // n rows of ldy = m values
      with_call.out = encode_out_map(y, n, a.ldy, out_chunk);
    if (cfg.tokens_tma || store_by_tma) params[1] = &with_call;
  }
  if (grouping) {
    g.base = a;
    g.offsets = grouping->offsets;
    g.values_stride = grouping->ws[0]->values_stride();
    g.meta_stride = grouping->ws[0]->meta_stride();
    g.sel_stride = grouping->ws[0]->sel_stride();
    g.x_is_compact = grouping->x_is_compact ? 1 : 0;
    g.experts = spec.experts;
    params[0] = &g;
    grid_z = unsigned(spec.experts);
  }
  if (kernel.weight_maps) {  // a 1-D grid over tiles, numbered as templates/tile_scheduler.cuh does
    // The family counts the tiles (multicast pairs included) so that the
    // tuner, the launch and the device scheduler share one formula; split-k
    // adds a cluster of split_k blocks per tile (never with persistence).
    const int64_t blocks = WgmmaSpFamily::tile_count(spec, cfg, n) * cfg.split_k;
    require(blocks <= kMaxDim, fmt::format("{} blocks exceed the grid limit", blocks));
    grid_x = unsigned(kernel.persistent ? std::min<int64_t>(blocks, kernel.resident_blocks) : blocks);
    grid_y = grid_z = 1;
    if (cfg.stream_k) {  // every resident block: those past the whole tiles take the tail's shares
      grid_x = unsigned(kernel.resident_blocks);
      const auto w = WgmmaSpFamily::stream_k_workspace(spec, cfg, n, int(grid_x));
      if (w.split.parts > 1) {
        const auto scratch = rt.stream_k_scratch(opt.stream, w.partial_floats, w.flags);
        a.stream_k_partials = scratch.partials;
        a.stream_k_flags = scratch.flags;
      }
    }
  }
  int smem = kernel.smem_bytes;
  if (kernel.tile_prefix) {
    smem += tile_prefix_bytes(spec.experts);
    require(smem <= rt.device().info().max_smem_optin,
            fmt::format("{} experts: the kernel's {} bytes of shared memory plus its tile prefix exceed the "
                        "device's {}",
                        spec.experts, kernel.smem_bytes, rt.device().info().max_smem_optin));
  }
  rt.device().make_current();
  LaunchShape shape;
  shape.grid_x = grid_x;
  shape.grid_y = grid_y;
  shape.grid_z = grid_z;
  shape.threads = unsigned(kernel.threads);
  shape.smem_bytes = unsigned(smem);
  const CUresult rc =
      launch_kernel(rt.device(), static_cast<CUfunction>(kernel.function), shape, static_cast<CUstream>(opt.stream),
                    params);
  if (rc != CUDA_SUCCESS)  // the message is built only on failure: this is the hot path
    check(rc, fmt::format("launch {} {}", spec.to_string(), cfg.to_string()).c_str());
}

}  // namespace

void ssmm(KernelRuntime& rt, const PackedExpertWeights& w, const void* x, int64_t x_rows, const int32_t* ids,
          int64_t n, void* y, Epilogue epi, const LaunchOptions& opt) {
  require(epi == Epilogue::None || epi == Epilogue::Silu, "ssmm takes the none or silu epilogue; use gated_up");
  const PackedExpertWeights* ws[] = {&w};
  launch(rt, Op::Ssmm, epi, ws, 1, x, x_rows, w.k(), ids, n, nullptr, y, opt);
}

void gated_up(KernelRuntime& rt, const PackedExpertWeights& w1, const PackedExpertWeights& w3, const void* x,
              int64_t x_rows, const int32_t* ids, int64_t n, void* h, const LaunchOptions& opt) {
  const PackedExpertWeights* ws[] = {&w1, &w3};
  launch(rt, Op::GatedUp, Epilogue::GatedSilu, ws, 2, x, x_rows, w1.k(), ids, n, nullptr, h, opt);
}

void down_scaled(KernelRuntime& rt, const PackedExpertWeights& w2, const void* h, int64_t n, const float* p, void* z,
                 const LaunchOptions& opt) {
  require(p != nullptr, "routing weights are null");
  const PackedExpertWeights* ws[] = {&w2};
  launch(rt, Op::Down, Epilogue::None, ws, 1, h, n > 0 ? n : 1, w2.k(), nullptr, n, p, z, opt);
}

void grouped_gated_up(KernelRuntime& rt, const GroupedExpertWeights& w1, const GroupedExpertWeights& w3,
                      const void* x, int64_t x_rows, const int32_t* list_tokens, const int32_t* offsets,
                      int64_t max_rows, void* h, const LaunchOptions& opt, const ListOrderSpace& in_order) {
  require(w1.experts() == w3.experts(), "gate and up weights have different expert counts");
  require_aligned(offsets, 4, "offsets");
  require_aligned(list_tokens, 4, "token list");
  const Grouping grouping{{&w1, &w3}, offsets, false};
  const PackedExpertWeights* ws[] = {&w1.layout(), &w3.layout()};
  launch(rt, Op::GatedUp, Epilogue::GatedSilu, ws, 2, x, x_rows, w1.layout().k(), list_tokens, max_rows, nullptr, h,
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
  launch(rt, Op::Down, Epilogue::None, ws, 1, h, h_rows > 0 ? h_rows : 1, w2.layout().k(), nullptr, max_rows,
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
