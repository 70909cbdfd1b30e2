// The C ABI maps errors to codes and messages; runs without a GPU for the
// parts that need none.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "samoyeds/dtype.hpp"
#include "samoyeds/samoyeds.h"

namespace {

TEST(CApi, BadArgumentsGiveACodeAndAMessage) {
  samoyeds_weights* w = reinterpret_cast<samoyeds_weights*>(0x1);
  std::vector<uint16_t> dense(64 * 64, samoyeds::float_to_half_bits(1.0f));
  EXPECT_EQ(samoyeds_weights_pack(dense.data(), 64, 64, SAMOYEDS_F16, 48, 1, 2, 0, &w), SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(w, nullptr);
  EXPECT_NE(std::string(samoyeds_last_error()).find("V=48"), std::string::npos) << samoyeds_last_error();
  dense[70] = samoyeds::float_to_half_bits(NAN);
  EXPECT_EQ(samoyeds_weights_pack(dense.data(), 64, 64, SAMOYEDS_F16, 64, 1, 2, 0, &w), SAMOYEDS_NON_FINITE_INPUT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("[1, 6]"), std::string::npos) << samoyeds_last_error();
  EXPECT_EQ(samoyeds_weights_pack(dense.data(), 64, 64, static_cast<samoyeds_dtype>(7), 64, 1, 2, 0, &w),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(samoyeds_ssmm(nullptr, nullptr, nullptr, 1, nullptr, 1, nullptr, 0, nullptr), SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(samoyeds_runtime_create(0, nullptr, nullptr), SAMOYEDS_INVALID_ARGUMENT);
  samoyeds_moe_layer* layer = nullptr;
  EXPECT_EQ(samoyeds_moe_layer_create(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &layer),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(layer, nullptr);
  EXPECT_EQ(samoyeds_moe_forward(nullptr, nullptr, 1, nullptr, nullptr, nullptr, 0, nullptr), SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(samoyeds_moe_workspace_bytes(nullptr, 16), 0u);
}

}  // namespace
