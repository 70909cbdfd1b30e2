// Checking a launch on its real shape by sampled outputs: which rows to
// sample so that every tile is met, and how to judge them so that one wrong
// tile cannot hide in a figure over the whole sample.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds::tuning {

// A check on the real shape meets every row tile (64 rows at least) and
// every token tile (32 tokens at least; list rows for grouped launches).
constexpr int64_t kWeightRowBlock = 64;
constexpr int64_t kTokenRowBlock = 32;

// One of every `block` indices of [0, count) at random, and the first and
// last, increasing: a sample that meets every tile of that size or larger.
std::vector<int64_t> one_per_block(int64_t count, int64_t block, uint32_t seed);

// Whether got [rows, cols] matches the float64 reference: the whole within
// the dtype's limit, and every row and every column within 4x that limit of
// the whole sample's RMS (rows of larger values round to larger errors; a
// wrong tile is off by far more). A non-finite value fails. *why says where.
bool rows_and_cols_match(const std::vector<double>& got, const std::vector<double>& ref, size_t rows, size_t cols,
                         DType dtype, std::string* why);

}  // namespace samoyeds::tuning
