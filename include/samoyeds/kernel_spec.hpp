// What a kernel computes (KernelSpec) and how it is tiled (TileConfig): the
// generator's whole input. Both are printable and hashable.
#pragma once
#include <cstdint>
#include <string>

#include "samoyeds/dtype.hpp"
#include "samoyeds/format.hpp"
#include "samoyeds/reference.hpp"

namespace samoyeds {

enum class Op {
  Ssmm,     // y = epi(x[ids] . W^T), epi none or silu
  GatedUp,  // h = silu(x[ids] . W1^T) * (x[ids] . W3^T)
  Down,     // z = p[i] * (h[i] . W2^T), compact; combined into y elsewhere
};
const char* op_name(Op op);
Op parse_op(const std::string& name);

enum class Backend {
  MmaSp,    // warp-level mma.sp (sm_80+)
  WgmmaSp,  // warpgroup wgmma.sp (sm_90a only)
};
const char* backend_name(Backend b);
Backend parse_backend(const std::string& name);

struct KernelSpec {
  Op op = Op::Ssmm;
  Backend backend = Backend::MmaSp;
  std::string arch = "sm_90a";  // sm_80, sm_86, sm_89, sm_90, sm_90a
  DType dtype = DType::bf16;
  int64_t m = 0, k = 0;  // the projection's shape (output features, input features)
  SparsityParams sparsity;
  int experts = 1;
  // One launch over all experts (blockIdx.z), token slices from device-side
  // offsets (templates/grouped_experts.cuh); changes the entry point only.
  bool grouped = false;
  Epilogue epilogue = Epilogue::None;

  void validate() const;  // throws Error on an inconsistent spec
  std::string to_string() const;
};

struct TileConfig {
  int block_m = 128;  // condensed weight rows per block
  int block_n = 64;   // tokens per block
  int block_k = 64;   // k columns per pipeline stage
  int warps_m = 2, warps_n = 2;
  int stages = 3;
  // Schedule (wgmma_sp only; mma_sp takes the defaults):
  int split_k = 1;            // blocks per tile, each a share of k, summed in a cluster (1, 2, 4, 8)
  bool persistent = false;    // about one block per SM, each walking its tiles
  bool tokens_first = false;  // tile order: token tile fastest (default: row tile fastest)
  // Row-first order in groups of this many row tiles, each group walking
  // every token tile before the next (0: off; 4, 8 or 16), so the tiles
  // running at once keep their weights and tokens in L2.
  int row_group = 0;
  // Blocks of one cluster that share a row tile, each with its own token
  // tile, the weight tiles brought once by TMA multicast (1 or 2).
  int multicast = 1;
  // Token tiles brought by TMA (2-D boxes of consecutive activation rows)
  // instead of gathered row by row with cp.async, for calls whose rows are
  // in order (no ids; or routed rows first copied into list order). A call
  // that gathers by id runs the same tile with the gather (wgmma_sp only).
  bool tokens_tma = false;
  // Consumer layout (wgmma_sp, gated up projection, block_m = 64): a
  // warpgroup per weight operand over the whole tile, instead of one
  // warpgroup holding both operands; the tile may then be 128 tokens wide.
  bool split_operands = false;
  // Persistent single launches (wgmma_sp): the tiles that do not fill the
  // last round are split along k over the idle blocks, their shares summed
  // in a fixed order through a workspace (templates/ssmm_wgmma_ws.cuh).
  bool stream_k = false;

  // Threads of the MMA layout, warps_m x warps_n warps (the wgmma_sp kernel
  // adds a producer warpgroup, and with split_operands a second layout).
  int threads() const { return warps_m * warps_n * 32; }
  // "bm128_bn64_bk64_w2x2_s3", then "_k2" (split_k), "_m2" (multicast), "_p" (persistent), "_tf"
  // (tokens_first), "_g16" (row_group), "_so" (split_operands), "_xt" (tokens_tma), "_sk" (stream_k) where set.
  std::string to_string() const;
  static TileConfig parse(const std::string& text);
  bool operator==(const TileConfig& o) const {
    return block_m == o.block_m && block_n == o.block_n && block_k == o.block_k && warps_m == o.warps_m &&
           warps_n == o.warps_n && stages == o.stages && split_k == o.split_k && persistent == o.persistent &&
           tokens_first == o.tokens_first && row_group == o.row_group && multicast == o.multicast && tokens_tma == o.tokens_tma &&
           split_operands == o.split_operands && stream_k == o.stream_k;
  }
  bool default_schedule() const {
    return split_k == 1 && !persistent && !tokens_first && row_group == 0 && multicast == 1 && !stream_k;
  }
};

// Largest dynamic shared memory one block may opt into, per architecture.
int max_smem_per_block(const std::string& arch);
int arch_number(const std::string& arch);  // "sm_90a" -> 90

}  // namespace samoyeds
