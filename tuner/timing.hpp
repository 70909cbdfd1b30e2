// Benchmark timing: CUDA-event medians over batches of launches, with inputs
// rotated through copies so the working set exceeds L2.
#pragma once
#include <functional>
#include <vector>

namespace samoyeds::tuning {

constexpr size_t kL2Bytes = 60u << 20;  // H200: 60 MB (METHOD.md); rotate past 3x that

// How many copies of a `bytes`-sized operand make the rotation exceed 3x L2.
int rotation_copies(size_t bytes, int max_copies = 64);

// Runs launch(i) for i = 0.. in batches of `batch` between two events on
// `stream`, after `warmup` launches; returns the median time per launch in ms.
double median_ms(void* stream, const std::function<void(int)>& launch, int batch, int batches = 7, int warmup = 3);

}  // namespace samoyeds::tuning
