// Benchmark timing: CUDA-event medians over batches of launches, with inputs
// rotated through copies so the working set exceeds L2.
#pragma once
#include <algorithm>
#include <functional>
#include <vector>

namespace samoyeds::tuning {

constexpr size_t kL2Bytes = 60u << 20;  // H200: 60 MB (METHOD.md); rotate past 3x that

// How many copies of a `bytes`-sized operand make the rotation exceed 3x L2
// (the cap high enough that small packed weights reach it as dense ones do:
// a 64-copy cap left small shapes at 1.8x L2 for ours against 3x for dense).
int rotation_copies(size_t bytes, int max_copies = 1024);

// Launches of one batch held behind the gate at most: the driver's queue of
// pending launches is about 1024 deep, and a host blocked on it would let
// the gate's watchdog open it. A batch of `copies` rotated copies (each
// `per_copy` launches) shorter than the rotation still rotates, as launch(i)
// takes copy i % copies and i runs on across batches.
constexpr int kMaxHeldLaunches = 256;
inline int held_batch(int copies, int per_copy) { return std::max(1, std::min(copies, kMaxHeldLaunches / per_copy)); }

// How a timed batch reaches the GPU.
enum class Launches {
  // As the host enqueues them: the time includes the host's cost of the
  // first launch, and of every launch that takes longer to enqueue than the
  // GPU takes to run the one before (a dispatch costs the host 5-7 us).
  AsEnqueued,
  // Behind a gate that holds the stream until the whole batch is enqueued:
  // the GPU runs the batch back to back, as a replayed CUDA graph would, so
  // the time is the kernels' own. Only for launches that never wait on the
  // stream themselves (no synchronization, no blocking copy or allocation):
  // such a launch would wait for the gate, so a watchdog opens it after a
  // second and the timing throws. Falls back to AsEnqueued where the driver
  // cannot hold a stream.
  BackToBack,
};

// Runs launch(i) for i = 0.. in batches of `batch` between two events on
// `stream`, after `warmup` launches (enqueued as they come); returns the
// median time per launch in ms.
double median_ms(void* stream, const std::function<void(int)>& launch, int batch, int batches = 7, int warmup = 3,
                 Launches how = Launches::AsEnqueued);

// Each launch(i) alone after L2 is flushed (a buffer of 3x L2 written on
// the stream before the start event), the stream held until the launch is
// enqueued so that one made of several kernels runs back to back; the
// median of `runs` in ms. For work whose weights cannot be rotated past L2
// (a grouped launch over every expert), and for its peers alike.
double flushed_median_ms(void* stream, const std::function<void(int)>& launch, int runs = 15, int warmup = 2);

// Whether Launches::BackToBack holds the stream on this driver (false: it
// times as AsEnqueued).
bool can_hold_stream();

}  // namespace samoyeds::tuning
