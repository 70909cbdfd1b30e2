// Pieces every backend's launch shares: the ssmm argument block the
// kernels take (templates/kernel_args.cuh) and the launch call itself.
#pragma once
#include <string>

#include "backends/backend.hpp"
#include "core/kernel_launch.hpp"
#include "templates/kernel_args.cuh"

namespace samoyeds {

// Sizes the kernels take as int, grid dimensions included.
constexpr int64_t kMaxDim = (int64_t(1) << 31) - 1;

// Throws Error(InvalidArgument, what) unless ok.
void require(bool ok, const std::string& what);

SsmmArgs ssmm_args(const ExpertLaunch& launch);
GroupedSsmmArgs grouped_ssmm_args(const ExpertLaunch& launch, const SsmmArgs& base);

// Launches with the kernel's shared memory (plus the grouped tile prefix,
// checked against the device); throws Error naming the spec and config.
void launch_expert_kernel(const ExpertLaunch& launch, const Device& device, LaunchShape shape, void** params);

}  // namespace samoyeds
