// GPU test helpers: skip cleanly without a GPU, poisoned outputs with guard
// zones, and the element-by-element comparison against the f64 reference.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "samoyeds/device.hpp"
#include "samoyeds/kernel_runtime.hpp"
#include "samoyeds/reference.hpp"

#define SAMOYEDS_REQUIRE_GPU()                                      \
  do {                                                              \
    std::string samoyeds_why;                                       \
    if (!::samoyeds::gpu_available(&samoyeds_why))                  \
      GTEST_SKIP() << "no GPU on this machine: " << samoyeds_why;   \
  } while (0)

namespace samoyeds::test {

// One runtime (default cache file) for a whole GPU test binary.
KernelRuntime& shared_runtime();

// DESIGN.md tolerances on relative Frobenius error.
inline double tolerance(DType dtype) { return dtype_tolerance(dtype); }

// A device buffer of `elems` 16-bit values filled with NaN (0xFFFF), plus a
// guard zone on both sides that must still hold the poison afterwards.
class PoisonedOutput {
 public:
  static constexpr int64_t kGuard = 1024;  // elements each side
  explicit PoisonedOutput(int64_t elems);
  void* data() const;  // first real element (16-byte aligned)
  // Reads the real elements; fails the test if a guard element changed.
  std::vector<uint16_t> read() const;

 private:
  int64_t elems_;
  DeviceBuffer buf_;
};

struct Comparison {
  double rel_error = 0.0;
  int64_t non_finite = 0;
  std::string first_non_finite;  // "[row, col] = value"
};
// Every element of got (rows x cols, dtype) against ref.
Comparison compare(const std::vector<uint16_t>& got, DType dtype, const DenseF64& ref);

template <class T>
DeviceBuffer to_device(const std::vector<T>& host) {
  DeviceBuffer b(host.size() * sizeof(T) + 16);
  b.upload(host.data(), host.size() * sizeof(T));
  return b;
}

// The first `count` elements of a device buffer.
template <class T>
std::vector<T> from_device(const DeviceBuffer& b, size_t count) {
  std::vector<T> host(count);
  b.download(host.data(), count * sizeof(T));
  return host;
}

}  // namespace samoyeds::test
