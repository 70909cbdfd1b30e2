// Fast deterministic random 16-bit data for tuning and benchmarks (xorshift;
// uniform in [-scale, scale), never exactly zero).
#pragma once
#include <cstdint>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds::tuning {

inline std::vector<uint16_t> random_fill(int64_t count, DType dt, float scale, uint64_t seed) {
  std::vector<uint16_t> v(static_cast<size_t>(count));
  uint64_t s = seed * 0x9e3779b97f4a7c15ULL + 1;
  for (auto& e : v) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    const float u = float(int64_t(s >> 40) - (1 << 23)) / float(1 << 23);
    e = from_float(dt, (u == 0.0f ? 0.5f : u) * scale);
  }
  return v;
}

}  // namespace samoyeds::tuning
