#include "test_util/random_data.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <string>

namespace samoyeds::test {

std::mt19937_64& rng() {
  static std::string current;
  static std::mt19937_64 gen;
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = info ? std::string(info->test_suite_name()) + "." + info->name() : "none";
  if (name != current) {
    current = name;
    const char* seed = std::getenv("SAMOYEDS_TEST_SEED");
    gen.seed(std::hash<std::string>()(name) ^ (seed ? std::stoull(seed) : 0x5a4d0e5dULL));
  }
  return gen;
}

std::vector<uint16_t> random_matrix(int64_t rows, int64_t cols, DType dtype, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint16_t> out(size_t(rows * cols));
  for (auto& v : out) {
    float f = dist(rng());
    if (f == 0.0f) f = scale * 1e-3f;
    v = from_float(dtype, f);
  }
  return out;
}

std::vector<int32_t> random_ids(int64_t n, int64_t rows) {
  std::uniform_int_distribution<int32_t> dist(0, int32_t(rows - 1));
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (auto& i : ids) i = dist(rng());
  return ids;
}

std::vector<float> random_probs(int64_t n) {
  std::uniform_real_distribution<float> dist(0.05f, 1.0f);
  std::vector<float> p(static_cast<size_t>(n));
  for (auto& v : p) v = dist(rng());
  return p;
}

}  // namespace samoyeds::test
