// 16-bit element types and their host-side conversions. Elements are stored as
// raw uint16_t bit patterns so host code needs no CUDA headers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace samoyeds {

// Every element type, one line each: enum value, name (records, command
// lines), other names accepted, the device type templates/common.cuh calls
// it, and the relative error a result in it may have against the float64
// reference (DESIGN.md). Keys hold the dtype by value.
#define SAMOYEDS_DTYPES(X)                           \
  X(f16, "f16", "fp16 float16 half", "F16", 1e-3)    \
  X(bf16, "bf16", "bfloat16", "BF16", 8e-3)

enum class DType {
#define SAMOYEDS_DTYPE_ENUM(value, name, aliases, device, tolerance) value,
  SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_ENUM)
#undef SAMOYEDS_DTYPE_ENUM
};
// Tables indexed by dtype are this long.
#define SAMOYEDS_DTYPE_ONE(value, name, aliases, device, tolerance) +1
constexpr int kDTypeCount = 0 SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_ONE);
#undef SAMOYEDS_DTYPE_ONE

const char* dtype_name(DType dtype);
DType parse_dtype(const std::string& name);  // a name or one of its aliases
const char* dtype_device_type(DType dtype);  // "F16"
double dtype_tolerance(DType dtype);         // of a result in this dtype, against the float64 reference
const std::vector<DType>& all_dtypes();     // in SAMOYEDS_DTYPES order

float half_bits_to_float(uint16_t bits);
uint16_t float_to_half_bits(float value);  // round to nearest even, saturates to inf
float bf16_bits_to_float(uint16_t bits);
uint16_t float_to_bf16_bits(float value);  // round to nearest even

inline float to_float(DType dtype, uint16_t bits) {
  switch (dtype) {
    case DType::f16: return half_bits_to_float(bits);
    case DType::bf16: return bf16_bits_to_float(bits);
  }
  return 0.0f;
}
inline uint16_t from_float(DType dtype, float value) {
  switch (dtype) {
    case DType::f16: return float_to_half_bits(value);
    case DType::bf16: return float_to_bf16_bits(value);
  }
  return 0;
}

}  // namespace samoyeds
