// 16-bit element types and their host-side conversions. Elements are stored as
// raw uint16_t bit patterns so host code needs no CUDA headers.
#pragma once
#include <cstdint>
#include <string>

namespace samoyeds {

enum class DType { f16, bf16 };
// Tables indexed by dtype are this long; keys hold the dtype by value.
constexpr int kDTypeCount = 2;

const char* dtype_name(DType dtype);
DType parse_dtype(const std::string& name);  // "f16"/"fp16"/"float16", "bf16"/"bfloat16"

float half_bits_to_float(uint16_t bits);
uint16_t float_to_half_bits(float value);  // round to nearest even, saturates to inf
float bf16_bits_to_float(uint16_t bits);
uint16_t float_to_bf16_bits(float value);  // round to nearest even

inline float to_float(DType dtype, uint16_t bits) {
  return dtype == DType::f16 ? half_bits_to_float(bits) : bf16_bits_to_float(bits);
}
inline uint16_t from_float(DType dtype, float value) {
  return dtype == DType::f16 ? float_to_half_bits(value) : float_to_bf16_bits(value);
}

}  // namespace samoyeds
