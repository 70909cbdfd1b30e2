#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds {
namespace {

using test::random_matrix;
using test::rng;

// The decoded matrix obeys the pattern: per segment at most N nonzero rows
// of every M, at most 2 nonzeros in every 4-column chunk.
void expect_pattern(const std::vector<uint16_t>& d, int64_t m, int64_t k, DType dt, const SparsityParams& sp) {
  auto nz = [&](int64_t r, int64_t c) { return r < m && c < k && to_float(dt, d[size_t(r * k + c)]) != 0.0f; };
  for (int64_t r = 0; r < m; ++r)
    for (int64_t c = 0; c < k; c += 4) {
      int count = 0;
      for (int e = 0; e < 4; ++e) count += nz(r, c + e);
      ASSERT_LE(count, 2) << "row " << r << " col " << c;
    }
  for (int64_t g = 0; g * sp.M < m; ++g)
    for (int64_t s = 0; s * sp.V < k; ++s) {
      int rows = 0;
      for (int i = 0; i < sp.M; ++i) {
        bool any = false;
        for (int64_t c = s * sp.V; c < (s + 1) * sp.V; ++c) any |= nz(g * sp.M + i, c);
        rows += any;
      }
      ASSERT_LE(rows, sp.N) << "group " << g << " segment " << s;
    }
}

struct Params {
  SparsityParams sp;
  int64_t m, k;
};
std::vector<Params> random_params(int count) {
  std::vector<Params> out;
  const int vs[] = {32, 64, 128, 256};
  for (int i = 0; i < count; ++i) {
    SparsityParams sp;
    sp.V = vs[rng()() % 4];
    sp.M = 1 + int(rng()() % 8);
    sp.N = 1 + int(rng()() % sp.M);
    out.push_back({sp, 1 + int64_t(rng()() % 70), 1 + int64_t(rng()() % 600)});
  }
  return out;
}

TEST(Pack, MagnitudePruningYieldsThePatternAndKeepsOriginalValues) {
  for (const auto& p : random_params(40)) {
    const DType dt = rng()() % 2 ? DType::f16 : DType::bf16;
    SCOPED_TRACE(fmt::format("{} m{} k{}", p.sp.to_string(), p.m, p.k));
    auto dense = random_matrix(p.m, p.k, dt);
    PackedWeights pw = pack_weights(dense.data(), p.m, p.k, dt, p.sp);
    EXPECT_NO_THROW(validate_packed(pw));
    auto dec = decode_weights(pw);
    ASSERT_EQ(dec.size(), dense.size());
    expect_pattern(dec, p.m, p.k, dt, p.sp);
    for (size_t i = 0; i < dec.size(); ++i)
      if (dec[i] != 0) {
        ASSERT_EQ(dec[i], dense[i]) << "decoded value differs from the original at " << i;
      }
    EXPECT_GT(pw.retained_magnitude, 0.0);
    EXPECT_LE(pw.retained_magnitude, 1.0 + 1e-12);
  }
}

// Magnitude pruning written again from the format's definition, sharing
// nothing with format/pack.cpp: per group of M rows and segment of V
// columns, each row keeps the two largest magnitudes of every 4 columns;
// the N rows whose kept values have the largest L2 norm keep them (ties to
// the lower row), the others keep nothing there. Returns, per entry of the
// [m, k] matrix, whether it is kept. Entries past m or k count as zero.
std::vector<bool> must_keep(const std::vector<float>& w, int64_t m, int64_t k, const SparsityParams& sp) {
  std::vector<bool> keep(size_t(m * k), false);
  auto at = [&](int64_t r, int64_t c) { return r < m && c < k ? double(w[size_t(r * k + c)]) : 0.0; };
  for (int64_t g = 0; g * sp.M < m; ++g)
    for (int64_t s = 0; s * sp.V < k; ++s) {
      std::vector<std::vector<std::pair<int64_t, int64_t>>> kept(size_t(sp.M));
      std::vector<double> norm(size_t(sp.M), 0.0);
      for (int i = 0; i < sp.M; ++i) {
        const int64_t r = g * sp.M + i;
        for (int64_t c0 = s * sp.V; c0 < (s + 1) * sp.V; c0 += 4) {
          int64_t idx[4] = {c0, c0 + 1, c0 + 2, c0 + 3};
          std::stable_sort(idx, idx + 4, [&](int64_t a, int64_t b) { return std::fabs(at(r, a)) > std::fabs(at(r, b)); });
          for (int j = 0; j < 2; ++j) {
            kept[size_t(i)].push_back({r, idx[j]});
            norm[size_t(i)] += at(r, idx[j]) * at(r, idx[j]);
          }
        }
      }
      std::vector<int> rows(size_t(sp.M));
      for (int i = 0; i < sp.M; ++i) rows[size_t(i)] = i;
      std::stable_sort(rows.begin(), rows.end(), [&](int a, int b) { return norm[size_t(a)] > norm[size_t(b)]; });
      for (int j = 0; j < sp.N; ++j)
        for (const auto& [r, c] : kept[size_t(rows[size_t(j)])])
          if (r < m && c < k) keep[size_t(r * k + c)] = true;
    }
  return keep;
}

// Exactly the entries magnitude pruning must keep are kept, with their
// original values, and on whole groups and segments their count is the
// pattern's capacity (N/M of the rows, half of each kept row). Distinct
// magnitudes (a shuffled ladder, exact in the dtype) leave no tie to break.
TEST(Pack, KeepsExactlyTheEntriesMagnitudePruningMustKeep) {
  struct Case {
    int64_t m, k;
    SparsityParams sp;
    DType dt;
  };
  const Case cases[] = {{64, 256, {128, 1, 2}, DType::bf16}, {48, 128, {64, 2, 4}, DType::f16},
                        {40, 192, {32, 3, 8}, DType::f16},   {32, 256, {256, 2, 2}, DType::bf16},
                        {37, 200, {64, 1, 2}, DType::f16},   {23, 72, {32, 2, 3}, DType::bf16}};
  for (const Case& c : cases) {
    SCOPED_TRACE(fmt::format("{}x{} {} {}", c.m, c.k, c.sp.to_string(), dtype_name(c.dt)));
    // Distinct magnitudes: consecutive positive bit patterns of the dtype
    // (normal numbers for up to 16384 entries), shuffled, some negated.
    const int64_t n = c.m * c.k;
    const uint16_t first = c.dt == DType::f16 ? 0x1000 : 0x3000;
    std::vector<int64_t> ladder(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) ladder[size_t(i)] = i;
    std::shuffle(ladder.begin(), ladder.end(), test::rng());
    std::vector<uint16_t> bits(static_cast<size_t>(n));
    std::vector<float> w(static_cast<size_t>(n));
    std::set<float> magnitudes;
    for (int64_t i = 0; i < n; ++i) {
      bits[size_t(i)] = uint16_t((first + ladder[size_t(i)]) | (i % 3 == 0 ? 0x8000 : 0));
      w[size_t(i)] = to_float(c.dt, bits[size_t(i)]);
      magnitudes.insert(std::fabs(w[size_t(i)]));
    }
    ASSERT_EQ(int64_t(magnitudes.size()), n) << "the magnitudes must be distinct";
    const std::vector<bool> want = must_keep(w, c.m, c.k, c.sp);
    const std::vector<uint16_t> got = decode_weights(pack_weights(bits.data(), c.m, c.k, c.dt, c.sp));
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      const bool nonzero = to_float(c.dt, got[size_t(i)]) != 0.0f;
      ASSERT_EQ(nonzero, bool(want[size_t(i)])) << "entry (" << i / c.k << ", " << i % c.k << ")";
      if (nonzero) ASSERT_EQ(got[size_t(i)], bits[size_t(i)]) << "a kept value changed";
      kept += nonzero;
    }
    if (c.m % c.sp.M == 0 && c.k % c.sp.V == 0) EXPECT_EQ(kept, c.m / c.sp.M * c.sp.N * c.k / 2);
  }
}

TEST(Pack, WeightsAlreadyInPatternRoundTripExactlyInBothModes) {
  for (const auto& p : random_params(40)) {
    const DType dt = rng()() % 2 ? DType::f16 : DType::bf16;
    SCOPED_TRACE(fmt::format("{} m{} k{}", p.sp.to_string(), p.m, p.k));
    auto dense = random_matrix(p.m, p.k, dt);
    auto sparse = decode_weights(pack_weights(dense.data(), p.m, p.k, dt, p.sp));
    for (PackMode mode : {PackMode::Strict, PackMode::Magnitude}) {
      PackedWeights again = pack_weights(sparse.data(), p.m, p.k, dt, p.sp, mode);
      EXPECT_EQ(decode_weights(again), sparse);
      EXPECT_NEAR(again.retained_magnitude, 1.0, 1e-12);
    }
  }
}

TEST(Pack, KeepsTheLargerRowOfEachGroupPerSegment) {
  // 2 rows, 1:2, V=32: row 1 larger in segment 0, row 0 larger in segment 1.
  const int64_t m = 2, k = 64;
  std::vector<uint16_t> w(m * k);
  for (int64_t c = 0; c < k; ++c) {
    const bool first = c < 32;
    w[size_t(c)] = float_to_bf16_bits(first ? 0.5f : 3.0f);
    w[size_t(k + c)] = float_to_bf16_bits(first ? 2.0f : 0.25f);
  }
  PackedWeights pw = pack_weights(w.data(), m, k, DType::bf16, {32, 1, 2});
  EXPECT_EQ(pw.sel[0], 1);
  EXPECT_EQ(pw.sel[1], 0);
  auto dec = decode_weights(pw);
  EXPECT_EQ(dec[0], 0);                            // row 0 pruned in segment 0
  EXPECT_EQ(dec[size_t(k + 0)], w[size_t(k)]);     // row 1 kept there
  EXPECT_EQ(dec[40], w[40]);                       // row 0 kept in segment 1
  EXPECT_NEAR(pw.retained_magnitude, (2.0 * 16 + 3.0 * 16) / (0.5 * 32 + 2 * 32 + 3 * 32 + 0.25 * 32), 1e-9);
}

TEST(Pack, StrictRejectsThreeNonzerosInAChunkNamingTheCoordinates) {
  const int64_t m = 4, k = 64;
  std::vector<uint16_t> w(m * k, 0);
  w[size_t(2 * k + 36)] = w[size_t(2 * k + 37)] = w[size_t(2 * k + 39)] = float_to_half_bits(1.0f);
  try {
    pack_weights(w.data(), m, k, DType::f16, {32, 2, 2}, PackMode::Strict);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::PatternViolation);
    EXPECT_NE(std::string(e.what()).find("row 2, columns 36..39"), std::string::npos) << e.what();
  }
}

TEST(Pack, StrictRejectsTooManyRowsInAGroupSegment) {
  const int64_t m = 4, k = 64;
  std::vector<uint16_t> w(m * k, 0);
  w[size_t(0 * k + 40)] = w[size_t(1 * k + 41)] = float_to_bf16_bits(-1.0f);
  try {
    pack_weights(w.data(), m, k, DType::bf16, {32, 1, 2}, PackMode::Strict);
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::PatternViolation);
    EXPECT_NE(std::string(e.what()).find("rows {0, 1} of group 0"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("columns 32..63"), std::string::npos) << e.what();
  }
}

TEST(Pack, RejectsNanAndInfWithCoordinates) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    auto w = random_matrix(6, 40, DType::f16);
    w[size_t(3 * 40 + 17)] = float_to_half_bits(bad);
    try {
      pack_weights(w.data(), 6, 40, DType::f16, {32, 1, 2});
      FAIL() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::NonFiniteInput);
      EXPECT_NE(std::string(e.what()).find("[3, 17]"), std::string::npos) << e.what();
    }
  }
}

TEST(Pack, RejectsBadParametersAndShapes) {
  auto w = random_matrix(8, 64, DType::bf16);
  for (SparsityParams sp : {SparsityParams{48, 1, 2}, SparsityParams{128, 3, 2}, SparsityParams{128, 1, 9},
                            SparsityParams{128, 0, 2}}) {
    EXPECT_THROW(pack_weights(w.data(), 8, 64, DType::bf16, sp), Error) << sp.to_string();
  }
  EXPECT_THROW(pack_weights(w.data(), 0, 64, DType::bf16, {}), Error);
  EXPECT_THROW(pack_weights(w.data(), 8, -1, DType::bf16, {}), Error);
  EXPECT_THROW(pack_weights(nullptr, 8, 64, DType::bf16, {}), Error);
}

TEST(Pack, PaddingIsInvisibleToTheCaller) {
  auto w = random_matrix(7, 40, DType::bf16);
  PackedWeights pw = pack_weights(w.data(), 7, 40, DType::bf16, {32, 1, 2});
  EXPECT_EQ(pw.m_pad, 8);
  EXPECT_EQ(pw.k_pad, 64);
  EXPECT_EQ(decode_weights(pw).size(), size_t(7 * 40));
}

TEST(Pack, OneOfTwoPayloadIsUnderThirtyPercentOfDense) {
  const int64_t m = 1024, k = 1024;
  auto w = random_matrix(m, k, DType::bf16);
  PackedWeights pw = pack_weights(w.data(), m, k, DType::bf16, {128, 1, 2});
  const double ratio = double(pw.payload_bytes()) / double(m * k * 2);
  EXPECT_LE(ratio, 0.29);
  EXPECT_GE(ratio, 0.28);  // values 0.25 + metadata 1/32 + selectors
}

TEST(Pack, ValidateCatchesCorruptedSelectorsAndMetadata) {
  auto w = random_matrix(8, 64, DType::f16);
  PackedWeights pw = pack_weights(w.data(), 8, 64, DType::f16, {32, 2, 4});
  PackedWeights bad_sel = pw;
  std::swap(bad_sel.sel[0], bad_sel.sel[1]);
  EXPECT_THROW(validate_packed(bad_sel), Error);
  PackedWeights bad_meta = pw;
  bad_meta.meta[0] = 0;  // pairs (0,0): undefined on the hardware
  EXPECT_THROW(validate_packed(bad_meta), Error);
  PackedWeights bad_size = pw;
  bad_size.values.pop_back();
  EXPECT_THROW(validate_packed(bad_size), Error);
}

}  // namespace
}  // namespace samoyeds
