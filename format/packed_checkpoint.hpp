// Packed checkpoints: a Hugging Face checkpoint folder whose expert
// projections are stored in the canonical packed form (samoyeds/format.hpp),
// so a model is pruned and packed once and then loaded without packing.
// Each expert weight `X.weight` [m, k] (BF16 or F16) becomes four tensors:
//   X.weight.values  [condensed rows, k_pad / 2]  its dtype
//   X.weight.sel     [segments, condensed rows]   U8
//   X.weight.meta    [ceil(values / 4)]           U8 (2 bits a value)
//   X.weight.shape   [2]                          I64: m, k
// Every other tensor and file is copied as it is. Each shard's metadata keeps
// the input's and adds samoyeds.format = packed, samoyeds.format_version and
// samoyeds.sparsity; the index names the new tensors' shards.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "format/safetensors.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {

constexpr int kPackedCheckpointVersion = 1;

// An expert's or a shared expert's gate, up or down projection, by the names
// Mixtral (w1, w3, w2) and Qwen2/3-MoE, OLMoE and DeepSeek (gate_proj, up_proj,
// down_proj) checkpoints use.
bool is_expert_weight(const std::string& tensor_name);

struct PackCheckpointOptions {
  SparsityParams sparsity;
  PackMode mode = PackMode::Magnitude;
  std::map<std::string, std::string> metadata;  // added to every shard's (e.g. the library version)
};

struct PackCheckpointResult {
  int64_t packed = 0, copied = 0;  // tensors
  int64_t dense_bytes = 0, packed_bytes = 0;  // of the expert weights
  std::vector<std::string> shards;
};

// Reads in_dir (model.safetensors, or the shards model.safetensors.index.json
// names) one tensor at a time and writes out_dir (created; must differ).
// Refuses expert weights it cannot pack (not 2-D, not 16-bit: FP8 checkpoints
// need dequantizing first) and models whose experts the library does not run.
PackCheckpointResult pack_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                     const PackCheckpointOptions& options,
                                     const std::function<void(const std::string&)>& progress = {});

// One matrix of a packed shard, `weight_name` without the suffixes; checked
// with validate_packed. The pattern comes from the shard's metadata, the
// dtype from the values' tensor.
PackedWeights read_packed_matrix(SafetensorsReader& shard, const std::string& weight_name);

// A packed checkpoint folder (its index or its one file), tensors by name.
class PackedCheckpointReader {
 public:
  explicit PackedCheckpointReader(const std::string& dir);
  PackedWeights matrix(const std::string& weight_name) const;
  // A tensor of `count` 16-bit values of `dtype` (a gate's weights), checked.
  std::vector<uint16_t> vector16(const std::string& tensor, DType dtype, int64_t count) const;

 private:
  SafetensorsReader& shard_of(const std::string& tensor) const;
  std::string dir_;
  std::map<std::string, std::unique_ptr<SafetensorsReader>> shards_;  // by file
  std::map<std::string, std::string> where_;                          // tensor -> file
};

}  // namespace samoyeds
