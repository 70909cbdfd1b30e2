// FP8 weights as checkpoints ship them (DeepSeek-V3's safetensors): an
// F8_E4M3 tensor `<name>.weight` [rows, cols] beside its F32
// `<name>.weight_scale_inv` [ceil(rows/128), ceil(cols/128)]. Read strictly:
// what the FP8 path cannot take as it is (another dtype or shape, a NaN
// code, a scale that is not finite and positive) is refused, naming the
// tensor, never converted.
#pragma once
#include <string>

#include "format/fp8.hpp"
#include "format/safetensors.hpp"

namespace samoyeds {

// The scale tensor's name for a weight's ("x.weight" -> "x.weight_scale_inv").
std::string fp8_scale_name(const std::string& weight_name);

Fp8Weights read_fp8_weights(SafetensorsReader& reader, const std::string& weight_name);

}  // namespace samoyeds
