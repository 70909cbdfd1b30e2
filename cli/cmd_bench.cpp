// samoyeds bench: a model's expert kernels as dispatch would run them (tuned
// record, nearest bucket or heuristic), how long loading each took in this
// process, and their time against cuBLAS measured beside them.
#include <cstdio>

#include <fmt/format.h>

#include "core/cli_args.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/op_runner.hpp"

namespace samoyeds::cli {

int cmd_bench(const std::vector<std::string>& argv) {
  if (print_help_if_asked(argv,
                          "usage: samoyeds bench --model NAME|FILE [--tokens 16,64,1024] [--dtype bf16|f16] "
                          "[--rows 1:2]\n"
                          "                      [--segment 128] [--cache FILE]\n"))
    return 0;
  Args args(argv, {"--model", "--tokens", "--dtype", "--rows", "--segment", "--cache"}, {});
  if (!args.has("--model")) throw Error(ErrorCode::InvalidArgument, "bench needs --model");
  const ModelPreset model = load_model(args.get("--model", ""));
  const std::vector<int64_t> tokens = parse_int_list(args.get("--tokens", "16,64,256,1024,4096"), "--tokens", 1);
  const SparsityParams sp = SparsityParams::from_rows(args.get("--rows", "1:2"), std::stoi(args.get("--segment", "128")));
  std::string why;
  if (!gpu_available(&why)) throw Error(ErrorCode::CudaError, "bench needs a GPU: " + why);
  KernelRuntime rt(Device::get(), args.get("--cache", default_cache_path()));
  int64_t max_tokens = 1;
  for (int64_t t : tokens) max_tokens = std::max(max_tokens, t);
  OpRunner runner(rt, max_tokens, model.top_k);  // the routed experts run grouped, as in the layer
  const DType dt = parse_dtype(args.get("--dtype", "bf16"));
  fmt::print("{} on {}\n", model.display_name, runner.device().to_string());
  fmt::print("{:<9} {:>13} {:>6} {:<26} {:<22} {:>8} {:>5} {:>8} {:>9} {:>8} {:>8} {:>8}\n", "op", "m x k", "tokens",
             "config", "chosen by", "load ms", "from", "ours ms", "cuBLAS ms", "/cuBLAS", "cuSPLt", "/cuSPLt");
  std::string lt_absent;
  for (const KernelSpec& spec : model_expert_specs(model, rt.device().info().arch(), dt, sp))
    for (int64_t n : tokens) {
      const ConfigChoice choice = rt.choose_config(spec, n);
      KernelSpec chosen = spec;
      chosen.backend = choice.backend;
      const LoadedKernel& k = rt.get(chosen, choice.config);
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
  return 0;
}

}  // namespace samoyeds::cli
