// samoyeds bench: a model's expert kernels as dispatch would run them (tuned
// record, nearest bucket or heuristic), how long loading each took in this
// process, and their time against cuBLAS measured beside them.
#include <cstdio>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli/cli_options.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/op_runner.hpp"

namespace samoyeds::cli {

int cmd_bench(const std::vector<std::string>& argv) {
  CLI::App app("Time a model's kernels as dispatch picks them (tuned or heuristic) against cuBLAS.",
               "samoyeds bench");
  std::string model_arg, dtype_arg = "bf16", rows = "1:2", cache_path = default_cache_path();
  std::vector<int64_t> tokens = {16, 64, 256, 1024, 4096};
  int segment = 128;
  app.add_option("--model", model_arg, model_option_help())->required();
  add_int_list(app, "--tokens", tokens, "token counts (default 16,64,256,1024,4096)", 1, int64_t(1) << 20);
  app.add_option("--dtype", dtype_arg, "bf16 or f16")->capture_default_str();
  app.add_option("--rows", rows, "row pattern N:M")->capture_default_str();
  app.add_option("--segment", segment, "segment length")->capture_default_str();
  app.add_option("--cache", cache_path, "cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)");
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;
  if (tokens.empty()) throw Error(ErrorCode::InvalidArgument, "--tokens is empty");
  const ModelPreset model = load_model(model_arg);
  const SparsityParams sp = SparsityParams::from_rows(rows, segment);
  const DType dt = parse_dtype(dtype_arg);
  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "bench needs a GPU: " + why);
  KernelRuntime rt(Device::get(), cache_path);
  int64_t max_tokens = 1;
  for (int64_t t : tokens) max_tokens = std::max(max_tokens, t);
  OpRunner runner(rt, max_tokens, model.top_k);  // the routed experts run grouped, as in the layer
  fmt::print("{} on {}\n", model.display_name, runner.device().to_string());
  fmt::print("{:<9} {:>13} {:>6} {:<26} {:<22} {:>8} {:>5} {:>8} {:>9} {:>8} {:>8} {:>8}\n", "op", "m x k", "tokens",
             "config", "chosen by", "load ms", "from", "ours ms", "cuBLAS ms", "/cuBLAS", "cuSPLt", "/cuSPLt");
  std::string lt_absent;
  std::vector<std::string> failed;
  for (const KernelSpec& spec : model_expert_specs(model, rt.device().info().arch(), dt, sp))
    for (int64_t n : tokens) {
      const ConfigChoice choice = rt.choose_config(spec, n);
      KernelSpec chosen = spec;
      chosen.backend = choice.backend;
      const LoadedKernel& k = rt.get(chosen, choice.config);
      // The kernel's output against the float64 reference before its time
      // is reported: at n tokens on this shape, through the launch timed
      // (sampled output rows).
      std::string path, why;
      const bool ok = runner.verify_at_bucket(chosen, choice.config, n, &path, &why);
      if (!ok) {
        failed.push_back(fmt::format("{} {}x{} at {} tokens, {}: {}", op_name(spec.op), spec.m, spec.k, n,
                                     choice.config.to_string(), why));
        continue;
      }
      const double ours = runner.time_ms(chosen, choice.config, n), dense = runner.baseline_ms(spec, n);
      const double lt = runner.cusparselt_ms(spec, n, &lt_absent);
      fmt::print("{:<9} {:>6}x{:<6} {:>6} {:<26} {:<22} {:>8.2f} {:>5} {:>8.4f} {:>9.4f} {:>7.2f}x {:>8} {:>8}\n",
                 op_name(spec.op), spec.m, spec.k, n,
                 fmt::format("{}/{}", backend_name(choice.backend), choice.config.to_string()),
                 choice.source == ConfigChoice::Source::Heuristic
                     ? std::string("heuristic")
                     : fmt::format("{} ({})", choice_source_name(choice.source), choice.bucket),
                 k.load_ms, k.from_disk_cache ? "cache" : "nvrtc", ours, dense, dense / ours,
                 lt > 0 ? fmt::format("{:.4f}", lt) : "-", lt > 0 ? fmt::format("{:.2f}x", lt / ours) : "-");
    }
  if (!lt_absent.empty()) fmt::print("cuSPARSELt not measured where '-': {}\n", lt_absent);
  fmt::print("each kernel timed above first matched the float64 reference at its token count on its own shape, "
             "through the launch timed (sampled output rows)\n");
  for (const std::string& f : failed) fmt::print(stderr, "wrong output, not timed: {}\n", f);
  return failed.empty() ? 0 : 1;
}

}  // namespace samoyeds::cli
