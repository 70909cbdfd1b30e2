#include "tuner/timing.hpp"

#include <algorithm>

#include "runtime/cuda_driver.hpp"

namespace samoyeds::tuning {

int rotation_copies(size_t bytes, int max_copies) {
  if (bytes == 0) return 1;
  const size_t want = 3 * kL2Bytes / bytes + 1;
  return int(std::min<size_t>(std::max<size_t>(want, 1), size_t(max_copies)));
}

double median_ms(void* stream, const std::function<void(int)>& launch, int batch, int batches, int warmup) {
  const DriverApi& d = driver();
  CUstream s = static_cast<CUstream>(stream);
  for (int i = 0; i < warmup; ++i) launch(i);
  CUevent start, stop;
  check(d.cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  check(d.cuEventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
  std::vector<double> times;
  int i = 0;
  for (int b = 0; b < batches; ++b) {
    check(d.cuEventRecord(start, s), "cuEventRecord");
    for (int j = 0; j < batch; ++j) launch(i++);
    check(d.cuEventRecord(stop, s), "cuEventRecord");
    check(d.cuEventSynchronize(stop), "cuEventSynchronize");
    float ms = 0.0f;
    check(d.cuEventElapsedTime(&ms, start, stop), "cuEventElapsedTime");
    times.push_back(double(ms) / batch);
  }
  d.cuEventDestroy(start);
  d.cuEventDestroy(stop);
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace samoyeds::tuning
