#include "test_util/gpu_check.hpp"

#include <cmath>

#include <fmt/format.h>

namespace samoyeds::test {

KernelRuntime& shared_runtime() {
  static KernelRuntime rt(Device::get());
  return rt;
}

PoisonedOutput::PoisonedOutput(int64_t elems) : elems_(elems), buf_(size_t(elems + 2 * kGuard) * 2) {
  buf_.fill_bytes(0xff);
}

void* PoisonedOutput::data() const { return static_cast<char*>(buf_.data()) + kGuard * 2; }

std::vector<uint16_t> PoisonedOutput::read() const {
  std::vector<uint16_t> all(size_t(elems_ + 2 * kGuard));
  buf_.download(all.data(), all.size() * 2);
  int64_t touched = 0;
  for (int64_t i = 0; i < kGuard; ++i) {
    touched += all[size_t(i)] != 0xffff;
    touched += all[size_t(kGuard + elems_ + i)] != 0xffff;
  }
  EXPECT_EQ(touched, 0) << "kernel wrote outside its output";
  return std::vector<uint16_t>(all.begin() + kGuard, all.begin() + kGuard + elems_);
}

Comparison compare(const std::vector<uint16_t>& got, DType dtype, const DenseF64& ref) {
  Comparison c;
  std::vector<double> g(got.size());
  for (size_t i = 0; i < got.size(); ++i) {
    g[i] = to_float(dtype, got[i]);
    if (!std::isfinite(g[i])) {
      if (c.non_finite++ == 0)
        c.first_non_finite = fmt::format("[{}, {}] = {}", int64_t(i) / ref.cols, int64_t(i) % ref.cols, g[i]);
    }
  }
  c.rel_error = relative_frobenius_error(g, ref.data);
  return c;
}

}  // namespace samoyeds::test
