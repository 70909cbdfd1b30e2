// samoyeds tune --gpus: one worker process per GPU (this binary again, with
// CUDA_VISIBLE_DEVICES naming its GPU) takes the next projection from a
// shared counter (cli/work_counter.hpp) and writes its records into the one
// cache file, whose store takes several writers.
#pragma once
#include <string>
#include <vector>

namespace samoyeds::cli {

// "all" or ordinals "0,2" of the GPUs this process sees: each must exist,
// appear once, and be of the first one's type (the records are keyed by it).
std::vector<int> parse_gpu_list(const std::string& text);

// Runs `samoyeds tune <args> --worker-queue FILE --jobs J` on each GPU and
// waits for them all, passing SIGINT and SIGTERM on; each worker's output
// follows, GPU by GPU. 0 when all succeed. The caller has opened the cache
// (its folder made, its schema set) so the workers do not race to.
int run_tune_fleet(const std::vector<std::string>& args, const std::vector<int>& gpus, const std::string& cache_path,
                   int jobs_per_worker);

// First thing a worker does: it ends with its parent.
void become_worker();

}  // namespace samoyeds::cli
