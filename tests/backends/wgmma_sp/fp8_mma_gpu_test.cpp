// The sparse FP8 warpgroup MMA on the GPU (fp8_mma_probe.hpp): where each
// metadata nibble of each thread lands, read from the hardware, against the
// layout docs/fp8.md states; then random e4m3 operands over two k64 steps
// against a float64 reference built with that layout.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "core/cuda_driver.hpp"
#include "core/kernel_launch.hpp"
#include "format/fp8.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/device.hpp"
#include "tests/backends/wgmma_sp/fp8_mma_probe.hpp"
#include "tests/test_util/gpu_check.hpp"
#include "tests/test_util/random_data.hpp"

namespace samoyeds {
namespace {

using test::fp8_meta_slot;
using test::kFp8ProbeRows;
using test::kFp8ProbeSteps;
using test::kFp8ProbeTokens;

constexpr int kThreads = 128;

// Runs the probe once per block of `meta` ([blocks][2][128] words); returns
// [blocks][64][32] floats.
std::vector<float> run_probe(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b,
                             const std::vector<uint32_t>& meta) {
  Device& dev = Device::get();
  dev.make_current();
  const auto& d = driver();
  const CompiledBinary bin = nvrtc_compile(test::fp8_mma_probe_kernel(), dev.info().arch());
  CUmodule module;
  check(d.cuModuleLoadData(&module, bin.cubin.data()), "cuModuleLoadData(fp8 probe)");
  CUfunction fn;
  check(d.cuModuleGetFunction(&fn, module, "samoyeds_fp8_mma_probe"), "cuModuleGetFunction");
  const unsigned blocks = unsigned(meta.size() / (kFp8ProbeSteps * kThreads));
  const DeviceBuffer da = test::to_device(a), db = test::to_device(b), dm = test::to_device(meta);
  DeviceBuffer dd(size_t(blocks) * kFp8ProbeRows * kFp8ProbeTokens * 4);
  dd.fill_bytes(0xff);  // NaN: a value the probe never wrote shows
  void* pa = da.data();
  void* pb = db.data();
  void* pm = dm.data();
  void* pd = dd.data();
  void* params[] = {&pa, &pb, &pm, &pd};
  check(launch_kernel(dev, fn, LaunchShape{blocks, 1, 1, kThreads, 0}, nullptr, params), "launch fp8 probe");
  dev.synchronize();
  std::vector<float> out = test::from_device<float>(dd, size_t(blocks) * kFp8ProbeRows * kFp8ProbeTokens);
  check(d.cuModuleUnload(module), "cuModuleUnload");
  return out;
}

// Every nibble of every thread, one block each: all metadata picks columns
// (0, 1) of each chunk, where b is zero, except the block's own nibble,
// which picks (2, 3). b's columns 2 and 3 of chunk c hold 2^(c - 8) (every
// power exact in e4m3) and a is all ones, so the block's output is
// 2^(c - 7) at the one row that nibble feeds and zero elsewhere: the row and
// the chunk are read off the output.
TEST(WgmmaSpFp8Gpu, MetadataNibblesFeedTheDocumentedRowsAndChunks) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  std::vector<uint8_t> a(size_t(kFp8ProbeRows) * 128, float_to_e4m3_bits(1.0f));
  std::vector<uint8_t> b(size_t(kFp8ProbeTokens) * 128, 0);
  for (int n = 0; n < kFp8ProbeTokens; ++n)
    for (int c = 0; c < 16; ++c)
      for (int p = 2; p < 4; ++p) b[size_t(n) * 128 + 4 * c + p] = float_to_e4m3_bits(std::ldexp(1.0f, c - 8));
  constexpr uint32_t kLow = 0x44444444u;  // every chunk: lo 0, hi 1
  const int blocks = kThreads * 8;
  std::vector<uint32_t> meta(size_t(blocks) * kFp8ProbeSteps * kThreads, kLow);
  for (int blk = 0; blk < blocks; ++blk) {
    const int thread = blk / 8, nibble = blk % 8;
    uint32_t& w = meta[size_t(blk) * kFp8ProbeSteps * kThreads + thread];  // step 0
    w = (w & ~(0xfu << (4 * nibble))) | (0xeu << (4 * nibble));           // lo 2, hi 3
  }
  const std::vector<float> d = run_probe(a, b, meta);
  int wrong = 0;
  for (int blk = 0; blk < blocks; ++blk) {
    const int thread = blk / 8, nibble = blk % 8;
    // What the output says: each nonzero row, and the chunk its value names
    // (the same at every token, or "mixed").
    std::map<int, std::string> rows;
    for (int r = 0; r < kFp8ProbeRows; ++r)
      for (int n = 0; n < kFp8ProbeTokens; ++n) {
        const float v = d[(size_t(blk) * kFp8ProbeRows + r) * kFp8ProbeTokens + n];
        if (v == 0.0f) continue;
        int e = 0;
        const float m = std::frexp(v, &e);  // v = 2^(c - 7) = 0.5 * 2^(c - 6)
        const std::string what = m == 0.5f ? fmt::format("chunk {}", e + 6) : fmt::format("value {}", v);
        const auto [it, fresh] = rows.emplace(r, what);
        if (!fresh && it->second != what) it->second = "mixed";
        if (n > 0 && fresh) it->second = "not every token";
      }
    const test::Fp8ProbeSlot want = fp8_meta_slot(thread, nibble);
    const bool right = rows.size() == 1 && rows.begin()->first == want.row &&
                       rows.begin()->second == fmt::format("chunk {}", want.chunk);
    if (!right && ++wrong <= 24) {
      std::string seen;
      for (const auto& [r, what] : rows) seen += fmt::format(" row {} ({})", r, what);
      ADD_FAILURE() << fmt::format("thread {} nibble {}: expected row {} chunk {}; the output has{}", thread, nibble,
                                   want.row, want.chunk, seen.empty() ? " nothing" : seen);
    }
  }
  EXPECT_EQ(wrong, 0) << "nibbles that do not feed the documented row and chunk";
}

// Random operands and random 2:4 choices over both k64 steps, the metadata
// written in the documented layout: every output equals the float64
// reference exactly (small values: every partial sum is exact in float32).
TEST(WgmmaSpFp8Gpu, RandomOperandsMatchTheReferenceExactly) {
  SAMOYEDS_REQUIRE_GPU();
  if (Device::get().info().arch() != "sm_90a") GTEST_SKIP() << "sparse wgmma needs sm_90a";
  std::mt19937_64& rng = test::rng();
  const float kValues[] = {0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f};
  std::uniform_int_distribution<int> pick(0, 11);
  auto value = [&] { return float_to_e4m3_bits(kValues[pick(rng)]); };
  std::vector<uint8_t> a(size_t(kFp8ProbeRows) * 128, 0), b(size_t(kFp8ProbeTokens) * 128);
  for (int r = 0; r < kFp8ProbeRows; ++r)
    for (int j = 0; j < 32 * kFp8ProbeSteps; ++j) a[size_t(r) * 128 + j] = value();
  for (uint8_t& v : b) v = value();
  // The kept columns of each (row, step, chunk): one of the six pairs.
  const int kPairs[6][2] = {{0, 1}, {0, 2}, {0, 3}, {1, 2}, {1, 3}, {2, 3}};
  std::uniform_int_distribution<int> pair(0, 5);
  std::vector<int> chosen(size_t(kFp8ProbeRows) * kFp8ProbeSteps * 16);
  for (int& c : chosen) c = pair(rng);
  auto chosen_at = [&](int r, int s, int c) { return chosen[(size_t(r) * kFp8ProbeSteps + s) * 16 + c]; };
  std::vector<uint32_t> meta(size_t(kFp8ProbeSteps) * kThreads, 0);
  for (int s = 0; s < kFp8ProbeSteps; ++s)
    for (int t = 0; t < kThreads; ++t)
      for (int q = 0; q < 8; ++q) {
        const test::Fp8ProbeSlot slot = fp8_meta_slot(t, q);
        const int* p = kPairs[chosen_at(slot.row, s, slot.chunk)];
        meta[size_t(s) * kThreads + t] |= uint32_t(p[0] | p[1] << 2) << (4 * q);
      }
  const std::vector<float> d = run_probe(a, b, meta);
  int wrong = 0;
  for (int r = 0; r < kFp8ProbeRows; ++r)
    for (int n = 0; n < kFp8ProbeTokens; ++n) {
      double want = 0.0;
      for (int s = 0; s < kFp8ProbeSteps; ++s)
        for (int c = 0; c < 16; ++c)
          for (int h = 0; h < 2; ++h) {
            const int col = kPairs[chosen_at(r, s, c)][h];
            want += double(e4m3_bits_to_float(a[size_t(r) * 128 + 32 * s + 2 * c + h])) *
                    double(e4m3_bits_to_float(b[size_t(n) * 128 + 64 * s + 4 * c + col]));
          }
      const float got = d[size_t(r) * kFp8ProbeTokens + n];
      if (double(got) != want && ++wrong <= 16)
        ADD_FAILURE() << fmt::format("row {} token {}: {} where the reference is {}", r, n, got, want);
    }
  EXPECT_EQ(wrong, 0) << "outputs that differ from the reference";
}

}  // namespace
}  // namespace samoyeds
