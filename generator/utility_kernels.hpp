// Small fixed kernels that have no tile config (the deterministic combine).
// They go through the same NVRTC + binary cache path as the families.
#pragma once
#include "generator/kernel_family.hpp"

namespace samoyeds {

enum class UtilityKernel { ScatterAddRows };

GeneratedKernel generate_utility_kernel(UtilityKernel which, DType dtype);
std::string utility_kernel_name(UtilityKernel which);

}  // namespace samoyeds
