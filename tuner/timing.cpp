#include "tuner/timing.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds::tuning {

int rotation_copies(size_t bytes, int max_copies) {
  if (bytes == 0) return 1;
  const size_t want = 3 * kL2Bytes / bytes + 1;
  return int(std::min<size_t>(std::max<size_t>(want, 1), size_t(max_copies)));
}

namespace {

// The word of mapped host memory held streams wait on (one per process): a
// gate waits until it reaches the gate's own number, and opening a gate
// raises it to that number (never lowers it, so no later gate stays shut).
struct GateWord {
  volatile uint32_t* host = nullptr;
  CUdeviceptr device = 0;
  std::atomic<uint32_t> issued{0};
  std::mutex write;
};

GateWord* gate_word() {
  static GateWord* word = []() -> GateWord* {
    const DriverApi& d = driver();
    if (!d.cuMemHostAlloc || !d.cuMemHostGetDevicePointer || !d.cuMemFreeHost || !d.cuStreamWaitValue32)
      return nullptr;
    void* p = nullptr;
    if (d.cuMemHostAlloc(&p, 4, CU_MEMHOSTALLOC_DEVICEMAP | CU_MEMHOSTALLOC_PORTABLE) != CUDA_SUCCESS) return nullptr;
    CUdeviceptr dp = 0;
    if (d.cuMemHostGetDevicePointer(&dp, p, 0) != CUDA_SUCCESS) {
      d.cuMemFreeHost(p);
      return nullptr;
    }
    auto* w = new GateWord;  // kept for the process: streams may still refer to it at exit
    w->host = static_cast<volatile uint32_t*>(p);
    *w->host = 0;
    w->device = dp;
    return w;
  }();
  return word;
}

// Holds `stream` from construction until open(): what is enqueued meanwhile
// starts together once opened. A watchdog opens it after a second in case a
// launch waits on the stream itself (timed_out() then says so).
class StreamGate {
 public:
  StreamGate(GateWord& word, CUstream stream) : word_(word), number_(++word.issued) {
    check(driver().cuStreamWaitValue32(stream, word_.device, number_, CU_STREAM_WAIT_VALUE_GEQ),
          "cuStreamWaitValue32 (timing gate)");
    watchdog_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(m_);
      if (cv_.wait_for(lock, std::chrono::seconds(1), [this] { return opened_; })) return;
      timed_out_ = true;
      opened_ = true;
      raise();
    });
  }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;
  ~StreamGate() {
    open();
    watchdog_.join();
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(m_);
      if (opened_) return;
      opened_ = true;
      raise();
    }
    cv_.notify_one();
  }
  bool timed_out() {
    std::lock_guard<std::mutex> lock(m_);
    return timed_out_;
  }

 private:
  void raise() {
    std::lock_guard<std::mutex> lock(word_.write);
    if (*word_.host < number_) *word_.host = number_;
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  GateWord& word_;
  const uint32_t number_;
  std::mutex m_;
  std::condition_variable cv_;
  bool opened_ = false, timed_out_ = false;
  std::thread watchdog_;
};

// The median over `spans` spans of the time between two events around
// timed(k), each divided by `per_span`; before(k) runs first, outside the
// span. With a gate word, the stream is held until the span is enqueued, and
// a launch that waited on its own stream throws `waited`.
double median_span_ms(CUstream s, GateWord* word, int spans, int per_span, const std::function<void(int)>& before,
                      const std::function<void(int)>& timed, const char* waited) {
  const DriverApi& d = driver();
  struct Events {  // destroyed however the timing ends
    CUevent start = nullptr, stop = nullptr;
    Events() {
      check(driver().cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
      check(driver().cuEventCreate(&stop, CU_EVENT_DEFAULT), "cuEventCreate");
    }
    ~Events() {
      driver().cuEventDestroy(start);
      driver().cuEventDestroy(stop);
    }
  } ev;
  std::vector<double> times;
  for (int k = 0; k < spans; ++k) {
    bool gate_timed_out = false;
    {
      std::optional<StreamGate> gate;
      if (word) gate.emplace(*word, s);
      before(k);
      check(d.cuEventRecord(ev.start, s), "cuEventRecord");
      timed(k);
      check(d.cuEventRecord(ev.stop, s), "cuEventRecord");
      if (gate) {
        gate->open();
        gate_timed_out = gate->timed_out();
      }
    }
    check(d.cuEventSynchronize(ev.stop), "cuEventSynchronize");
    if (gate_timed_out) throw Error(ErrorCode::InvalidArgument, waited);
    float ms = 0.0f;
    check(d.cuEventElapsedTime(&ms, ev.start, ev.stop), "cuEventElapsedTime");
    times.push_back(double(ms) / per_span);
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

bool can_hold_stream() { return gate_word() != nullptr; }

double median_ms(void* stream, const std::function<void(int)>& launch, int batch, int batches, int warmup,
                 Launches how) {
  for (int i = 0; i < warmup; ++i) launch(i);
  int i = 0;
  return median_span_ms(
      static_cast<CUstream>(stream), how == Launches::BackToBack ? gate_word() : nullptr, batches, batch,
      [](int) {},
      [&](int) {
        for (int j = 0; j < batch; ++j) launch(i++);
      },
      "timing: a launch timed back to back waited on its own stream (the gate's watchdog opened it); time it "
      "with Launches::AsEnqueued");
}

double flushed_median_ms(void* stream, const std::function<void(int)>& launch, int runs, int warmup) {
  CUstream s = static_cast<CUstream>(stream);
  // One flush buffer per process (the tuner runs on one device).
  static const size_t flush_bytes = 3 * kL2Bytes;
  static CUdeviceptr flush = [] {
    CUdeviceptr p = 0;
    check(driver().cuMemAlloc(&p, flush_bytes), "cuMemAlloc (L2 flush buffer)");
    return p;
  }();
  for (int i = 0; i < warmup; ++i) launch(i);
  return median_span_ms(
      s, gate_word(), runs, 1,
      [&](int r) { check(driver().cuMemsetD8Async(flush, uint8_t(r), flush_bytes, s), "cuMemsetD8Async (L2 flush)"); },
      [&](int r) { launch(warmup + r); }, "timing: a flushed launch waited on its own stream");
}

}  // namespace samoyeds::tuning
