// The TMA maps of the wgmma_sp kernels, checked without a GPU: every shape
// the packed layout produces must stay inside cuTensorMapEncodeTiled's
// documented limits (a refused encode only shows on a GPU, at launch), and
// the boxes must carry exactly what the generated kernel's producer expects.
#include <gtest/gtest.h>

#include "format/device_layout.hpp"
#include "backends/wgmma_sp/tma_weight_maps.hpp"

namespace samoyeds {
namespace {

const void* at(uintptr_t a) { return reinterpret_cast<const void*>(a); }

TEST(TmaWeightMaps, EveryPackedShapeAndTileIsWithinTheEncodersLimits) {
  const PackedWeightView w{at(0x100000), at(0x200000), at(0x300000)};
  struct Shape {
    int64_t m, k;
  };
  int checked = 0;
  for (const Shape& sh : {Shape{14336, 4096}, Shape{4096, 14336}, Shape{1408, 2048}, Shape{33, 64}, Shape{200, 136}})
    for (int V : {32, 64, 128, 256})
      for (auto [N, M] : {std::pair{1, 2}, std::pair{2, 4}, std::pair{1, 4}, std::pair{1, 1}})
        for (int64_t experts : {1, 8, 128})
          for (int bm : {64, 128})
            for (int multicast : {1, 2}) {
              WeightMapShape s;
              s.experts = experts;
              const int64_t rows = sh.m * N / M;
              s.rows_pad = (rows + DeviceLayout::kRowAlign - 1) / DeviceLayout::kRowAlign * DeviceLayout::kRowAlign;
              const int64_t k_align = std::max<int64_t>(V, DeviceLayout::kKAlign);
              s.k_phys = (sh.k + k_align - 1) / k_align * k_align;
              s.V = V;
              s.block_m = bm;
              s.block_k = 128;
              s.multicast = multicast;
              const auto maps = describe_weight_maps(w, s);
              int64_t box_bytes = 0;
              for (const auto& m : maps) {
                EXPECT_EQ(tensor_map_problem(m), std::nullopt)
                    << m.what << ", m " << sh.m << " k " << sh.k << " V " << V << " " << N << ":" << M << " E "
                    << experts << " bm " << bm << " multicast " << multicast << ": "
                    << tensor_map_problem(m).value_or("");
                // Every block of a multicast cluster sends its share of values and metadata to all of them.
                box_bytes += m.box.bytes() * (&m == &maps[2] ? 1 : multicast);
              }
              // What lands in a stage is what the producer expects, and the same with or without multicast.
              EXPECT_EQ(box_bytes, weight_tma_boxes(bm, 128, V, multicast).stage_bytes());
              EXPECT_EQ(box_bytes, weight_tma_boxes(bm, 128, V).stage_bytes());
              EXPECT_EQ(maps[0].box.rows, uint32_t(bm / multicast));
              // The maps span every expert's rows, metadata tiles and segments.
              EXPECT_EQ(maps[0].rows, uint64_t(experts * s.rows_pad));
              EXPECT_EQ(maps[1].rows * 16, uint64_t(experts * s.rows_pad));
              EXPECT_EQ(maps[2].rows, uint64_t(experts * (s.k_phys / V)));
              ++checked;
            }
  EXPECT_EQ(checked, 5 * 4 * 4 * 3 * 2 * 2);
}

// The token map of an _xt kernel: rows of exactly k values (any k the ops
// accept, i.e. a multiple of 8), one 128-byte column per box, block_n rows.
TEST(TmaWeightMaps, TokenMapsOfEveryAcceptedWidthAreWithinTheEncodersLimits) {
  for (int64_t k : {8, 136, 392, 1408, 2048, 4096, 14336})
    for (int64_t rows : {1, 37, 4096, 6 * 4096})
      for (int bn : {32, 64, 128}) {
        const TensorMap2d m = describe_token_map(at(0x400000), rows, k, bn);
        EXPECT_EQ(tensor_map_problem(m), std::nullopt) << "k " << k << " rows " << rows << " bn " << bn << ": "
                                                       << tensor_map_problem(m).value_or("");
        EXPECT_TRUE(m.swizzle_128b);
        EXPECT_EQ(m.cols, uint64_t(k));  // columns past k arrive as zeros, never the next row's values
        EXPECT_EQ(m.rows, uint64_t(rows));
        EXPECT_EQ(m.box.cols * m.box.elem_bytes, 128u);  // one swizzle atom column of the B tile
        EXPECT_EQ(m.box.rows, uint32_t(bn));
        // Two boxes per 128-wide k-tile fill the B tile: block_n x 128 values x 2 bytes.
        EXPECT_EQ(2 * m.box.bytes(), int64_t(bn) * 128 * 2);
      }
  // A width the ops reject (k % 8 != 0) is named as a stride problem, not sent to the driver.
  EXPECT_NE(tensor_map_problem(describe_token_map(at(0x400000), 64, 100, 64)).value_or("").find("stride"),
            std::string::npos);
}

// The output map of a kernel that stores its tiles by TMA: n rows of m
// values (m a multiple of 8, as WgmmaSpFamily::tma_store requires), one
// 128-byte swizzle atom of rows by the chunk's tokens per box.
TEST(TmaWeightMaps, OutMapsOfEveryStoringTileAreWithinTheEncodersLimits) {
  for (int64_t m : {8, 136, 1408, 4096, 14336})
    for (int64_t n : {1, 37, 4096, 6 * 4096})
      for (int chunk : {8, 16, 32, 64}) {
        const TensorMap2d map = describe_out_map(at(0x400000), n, m, chunk);
        EXPECT_EQ(tensor_map_problem(map), std::nullopt) << "m " << m << " n " << n << " chunk " << chunk << ": "
                                                         << tensor_map_problem(map).value_or("");
        EXPECT_TRUE(map.swizzle_128b);
        EXPECT_EQ(map.cols, uint64_t(m));  // rows past m are never written
        EXPECT_EQ(map.rows, uint64_t(n));
        EXPECT_EQ(map.box.cols * map.box.elem_bytes, 128u);
        EXPECT_EQ(map.box.rows, uint32_t(chunk));
      }
  EXPECT_NE(tensor_map_problem(describe_out_map(at(0x400000), 64, 204, 32)).value_or("").find("stride"),
            std::string::npos);
}

TEST(TmaWeightMaps, BrokenRulesAreNamed) {
  TensorMap2d m{"test", at(0x1000), 2048, 256, TmaBox{64, 128, 2}, true};
  EXPECT_EQ(tensor_map_problem(m), std::nullopt);
  TensorMap2d misaligned = m;
  misaligned.base = at(0x1008);
  EXPECT_NE(tensor_map_problem(misaligned).value_or("").find("aligned"), std::string::npos);
  TensorMap2d wide = m;
  wide.box.cols = 128;  // 256-byte box rows under the 128-byte swizzle
  EXPECT_NE(tensor_map_problem(wide).value_or("").find("swizzle"), std::string::npos);
  TensorMap2d odd_stride = m;
  odd_stride.cols = 2044;  // 4088-byte rows
  EXPECT_NE(tensor_map_problem(odd_stride).value_or("").find("stride"), std::string::npos);
  TensorMap2d tall = m;
  tall.box.rows = 512;
  EXPECT_NE(tensor_map_problem(tall).value_or("").find("box"), std::string::npos);
}

}  // namespace
}  // namespace samoyeds
