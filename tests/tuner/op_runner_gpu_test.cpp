// The tuner's runner on real shapes (tuner/op_runner.hpp): its check at a
// bucket passes the configs dispatch runs, grouped over many experts with
// more tiles than SMs and one expert alike, and the dense baseline's
// cublasLt plans take the grouped batch's unaligned expert slices.
#include <gtest/gtest.h>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "samoyeds/config_selector.hpp"
#include "test_util/gpu_check.hpp"
#include "tuner/op_runner.hpp"

namespace samoyeds::test {
namespace {

KernelSpec grouped_spec(Op op, int64_t m, int64_t k, int experts, Epilogue epi) {
  KernelSpec s;
  s.op = op;
  s.arch = Device::get().info().arch();
  s.dtype = DType::bf16;
  s.m = m;
  s.k = k;
  s.sparsity = {128, 1, 2};
  s.epilogue = epi;
  s.grouped = experts > 1;
  s.experts = experts;
  return s;
}

// Qwen3-30B-A3B's projections (128 experts, top-8) at 8 and 2048 tokens,
// and one Mixtral expert at 300 tokens: each backend's default there passes.
TEST(OpRunnerGpu, TheCheckAtABucketPassesTheDefaultsOnRealShapes) {
  SAMOYEDS_REQUIRE_GPU();
  KernelRuntime& rt = shared_runtime();
  OpRunner runner(rt, 2048, 8);
  const int sms = Device::get().info().sm_count;
  const KernelSpec specs[] = {grouped_spec(Op::GatedUp, 768, 2048, 128, Epilogue::GatedSilu),
                              grouped_spec(Op::Down, 2048, 768, 128, Epilogue::None),
                              grouped_spec(Op::GatedUp, 14336, 4096, 1, Epilogue::GatedSilu)};
  for (const KernelSpec& base : specs)
    for (int64_t tokens : {int64_t(8), int64_t(base.grouped ? 2048 : 300)})
      for (Backend b : all_backends()) {
        KernelSpec spec = base;
        spec.backend = b;
        const KernelFamily& family = kernel_family(b);
        if (family.search_space(spec).empty()) continue;  // wgmma_sp below sm_90a
        const TileConfig cfg = family.default_config(spec, tokens, sms);
        std::string path, why;
        SCOPED_TRACE(fmt::format("{} {} m{} k{} E{} at {} tokens: {}", backend_name(b), op_name(spec.op), spec.m,
                                 spec.k, spec.experts, tokens, cfg.to_string()));
        EXPECT_TRUE(runner.verify_at_bucket(spec, cfg, tokens, &path, &why)) << why;
        EXPECT_NE(path.find(spec.grouped ? "grouped launch over 128 experts" : "one expert"), std::string::npos)
            << path;
        EXPECT_GT(runner.time_ms(spec, cfg, tokens), 0.0);
      }
}

// gpt-oss's rows are 2880 elements: an expert's slice of the grouped batch
// starts 128-byte aligned where it follows an odd number of rows. The
// baseline's plans are made for that alignment instead of failing.
TEST(OpRunnerGpu, TheDenseBaselineTakesUnalignedExpertSlices) {
  SAMOYEDS_REQUIRE_GPU();
  KernelRuntime& rt = shared_runtime();
  OpRunner runner(rt, 64, 4);
  const KernelSpec spec = grouped_spec(Op::GatedUp, 2880, 2880, 32, Epilogue::ClampedSwiglu);
  EXPECT_GT(runner.baseline_ms(spec, 63), 0.0);
  EXPECT_GT(runner.baseline_ms(spec, 8), 0.0);
}

}  // namespace
}  // namespace samoyeds::test
