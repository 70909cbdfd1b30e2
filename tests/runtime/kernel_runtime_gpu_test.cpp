#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "samoyeds/kernel_runtime.hpp"
#include "test_util/gpu_check.hpp"

namespace samoyeds::test {
namespace {

KernelSpec small_spec() {
  KernelSpec s;
  s.op = Op::Ssmm;
  s.dtype = DType::bf16;
  s.m = 256;
  s.k = 256;
  s.sparsity = {64, 1, 2};
  s.epilogue = Epilogue::Silu;
  return s;
}

TEST(KernelRuntimeGpu, ManyThreadsAskingForOneNewKernelLoadItOnce) {
  SAMOYEDS_REQUIRE_GPU();
  KernelRuntime rt(Device::get(), "none");  // no disk cache: a real NVRTC compile
  const TileConfig cfg{64, 32, 64, 2, 2, 3};
  std::vector<const LoadedKernel*> got(16);
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) threads.emplace_back([&, t] { got[size_t(t)] = &rt.get(small_spec(), cfg); });
  for (auto& t : threads) t.join();
  for (auto* k : got) EXPECT_EQ(k, got[0]);
  EXPECT_EQ(rt.loaded_count(), 1u);
  EXPECT_NE(got[0]->function, nullptr);
  EXPECT_EQ(got[0]->spill_bytes, 0);
}

// The shape and the expert count are launch arguments (not in the source):
// every shape of one source shares one loaded kernel; another dtype does not.
TEST(KernelRuntimeGpu, EveryShapeSharesOneLoadedKernel) {
  SAMOYEDS_REQUIRE_GPU();
  KernelRuntime rt(Device::get(), "none");
  const TileConfig cfg{64, 32, 64, 2, 2, 3};
  KernelSpec a = small_spec(), b = small_spec();
  b.m = 4096;
  b.k = 1024;
  const LoadedKernel& ka = rt.get(a, cfg);
  EXPECT_EQ(&rt.get(b, cfg), &ka);
  EXPECT_EQ(rt.loaded_count(), 1u);
  b.dtype = DType::f16;
  EXPECT_NE(&rt.get(b, cfg), &ka);
  EXPECT_EQ(rt.loaded_count(), 2u);
}

}  // namespace
}  // namespace samoyeds::test
