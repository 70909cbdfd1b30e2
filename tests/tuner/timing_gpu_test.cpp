// The benchmark timing's back-to-back mode (tuner/timing.hpp): every launch of
// a held batch runs, in order, and a launch that waits on its own stream
// ends in an error instead of a hang. (What the mode does to the times is the
// benchmarks' business, not a test's.)
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"
#include "test_util/gpu_check.hpp"
#include "tuner/timing.hpp"

namespace samoyeds::test {
namespace {

struct Stream {
  CUstream s = nullptr;
  Stream() { check(driver().cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate"); }
  ~Stream() { driver().cuStreamDestroy(s); }
};

TEST(TimingGpu, BackToBackBatchesRunEveryLaunchInOrder) {
  SAMOYEDS_REQUIRE_GPU();
  Device::get().make_current();
  // The benchmarks rely on it on the GPUs we measure on.
  ASSERT_TRUE(tuning::can_hold_stream()) << "this driver cannot hold a stream (cuStreamWaitValue32)";
  Stream st;
  constexpr int kWarmup = 2, kBatch = 6, kBatches = 3, kLaunches = kWarmup + kBatch * kBatches;
  DeviceBuffer buf(kLaunches * 2 * sizeof(uint32_t));
  buf.fill_bytes(0);
  const auto base = reinterpret_cast<CUdeviceptr>(buf.data());
  int calls = 0;
  // The c-th call writes c + 1 into word c, then copies word c into word kLaunches + c: the copy sees the write
  // only if the stream ran them in order. (Calls, not launch(i)'s i: the warm-up's i restart at 0.)
  const double ms = tuning::median_ms(st.s, [&](int) {
    const int i = calls++;
    check(driver().cuMemsetD32Async(base + 4 * i, uint32_t(i + 1), 1, st.s), "cuMemsetD32Async");
    check(driver().cuMemcpyDtoDAsync(base + 4 * (kLaunches + i), base + 4 * i, 4, st.s), "cuMemcpyDtoDAsync");
  }, kBatch, kBatches, kWarmup, tuning::Launches::BackToBack);
  check(driver().cuStreamSynchronize(st.s), "cuStreamSynchronize");
  EXPECT_EQ(calls, kLaunches);
  EXPECT_GT(ms, 0.0);
  std::vector<uint32_t> got(2 * kLaunches);
  buf.download(got.data(), got.size() * 4);
  for (int i = 0; i < kLaunches; ++i) {
    EXPECT_EQ(got[size_t(i)], uint32_t(i + 1)) << "launch " << i;
    EXPECT_EQ(got[size_t(kLaunches + i)], uint32_t(i + 1)) << "launch " << i << "'s copy";
  }
}

TEST(TimingGpu, ALaunchThatWaitsOnItsHeldStreamIsAnErrorNotAHang) {
  SAMOYEDS_REQUIRE_GPU();
  Device::get().make_current();
  if (!tuning::can_hold_stream()) GTEST_SKIP() << "this driver cannot hold a stream";
  Stream st;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    tuning::median_ms(st.s, [&](int) { check(driver().cuStreamSynchronize(st.s), "cuStreamSynchronize"); }, 1, 1, 0,
                      tuning::Launches::BackToBack);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("waited on its own stream"), std::string::npos) << e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 10.0) << "the watchdog opens the gate after about a second";
  // The stream is usable afterwards.
  check(driver().cuStreamSynchronize(st.s), "cuStreamSynchronize");
}

}  // namespace
}  // namespace samoyeds::test
