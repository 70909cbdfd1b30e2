// Fresh random test data (never zeros), seeded per test so failures reproduce.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds::test {

std::mt19937_64& rng();  // seeded from the current test's name and SAMOYEDS_TEST_SEED

// Normal values scaled by `scale`, rounded to dtype.
std::vector<uint16_t> random_matrix(int64_t rows, int64_t cols, DType dtype, float scale = 1.0f);
// n ids in [0, rows): unsorted, with repeats.
std::vector<int32_t> random_ids(int64_t n, int64_t rows);
std::vector<float> random_probs(int64_t n);

}  // namespace samoyeds::test
