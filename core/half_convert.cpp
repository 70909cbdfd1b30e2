// Bit-exact IEEE binary16 and bfloat16 conversions on the host (round to
// nearest even), so packing and the reference need no CUDA headers.
#include <cstring>

#include "samoyeds/dtype.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

const char* dtype_name(DType dtype) {
  switch (dtype) {
#define SAMOYEDS_DTYPE_NAME(value, name, aliases, device, tolerance) \
  case DType::value: return name;
    SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_NAME)
#undef SAMOYEDS_DTYPE_NAME
  }
  return "?";
}

const char* dtype_device_type(DType dtype) {
  switch (dtype) {
#define SAMOYEDS_DTYPE_DEVICE(value, name, aliases, device, tolerance) \
  case DType::value: return device;
    SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_DEVICE)
#undef SAMOYEDS_DTYPE_DEVICE
  }
  return "?";
}

double dtype_tolerance(DType dtype) {
  switch (dtype) {
#define SAMOYEDS_DTYPE_TOLERANCE(value, name, aliases, device, tolerance) \
  case DType::value: return tolerance;
    SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_TOLERANCE)
#undef SAMOYEDS_DTYPE_TOLERANCE
  }
  return 0.0;
}

const std::vector<DType>& all_dtypes() {
  static const std::vector<DType> all = {
#define SAMOYEDS_DTYPE_ALL(value, name, aliases, device, tolerance) DType::value,
      SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_ALL)
#undef SAMOYEDS_DTYPE_ALL
  };
  return all;
}

DType parse_dtype(const std::string& text) {
  std::string known;
#define SAMOYEDS_DTYPE_PARSE(value, name, aliases, device, tolerance)                 \
  if (text == name || (" " + std::string(aliases) + " ").find(" " + text + " ") != std::string::npos) \
    return DType::value;                                                                \
  known += known.empty() ? name : std::string(", ") + name;
  SAMOYEDS_DTYPES(SAMOYEDS_DTYPE_PARSE)
#undef SAMOYEDS_DTYPE_PARSE
  throw Error(ErrorCode::InvalidArgument, "unknown dtype '" + text + "' (expected " + known + ")");
}

static uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
static float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float half_bits_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    if (mant == 0) return bits_float(sign);
    // subnormal: value = mant * 2^-24
    float v = float(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t float_to_half_bits(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                                  // below 2^-14: subnormal or zero
    // value * 2^24 rounded to nearest even integer gives the subnormal mantissa
    float scaled = bits_float(abs) * 16777216.0f;
    uint32_t m = uint32_t(scaled);
    float rem = scaled - float(m);
    if (rem > 0.5f || (rem == 0.5f && (m & 1u))) ++m;
    return uint16_t(sign | m);
  }
  uint32_t exp = (abs >> 23) - 112;
  uint32_t mant = abs & 0x7fffffu;
  uint32_t half = (exp << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;  // carries into exp correctly
  return uint16_t(sign | half);
}

float bf16_bits_to_float(uint16_t b) { return bits_float(uint32_t(b) << 16); }

uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  uint32_t lsb = (u >> 16) & 1u;
  u += 0x7fffu + lsb;
  return uint16_t(u >> 16);
}

}  // namespace samoyeds
