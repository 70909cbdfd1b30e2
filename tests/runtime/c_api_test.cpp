// The C ABI maps errors to codes and messages; runs without a GPU for the
// parts that need none.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "samoyeds/dtype.hpp"
#include "samoyeds/environment.hpp"
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
  EXPECT_EQ(samoyeds_moe_forward(nullptr, nullptr, 1, nullptr, 0, nullptr, nullptr, 0, nullptr, nullptr),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(samoyeds_moe_workspace_bytes(nullptr, 16), 0u);
  EXPECT_EQ(samoyeds_moe_layer_device_bytes(nullptr), 0);
  EXPECT_NE(std::string(samoyeds_version()), "");
}

// Benchmarks time the same launches with and without programmatic dependent launch.
TEST(CApi, ProgrammaticLaunchCanBeSwitchedForLaterLaunches) {
  const bool before = samoyeds::programmatic_launch_enabled();
  samoyeds_set_programmatic_launch(0);
  EXPECT_FALSE(samoyeds::programmatic_launch_enabled());
  samoyeds_set_programmatic_launch(1);
  EXPECT_TRUE(samoyeds::programmatic_launch_enabled());
  samoyeds::set_programmatic_launch(before);
}

// A layer spec is checked before anything needs a GPU: each mistake named.
TEST(CApi, AMoeSpecThatDoesNotFitItsRoutingIsNamed) {
  auto error_of = [](const samoyeds_moe_spec& spec) {
    samoyeds_moe_layer* layer = reinterpret_cast<samoyeds_moe_layer*>(0x1);
    const samoyeds_status st =
        samoyeds_moe_layer_create(nullptr, &spec, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, &layer);
    EXPECT_EQ(layer, nullptr);
    return st == SAMOYEDS_OK ? std::string("ok") : std::string(samoyeds_last_error());
  };
  samoyeds_moe_spec spec{};  // zero: every added field at its default
  spec.hidden = 256;
  spec.ffn = 384;
  spec.experts = 64;
  spec.top_k = 6;
  spec.dtype = SAMOYEDS_BF16;
  spec.V = 128;
  spec.N = 1;
  spec.M = 2;
  spec.routing = SAMOYEDS_ROUTING_SIGMOID_GROUP_TOPK;
  spec.groups = 8;
  spec.topk_groups = 3;
  // Valid: it fails only on the null runtime.
  EXPECT_NE(error_of(spec).find("runtime or weight arrays are null"), std::string::npos) << error_of(spec);
  spec.groups = 7;
  EXPECT_NE(error_of(spec).find("groups 7"), std::string::npos) << error_of(spec);
  spec.groups = 8;
  spec.routing = static_cast<samoyeds_routing_method>(9);
  EXPECT_NE(error_of(spec).find("samoyeds_routing_method"), std::string::npos) << error_of(spec);
  spec.routing = SAMOYEDS_ROUTING_TOPK_SOFTMAX;
  spec.groups = spec.topk_groups = 0;
  spec.renormalize = 1;
  EXPECT_NE(error_of(spec).find("renormalize"), std::string::npos) << error_of(spec);
  spec.routing = SAMOYEDS_ROUTING_SOFTMAX_TOPK;
  const float bias[64] = {};
  spec.choice_bias = bias;
  EXPECT_NE(error_of(spec).find("choice bias"), std::string::npos) << error_of(spec);
  spec.choice_bias = nullptr;
  // FP8 routed experts: what the FP8 path cannot run is named.
  spec.experts_e4m3 = 1;
  EXPECT_NE(error_of(spec).find("runtime or weight arrays are null"), std::string::npos) << error_of(spec);
  spec.dtype = SAMOYEDS_F16;
  EXPECT_NE(error_of(spec).find("FP8 experts take bf16 activations"), std::string::npos) << error_of(spec);
  spec.dtype = SAMOYEDS_BF16;
  spec.N = 2;
  spec.M = 4;
  EXPECT_NE(error_of(spec).find("FP8"), std::string::npos) << error_of(spec);
  // An expert-parallel layer may hold fewer experts than a token picks
  // (Mixtral's 8 over 8 ranks: one each, top_k 2); it never routes.
  spec.experts_e4m3 = 0;
  spec.N = 1;
  spec.M = 2;
  spec.experts = 1;
  spec.top_k = 2;
  EXPECT_NE(error_of(spec).find("top_k 2"), std::string::npos) << error_of(spec);
  spec.expert_parallel = 1;
  EXPECT_NE(error_of(spec).find("runtime or weight arrays are null"), std::string::npos) << error_of(spec);
  spec.top_k = 33;
  EXPECT_NE(error_of(spec).find("top_k 33"), std::string::npos) << error_of(spec);
}

// The router alone reads only the routing fields of a spec, checked as a
// layer's are, before anything needs a GPU.
TEST(CApi, ARouterSpecIsCheckedAsALayersRouting) {
  auto error_of = [](const samoyeds_moe_spec& spec) {
    samoyeds_router* router = reinterpret_cast<samoyeds_router*>(0x1);
    const samoyeds_status st = samoyeds_router_create(nullptr, &spec, &router);
    EXPECT_EQ(router, nullptr);
    return st == SAMOYEDS_OK ? std::string("ok") : std::string(samoyeds_last_error());
  };
  samoyeds_moe_spec spec{};  // no shape, no pattern: a router needs neither
  spec.experts = 256;
  spec.top_k = 8;
  spec.dtype = SAMOYEDS_BF16;
  spec.routing = SAMOYEDS_ROUTING_SIGMOID_GROUP_TOPK;
  spec.groups = 8;
  spec.topk_groups = 4;
  EXPECT_NE(error_of(spec).find("runtime handle is null"), std::string::npos) << error_of(spec);
  spec.groups = 7;
  EXPECT_NE(error_of(spec).find("groups 7"), std::string::npos) << error_of(spec);
  spec.groups = 8;
  spec.top_k = 33;
  EXPECT_NE(error_of(spec).find("top_k 33"), std::string::npos) << error_of(spec);
  spec.top_k = 8;
  spec.dtype = static_cast<samoyeds_dtype>(7);
  EXPECT_NE(error_of(spec).find("dtype"), std::string::npos) << error_of(spec);
  EXPECT_EQ(samoyeds_route(nullptr, nullptr, 1, 0, nullptr, nullptr, nullptr), SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_NE(std::string(samoyeds_last_error()).find("router handle is null"), std::string::npos);
}

// Packed buffers state their lengths and dtype: a length that does not fit
// the shape and pattern is refused before anything is read (no GPU needed).
TEST(CApi, PackedBuffersOfTheWrongLengthAreRefusedBeforeTheyAreRead) {
  samoyeds_moe_spec spec{};
  spec.hidden = 256, spec.ffn = 128, spec.experts = 1, spec.top_k = 1, spec.dtype = SAMOYEDS_BF16;
  spec.V = 128, spec.N = 1, spec.M = 2;
  // w1/w3 [128, 256]: 64 rows of 128 values, 2 x 64 selectors, 2048 metadata bytes.
  std::vector<uint16_t> values(64 * 128);
  std::vector<uint8_t> sel(2 * 64), meta(64 * 128 / 4);
  samoyeds_packed_matrix up{128, 256, SAMOYEDS_BF16, values.data(), 64 * 128, sel.data(), 2 * 64, meta.data(), 2048};
  samoyeds_packed_matrix down = up;  // [256, 128]: 128 rows of 64 values, 1 x 128 selectors
  down.m = 256, down.k = 128, down.values_count = 128 * 64, down.sel_bytes = 128, down.meta_bytes = 2048;
  samoyeds_moe_layer* layer = nullptr;
  auto error = [&](const samoyeds_packed_matrix& w1) {
    const samoyeds_status st = samoyeds_moe_layer_create_packed(nullptr, &spec, &w1, &up, &down, nullptr, &layer);
    EXPECT_EQ(st, SAMOYEDS_INVALID_ARGUMENT);
    EXPECT_EQ(layer, nullptr);
    return std::string(samoyeds_last_error());
  };
  EXPECT_NE(error(up).find("runtime is null"), std::string::npos) << error(up);  // the matrices passed
  samoyeds_packed_matrix bad = up;
  bad.values_count -= 1;
  EXPECT_NE(error(bad).find("expert 0's w1: [128, 256] at 1:2x2:4/V128 needs 8192 values"), std::string::npos)
      << error(bad);
  bad = up;
  bad.m = int64_t(1) << 40;  // a size computed from it would overflow; the shape is refused first
  EXPECT_NE(error(bad).find("shape"), std::string::npos) << error(bad);
  bad = up;
  bad.dtype = static_cast<samoyeds_dtype>(5);
  EXPECT_NE(error(bad).find("dtype"), std::string::npos) << error(bad);
  EXPECT_EQ(samoyeds_moe_layer_load_packed(nullptr, &spec, "/nonexistent", nullptr, nullptr, nullptr, nullptr,
                                           nullptr, &layer),
            SAMOYEDS_INVALID_ARGUMENT);
  EXPECT_EQ(samoyeds_pack_checkpoint("/nonexistent", "/tmp/samoyeds-none", 128, 1, 2, 0), SAMOYEDS_INVALID_ARGUMENT);
}

}  // namespace
