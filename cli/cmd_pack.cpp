// samoyeds pack: a Hugging Face checkpoint folder -> a packed checkpoint
// (format/packed_checkpoint.hpp), one tensor in memory at a time. No GPU.
#include <fmt/format.h>

#include "cli/cli_options.hpp"
#include "format/packed_checkpoint.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds::cli {

int cmd_pack(const std::vector<std::string>& argv) {
  CLI::App app("Prune and pack a Hugging Face checkpoint's expert weights into a packed checkpoint (no GPU needed).",
               "samoyeds pack");
  std::string model_dir, out_dir, rows = "1:2";
  int segment = 128;
  bool strict = false, quiet = false;
  app.add_option("--model", model_dir, "checkpoint folder (model.safetensors or its index and shards)")->required();
  app.add_option("--out", out_dir, "folder for the packed checkpoint (created; other files are copied)")->required();
  app.add_option("--rows", rows, "row pattern N:M")->capture_default_str();
  app.add_option("--segment", segment, "segment length 32|64|128|256")->capture_default_str();
  app.add_flag("--strict", strict, "the expert weights already follow the pattern: verify, never prune");
  app.add_flag("--quiet", quiet, "no line per packed tensor");
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;

  PackCheckpointOptions options;
  options.sparsity = SparsityParams::from_rows(rows, segment);
  options.mode = strict ? PackMode::Strict : PackMode::Magnitude;
  options.metadata["samoyeds.library_version"] = library_version();
  const PackCheckpointResult r = pack_checkpoint(model_dir, out_dir, options, [&](const std::string& name) {
    if (!quiet) fmt::print("packing {}\n", name);
  });
  fmt::print("samoyeds pack: {} expert weights packed ({}), {} other tensors copied, {} shard(s) in {}\n", r.packed,
             options.sparsity.to_string(), r.copied, r.shards.size(), out_dir);
  if (r.packed > 0)
    fmt::print("expert weights: {:.1f} MB dense -> {:.1f} MB packed ({:.3f}x)\n", r.dense_bytes / 1e6,
               r.packed_bytes / 1e6, double(r.packed_bytes) / double(r.dense_bytes));
  else
    fmt::print("no expert weights found (names like experts.N.w1.weight or experts.N.gate_proj.weight)\n");
  return 0;
}

}  // namespace samoyeds::cli
