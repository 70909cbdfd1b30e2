// What a kernel computes (KernelSpec) and how it is tiled (TileConfig): the
// generator's whole input. Both are printable and hashable.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

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

// Every backend, one line each: the enum value, its name in records and on
// the command line, and its family (backends/registry.cpp). Adding a
// backend is a folder under backends/ plus one line here.
#define SAMOYEDS_BACKENDS(X)                                                 \
  X(MmaSp, "mma_sp", mma_sp_family)       /* warp-level mma.sp (sm_80+) */   \
  X(WgmmaSp, "wgmma_sp", wgmma_sp_family) /* warpgroup wgmma.sp (sm_90a) */

enum class Backend {
#define SAMOYEDS_BACKEND_ENUM(name, text, family) name,
  SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_ENUM)
#undef SAMOYEDS_BACKEND_ENUM
};
const char* backend_name(Backend b);
// Every backend of SAMOYEDS_BACKENDS, in its order.
const std::vector<Backend>& all_backends();
Backend parse_backend(const std::string& name);

// The fields the generated source depends on (with the arch): one binary
// and one loaded kernel serve every shape and expert count.
#define SAMOYEDS_SPEC_SOURCE_FIELDS(X) \
  X(op) X(backend) X(dtype) X(sparsity.V) X(sparsity.N) X(sparsity.M) X(grouped) X(epilogue)
// Every field a spec is keyed by (records, config choices), once: equality
// and hashing derive from these lists (the arch is compared apart).
#define SAMOYEDS_SPEC_FIELDS(X) SAMOYEDS_SPEC_SOURCE_FIELDS(X) X(m) X(k) X(experts)

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
  bool operator==(const KernelSpec& o) const;
  size_t hash() const;  // of the listed fields and the arch
  // The same comparison and hash over the source fields alone.
  bool same_source(const KernelSpec& o) const;
  size_t source_hash() const;
};

// A backend's schedule beyond the common tile (split-k, persistence, ...):
// small integers the backend names in its own field list (backends/<name>/),
// stored here by position so that configs compare, hash and print without
// knowing which backend's they are. 0 stands for the field's default.
struct ScheduleField {
  const char* name;    // "split_k"
  const char* suffix;  // in the text name: "_k" then the value, or the suffix alone for a flag
  int default_value;   // what 0 stands for
  bool flag;           // 0 or 1
};
struct ScheduleFields {
  const ScheduleField* fields = nullptr;
  int count = 0;
};

// The tile every backend has, one field list: the text name
// ("bm128_bn64_bk64_w2x2_s3": prefix then value), parsing, equality and
// hashing derive from it.
#define SAMOYEDS_TILE_FIELDS(X) \
  X(block_m, "bm", 128) X(block_n, "_bn", 64) X(block_k, "_bk", 64) X(warps_m, "_w", 2) X(warps_n, "x", 2) X(stages, "_s", 3)

struct TileConfig {
  // block_m: condensed weight rows per block; block_n: tokens per block;
  // block_k: k columns per pipeline stage; warps_m x warps_n warps; stages.
#define SAMOYEDS_TILE_MEMBER(name, prefix, init) int name = init;
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_MEMBER)
#undef SAMOYEDS_TILE_MEMBER
  static constexpr int kMaxScheduleFields = 8;
  // The backend's schedule, by the position of its field list; 0 = default.
  std::array<int32_t, kMaxScheduleFields> schedule{};
  // That field list (names and suffixes); null where every value is 0.
  const ScheduleFields* schedule_fields = nullptr;

  // Threads of the MMA layout, warps_m x warps_n warps (a backend may add more).
  int threads() const { return warps_m * warps_n * 32; }
  bool default_schedule() const;  // every schedule value at its default
  // The tile's name, then each schedule field away from its default:
  // "bm128_bn64_bk128_w8x1_s4_p_tf".
  std::string to_string() const;
  // The inverse of to_string() for a backend's field list (null: the tile alone).
  static TileConfig parse(const std::string& text, const ScheduleFields* fields = nullptr);
  bool operator==(const TileConfig& o) const;  // the tile and the schedule values
  bool operator!=(const TileConfig& o) const { return !(*this == o); }
  size_t hash() const;
};

// Largest dynamic shared memory one block may opt into, per architecture.
int max_smem_per_block(const std::string& arch);
int arch_number(const std::string& arch);  // "sm_90a" -> 90

}  // namespace samoyeds
