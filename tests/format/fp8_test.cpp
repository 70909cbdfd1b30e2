// FP8 E4M3 conversion and scaling (format/fp8.hpp) against an oracle written
// here from the format's definition: value = (-1)^s (1 + m/8) 2^(e-7), e = 0
// subnormal m/8 2^-6, S.1111.111 NaN, no infinities; encoding by search over
// every finite code for the nearest, ties to the even mantissa.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include <fmt/format.h>

#include "format/fp8.hpp"
#include "format/fp8_checkpoint.hpp"
#include "format/fp8_pack.hpp"
#include "samoyeds/error.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds::test {
namespace {

double oracle_value(int code) {
  const int s = code >> 7, e = (code >> 3) & 15, m = code & 7;
  const double v = e == 0 ? m / 8.0 * std::ldexp(1.0, -6) : (1.0 + m / 8.0) * std::ldexp(1.0, e - 7);
  return s ? -v : v;
}
bool oracle_nan(int code) { return (code & 0x7F) == 0x7F; }

// The nearest finite code of the value's sign, ties to the even mantissa;
// past the largest, the largest (saturation).
int oracle_encode(double v) {
  const int sign = std::signbit(v) ? 0x80 : 0;
  const double a = std::fabs(v);
  int best = 0;
  double best_d = std::numeric_limits<double>::infinity();
  for (int c = 0; c < 0x7F; ++c) {
    const double d = std::fabs(oracle_value(c) - a);
    if (d < best_d || (d == best_d && (c & 1) == 0)) {
      best = c;
      best_d = d;
    }
  }
  return sign | best;
}

TEST(Fp8, EveryCodeDecodesToItsValueAndEncodesBackToItself) {
  for (int code = 0; code < 256; ++code) {
    const float v = e4m3_bits_to_float(uint8_t(code));
    if (oracle_nan(code)) {
      EXPECT_TRUE(std::isnan(v)) << code;
      EXPECT_EQ(int(float_to_e4m3_bits(v)), code) << "NaN keeps its sign";
      continue;
    }
    EXPECT_EQ(double(v), oracle_value(code)) << code;
    EXPECT_EQ(int(float_to_e4m3_bits(v)), code) << code;
  }
  EXPECT_EQ(e4m3_bits_to_float(0x7E), 448.0f);
  EXPECT_EQ(e4m3_bits_to_float(0x01), std::ldexp(1.0f, -9));
}

// Midpoints between neighbouring codes go to the even one, and a hair to
// either side to the nearer; every float of a dense sweep matches the oracle.
TEST(Fp8, RoundsToNearestEvenAsTheOracle) {
  for (int code = 0; code < 0x7E; ++code) {
    const double lo = oracle_value(code), hi = oracle_value(code + 1);
    const float mid = float((lo + hi) / 2);  // exact: a few bits past e4m3's
    EXPECT_EQ(int(float_to_e4m3_bits(mid)), (code & 1) ? code + 1 : code) << "midpoint after " << code;
    EXPECT_EQ(int(float_to_e4m3_bits(std::nextafter(mid, 0.0f))), code);
    EXPECT_EQ(int(float_to_e4m3_bits(std::nextafter(mid, 1000.0f))), code + 1);
    EXPECT_EQ(int(float_to_e4m3_bits(-mid)), 0x80 | ((code & 1) ? code + 1 : code));
  }
  std::mt19937 gen(7);
  std::uniform_real_distribution<double> log2(-14.0, 9.5);
  for (int i = 0; i < 200000; ++i) {
    const float v = float(std::exp2(log2(gen))) * (i % 2 ? -1.0f : 1.0f);
    ASSERT_EQ(int(float_to_e4m3_bits(v)), oracle_encode(v)) << v;
  }
}

TEST(Fp8, SaturatesPastTheLargestAndKeepsNanAndSignedZero) {
  EXPECT_EQ(float_to_e4m3_bits(448.0f), 0x7E);
  EXPECT_EQ(float_to_e4m3_bits(463.9f), 0x7E);
  EXPECT_EQ(float_to_e4m3_bits(1e6f), 0x7E);
  EXPECT_EQ(float_to_e4m3_bits(-1e6f), 0xFE);
  EXPECT_EQ(float_to_e4m3_bits(std::numeric_limits<float>::infinity()), 0x7E);
  EXPECT_EQ(float_to_e4m3_bits(-std::numeric_limits<float>::infinity()), 0xFE);
  EXPECT_EQ(float_to_e4m3_bits(std::nanf("")), 0x7F);
  EXPECT_EQ(float_to_e4m3_bits(0.0f), 0x00);
  EXPECT_EQ(float_to_e4m3_bits(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3_bits(std::ldexp(1.0f, -11)), 0x00) << "a quarter of the smallest subnormal";
  EXPECT_EQ(float_to_e4m3_bits(std::ldexp(1.0f, -10)), 0x00) << "half of it: ties to even, zero";
  EXPECT_EQ(float_to_e4m3_bits(std::ldexp(1.5f, -10)), 0x01);
}

// Block scales: each 128 x 128 block's largest magnitude comes back as 448
// x scale_inv, scale_inv = amax / 448 in DeepSeek-V3's [ceil(rows/128),
// ceil(cols/128)] order; every weight within half an E4M3 step of itself
// (relative 2^-4 for normals, 2^-10 x 448 x scale_inv below); an all-zero
// block is zeros with scale_inv 1. Per-row scaling the same by rows, and
// activations' 1 x 128 groups by row and group.
TEST(Fp8, BlockRowAndGroupScalesMapEachMaximumTo448AndKeepEveryValueWithinHalfAStep) {
  for (Fp8Scaling scaling : {Fp8Scaling::Block128, Fp8Scaling::PerRow, Fp8Scaling::Group1x128})
    for (DType dt : {DType::bf16, DType::f16}) {
      const int64_t rows = 300, cols = 200;  // partial blocks both ways
      auto w = random_matrix(rows, cols, dt, 0.05f);
      // One block with a wider range, one all zero.
      for (int64_t r = 0; r < 128; ++r)
        for (int64_t c = 128; c < cols; ++c) w[size_t(r * cols + c)] = from_float(dt, to_float(dt, w[size_t(r * cols + c)]) * 40.0f);
      for (int64_t r = 256; r < rows; ++r)
        for (int64_t c = 0; c < 128; ++c) w[size_t(r * cols + c)] = from_float(dt, 0.0f);
      const Fp8Weights q = quantize_e4m3(w.data(), rows, cols, dt, scaling);
      const size_t scales = scaling == Fp8Scaling::Block128 ? 3 * 2
                            : scaling == Fp8Scaling::PerRow ? size_t(rows)
                                                            : size_t(rows) * 2;
      ASSERT_EQ(q.scale_inv.size(), scales);
      const std::vector<float> back = dequantize(q);
      std::vector<float> amax(scales, 0.0f);
      auto scale_index = [&](int64_t r, int64_t c) {
        switch (scaling) {
          case Fp8Scaling::Block128: return size_t(r / 128 * 2 + c / 128);
          case Fp8Scaling::PerRow: return size_t(r);
          case Fp8Scaling::Group1x128: return size_t(r * 2 + c / 128);
        }
        return size_t(0);
      };
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          float& a = amax[scale_index(r, c)];
          a = std::max(a, std::fabs(to_float(dt, w[size_t(r * cols + c)])));
        }
      for (size_t i = 0; i < scales; ++i)
        EXPECT_EQ(q.scale_inv[i], amax[i] > 0.0f ? amax[i] / 448.0f : 1.0f) << "scale " << i;
      std::vector<bool> reached(scales, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const size_t i = size_t(r * cols + c), s = scale_index(r, c);
          const double v = to_float(dt, w[i]), got = back[i], scale = q.scale_inv[s];
          const double step = std::fabs(v) / scale >= 0.015625 ? std::fabs(v) * std::ldexp(1.0, -4)
                                                                : std::ldexp(1.0, -10) * scale;
          ASSERT_LE(std::fabs(got - v), step * 1.0001) << "(" << r << ", " << c << ")";
          if (amax[s] > 0.0f && std::fabs(v) == amax[s]) {
            EXPECT_EQ(q.values[i] & 0x7F, 0x7E) << "the block's largest is 448";
            reached[s] = true;
          }
          if (amax[s] == 0.0f) {
            EXPECT_EQ(got, 0.0);
          }
        }
      for (size_t s = 0; s < scales; ++s) EXPECT_TRUE(reached[s] || amax[s] == 0.0f) << "scale " << s;
    }
}

// The first non-finite weight in row-major order is named (the scan goes
// block by block, which would find (5, 7) first); sizes that do not fit the
// shape or scaling are refused before anything is read.
TEST(Fp8, NonFiniteWeightsBadSizesAndEmptyMatricesAreRefused) {
  for (float bad : {std::numeric_limits<float>::infinity(), std::nanf("")}) {
    std::vector<uint16_t> w(256 * 256, from_float(DType::bf16, 0.5f));
    w[5 * 256 + 7] = from_float(DType::bf16, bad);
    w[0 * 256 + 150] = from_float(DType::bf16, -bad);
    try {
      quantize_e4m3(w.data(), 256, 256, DType::bf16);
      ADD_FAILURE() << "quantized " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::NonFiniteInput);
      EXPECT_NE(std::string(e.what()).find("(0, 150)"), std::string::npos) << e.what();
    }
  }
  std::vector<uint16_t> w(64 * 64, from_float(DType::bf16, 0.5f));
  EXPECT_THROW(quantize_e4m3(w.data(), 0, 64, DType::bf16), Error);
  EXPECT_THROW(quantize_e4m3(nullptr, 64, 64, DType::bf16), Error);
  Fp8Weights q = quantize_e4m3(w.data(), 64, 64, DType::bf16);
  q.scale_inv.push_back(1.0f);
  EXPECT_THROW(dequantize(q), Error);
  EXPECT_THROW(pack_weights_e4m3(q, SparsityParams{128, 1, 2}), Error);
  q.scale_inv.pop_back();
  q.values.pop_back();
  EXPECT_THROW(dequantize(q), Error);
  EXPECT_THROW(pack_weights_e4m3(q, SparsityParams{128, 1, 2}), Error);
}

}  // namespace
}  // namespace samoyeds::test

namespace samoyeds::test {
namespace {

// A checkpoint file of one FP8 weight and its scales (what DeepSeek-V3
// ships), with `edit` applied to the entries or bytes first.
struct Fp8File {
  std::string path;
  Fp8Weights q;
};
Fp8File write_fp8_file(const std::string& tag, const std::function<void(std::vector<SafetensorsEntry>&,
                                                                          std::vector<uint8_t>&, std::vector<float>&)>&
                                                   edit = {}) {
  const int64_t rows = 200, cols = 300;
  const auto w = random_matrix(rows, cols, DType::bf16, 0.02f);
  Fp8File f{(std::filesystem::path(::testing::TempDir()) /
             fmt::format("samoyeds_fp8_{}_{}.safetensors", tag, getpid()))
                .string(),
            quantize_e4m3(w.data(), rows, cols, DType::bf16)};
  std::vector<SafetensorsEntry> entries(2);
  entries[0].name = "layers.0.experts.3.w1.weight";
  entries[0].dtype = "F8_E4M3";
  entries[0].shape = {rows, cols};
  entries[1].name = fp8_scale_name(entries[0].name);
  entries[1].dtype = "F32";
  entries[1].shape = {2, 3};
  std::vector<uint8_t> values = f.q.values;
  std::vector<float> scales = f.q.scale_inv;
  if (edit) edit(entries, values, scales);
  SafetensorsWriter out(f.path, entries);
  out.write(entries[0].name, values.data(), values.size());
  out.write(entries[1].name, scales.data(), scales.size() * 4);
  out.finish();
  return f;
}

TEST(Fp8Checkpoint, WeightsAndBlockScalesLoadAsTheyWereWritten) {
  const Fp8File f = write_fp8_file("ok");
  SafetensorsReader in(f.path);
  const Fp8Weights got = read_fp8_weights(in, "layers.0.experts.3.w1.weight");
  EXPECT_EQ(got.rows, 200);
  EXPECT_EQ(got.cols, 300);
  EXPECT_EQ(got.values, f.q.values);
  EXPECT_EQ(got.scale_inv, f.q.scale_inv);
  EXPECT_EQ(dequantize(got), dequantize(f.q));
  std::filesystem::remove(f.path);
}

// Each refusal names the tensor and what is wrong with it.
TEST(Fp8Checkpoint, WhatTheFp8PathCannotTakeAsItIsIsRefusedNamingTheTensor) {
  const std::string weight = "layers.0.experts.3.w1.weight", scale = fp8_scale_name(weight);
  const struct {
    const char* tag;
    std::function<void(std::vector<SafetensorsEntry>&, std::vector<uint8_t>&, std::vector<float>&)> edit;
    std::string name, says;
  } cases[] = {
      {"f16", [](auto& e, auto& v, auto&) { e[0].dtype = "F16"; v.resize(v.size() * 2); }, weight, "F16, not F8_E4M3"},
      {"e5m2", [](auto& e, auto&, auto&) { e[0].dtype = "F8_E5M2"; }, weight, "F8_E5M2, not F8_E4M3"},
      {"vector", [](auto& e, auto&, auto&) { e[0].shape = {200 * 300}; }, weight, "not a matrix"},
      {"scales_shape", [](auto& e, auto&, auto&) { e[1].shape = {3, 2}; }, scale, "not [2, 3]"},
      {"scales_dtype", [](auto& e, auto&, auto& s) { e[1].dtype = "BF16"; s.resize(3); }, scale, "BF16, not F32"},
      {"nan", [](auto&, auto& v, auto&) { v[1 * 300 + 4] = 0xFF; }, weight, "NaN at (1, 4)"},
      {"zero_scale", [](auto&, auto&, auto& s) { s[4] = 0.0f; }, scale, "block (1, 1)"},
      {"inf_scale", [](auto&, auto&, auto& s) { s[2] = INFINITY; }, scale, "block (0, 2)"},
      {"negative_scale", [](auto&, auto&, auto& s) { s[5] = -1.0f; }, scale, "block (1, 2)"},
      {"nan_scale", [](auto&, auto&, auto& s) { s[0] = NAN; }, scale, "block (0, 0)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.tag);
    const Fp8File f = write_fp8_file(c.tag, c.edit);
    SafetensorsReader in(f.path);
    try {
      read_fp8_weights(in, weight);
      ADD_FAILURE() << "read";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), std::string(c.tag) == "nan" ? ErrorCode::NonFiniteInput : ErrorCode::InvalidArgument);
      const std::string what = e.what();
      EXPECT_NE(what.find(c.name), std::string::npos) << what;
      EXPECT_NE(what.find(c.says), std::string::npos) << what;
    }
    std::filesystem::remove(f.path);
  }
  // No scales at all.
  const int64_t rows = 8, cols = 8;
  const std::string lone = (std::filesystem::path(::testing::TempDir()) /
                            fmt::format("samoyeds_fp8_lone_{}.safetensors", getpid()))
                               .string();
  std::vector<SafetensorsEntry> entries(1);
  entries[0].name = weight;
  entries[0].dtype = "F8_E4M3";
  entries[0].shape = {rows, cols};
  std::vector<uint8_t> values(size_t(rows * cols), 0x38);
  SafetensorsWriter out(lone, entries);
  out.write(weight, values.data(), values.size());
  out.finish();
  SafetensorsReader in(lone);
  try {
    read_fp8_weights(in, weight);
    ADD_FAILURE() << "read without scales";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(scale + ": missing"), std::string::npos) << e.what();
  }
  std::filesystem::remove(lone);
}

}  // namespace
}  // namespace samoyeds::test

namespace samoyeds::test {
namespace {

// Packed from 16-bit weights: the same selection as the 16-bit packing
// (selectors and metadata equal), each kept value within half an E4M3 step
// of the 16-bit one at its block's scale, which maps the block's largest
// kept value to 448; and at 1:2 x 2:4 the payload is at most 0.16x the dense
// bf16 bytes (the goal).
TEST(Fp8Pack, FromSixteenBitWeightsKeepsTheSixteenBitSelectionAndEachValueWithinHalfAStep) {
  for (const SparsityParams sp : {SparsityParams{128, 1, 2}, SparsityParams{64, 2, 4}, SparsityParams{32, 1, 1}}) {
    SCOPED_TRACE(sp.to_string());
    const int64_t m = 300, k = 520;  // partial blocks, padded rows and columns
    auto w = random_matrix(m, k, DType::bf16, 0.03f);
    // A kept value far below its block's smallest step, negative: row 0 wins
    // its group's first segment (the others are zero there), and its first
    // chunk keeps 0.05 and -1e-9. It must become code 0, not -0.
    for (int64_t r = 1; r < sp.M; ++r)
      for (int64_t c = 0; c < sp.V; ++c) w[size_t(r * k + c)] = from_float(DType::bf16, 0.0f);
    const float chunk[4] = {0.05f, -1e-9f, 0.0f, 0.0f};
    for (int c = 0; c < 4; ++c) w[size_t(c)] = from_float(DType::bf16, chunk[c]);
    const PackedWeights p16 = pack_weights(w.data(), m, k, DType::bf16, sp);
    const PackedFp8Weights p8 = pack_weights_e4m3(w.data(), m, k, DType::bf16, sp);
    EXPECT_EQ(p8.selection.sel, p16.sel);
    EXPECT_EQ(p8.selection.meta, p16.meta);
    ASSERT_EQ(p8.values.size(), p16.values.size());
    EXPECT_EQ(std::count(p8.values.begin(), p8.values.end(), uint8_t(0x80)), 0) << "a -0 code";
    const std::vector<uint16_t> dense16 = decode_weights(p16);
    const std::vector<float> dense8 = decode_weights(p8);
    const int64_t block_cols = (k + 127) / 128;
    std::vector<float> amax(p8.scale_inv.size(), 0.0f);
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c) {
        float& a = amax[size_t(r / 128 * block_cols + c / 128)];
        a = std::max(a, std::fabs(to_float(DType::bf16, dense16[size_t(r * k + c)])));
      }
    for (size_t b = 0; b < amax.size(); ++b) EXPECT_EQ(p8.scale_inv[b], amax[b] > 0 ? amax[b] / 448.0f : 1.0f) << b;
    for (int64_t r = 0; r < m; ++r)
      for (int64_t c = 0; c < k; ++c) {
        const double v = to_float(DType::bf16, dense16[size_t(r * k + c)]), got = dense8[size_t(r * k + c)];
        const double scale = p8.scale_inv[size_t(r / 128 * block_cols + c / 128)];
        if (v == 0.0) {
          ASSERT_EQ(got, 0.0) << "(" << r << ", " << c << ") was pruned";
          continue;
        }
        const double step = std::fabs(v) / scale >= 0.015625 ? std::fabs(v) * std::ldexp(1.0, -4)
                                                              : std::ldexp(1.0, -10) * scale;
        ASSERT_LE(std::fabs(got - v), step * 1.0001) << "(" << r << ", " << c << ")";
      }
  }
  const int64_t m = 2048, k = 4096;
  const auto w = random_matrix(m, k, DType::bf16);
  const PackedFp8Weights big = pack_weights_e4m3(w.data(), m, k, DType::bf16, SparsityParams{128, 1, 2});
  const double ratio = double(big.payload_bytes()) / double(m * k * 2);
  EXPECT_LE(ratio, 0.16) << "packed FP8 bytes over dense bf16 bytes";
  EXPECT_GT(ratio, 0.15);
}

// From an FP8 checkpoint: the kept codes and the block scales are the
// checkpoint's own (nothing re-quantized), every other weight zero; the
// selection is the 16-bit packing's of the codes, which order as the values
// do inside a block. Strict refuses weights outside the pattern.
TEST(Fp8Pack, FromAnFp8CheckpointKeepsItsCodesAndScales) {
  const int64_t m = 256, k = 384;
  // Magnitudes of 0.01 and up: none quantizes to a zero code, so the kept
  // weights are exactly the nonzero ones after decoding.
  auto w = random_matrix(m, k, DType::bf16, 0.03f);
  for (auto& v : w) {
    const float f = to_float(DType::bf16, v);
    v = from_float(DType::bf16, std::copysign(0.01f + std::fabs(f), f));
  }
  const Fp8Weights fp8 = quantize_e4m3(w.data(), m, k, DType::bf16);
  const PackedFp8Weights p = pack_weights_e4m3(fp8, SparsityParams{128, 1, 2});
  EXPECT_EQ(p.scale_inv, fp8.scale_inv);
  // The 16-bit packing's selection of the codes, each widened to bf16 by value.
  std::vector<uint16_t> widened(fp8.values.size());
  for (size_t i = 0; i < widened.size(); ++i) widened[i] = from_float(DType::bf16, e4m3_bits_to_float(fp8.values[i]));
  const PackedWeights p16 = pack_weights(widened.data(), m, k, DType::bf16, SparsityParams{128, 1, 2});
  EXPECT_EQ(p.selection.sel, p16.sel);
  EXPECT_EQ(p.selection.meta, p16.meta);
  const std::vector<float> full = dequantize(fp8), kept = decode_weights(p);
  int64_t n_kept = 0;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] == 0.0f) continue;
    ASSERT_EQ(kept[i], full[i]) << "entry " << i << " changed";
    ++n_kept;
  }
  EXPECT_EQ(n_kept, m / 2 * k / 2) << "1:2 rows x 2:4: a quarter kept (no weight is zero here)";
  // The packed weights, as a checkpoint already in the pattern, pass Strict.
  Fp8Weights pruned = fp8;
  for (size_t i = 0; i < kept.size(); ++i)
    if (kept[i] == 0.0f) pruned.values[i] = 0;
  const PackedFp8Weights strict = pack_weights_e4m3(pruned, SparsityParams{128, 1, 2}, PackMode::Strict);
  EXPECT_EQ(strict.values, p.values);
  EXPECT_EQ(strict.selection.sel, p.selection.sel);
  EXPECT_EQ(strict.selection.meta, p.selection.meta);
  EXPECT_THROW(pack_weights_e4m3(fp8, SparsityParams{128, 1, 2}, PackMode::Strict), Error);
}

// Strict from 16-bit weights (the layer's strict FP8 experts): weights
// already in the pattern pack as magnitude pruning packs them, bit for bit;
// one extra nonzero outside it is refused as a pattern violation.
TEST(Fp8Pack, StrictFromSixteenBitWeightsVerifiesThenQuantizesAsMagnitudeDoes) {
  const int64_t m = 256, k = 384;
  const SparsityParams sp{128, 1, 2};
  const auto w = random_matrix(m, k, DType::bf16, 0.05f);
  const PackedWeights p16 = pack_weights(w.data(), m, k, DType::bf16, sp);
  std::vector<uint16_t> pruned = decode_weights(p16);  // the dense matrix of what magnitude pruning kept
  const PackedFp8Weights magnitude = pack_weights_e4m3(pruned.data(), m, k, DType::bf16, sp);
  const PackedFp8Weights strict = pack_weights_e4m3(pruned.data(), m, k, DType::bf16, sp, PackMode::Strict);
  EXPECT_EQ(strict.values, magnitude.values);
  EXPECT_EQ(strict.scale_inv, magnitude.scale_inv);
  EXPECT_EQ(strict.selection.sel, magnitude.selection.sel);
  EXPECT_EQ(strict.selection.meta, magnitude.selection.meta);
  size_t dropped = 0;
  while (to_float(DType::bf16, pruned[dropped]) != 0.0f) ++dropped;  // a pruned entry: nonzero, it breaks the pattern
  pruned[dropped] = from_float(DType::bf16, 0.5f);
  try {
    pack_weights_e4m3(pruned.data(), m, k, DType::bf16, sp, PackMode::Strict);
    ADD_FAILURE() << "a weight outside the pattern was packed";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::PatternViolation) << e.what();
  }
}

TEST(Fp8Pack, PatternsCrossingTheScaleBlocksAreRefused) {
  const auto w = random_matrix(96, 512, DType::bf16);
  for (const SparsityParams sp : {SparsityParams{256, 1, 2}, SparsityParams{128, 2, 3}}) {
    try {
      pack_weights_e4m3(w.data(), 96, 512, DType::bf16, sp);
      ADD_FAILURE() << sp.to_string() << " packed";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::InvalidArgument);
      EXPECT_NE(std::string(e.what()).find("divide 128"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace samoyeds::test
