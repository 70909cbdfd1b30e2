// The cuBLAS dense MoE peer of `samoyeds run-moe` (tuner/dense_moe_baseline)
// behind a C interface, so bench/moe_peers.py runs it by ctypes on the same
// device weights, tokens and routing as ours and PyTorch's, timed the same
// way. A benchmark library only: it is not installed and not part of the ABI.
#include <cstdint>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "samoyeds/moe_reference.hpp"
#include "tuner/dense_moe_baseline.hpp"

namespace {

thread_local std::string last_error;

template <class F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  } catch (...) {  // nothing may cross extern "C"
    last_error = "unknown exception";
    return 1;
  }
}

std::vector<samoyeds::DenseExpert> on_device(int n, int64_t ffn, const void* const* w1, const void* const* w3,
                                             const void* const* w2) {
  std::vector<samoyeds::DenseExpert> out(static_cast<size_t>(n));
  for (int e = 0; e < n; ++e) {
    out[size_t(e)].w1 = static_cast<const uint16_t*>(w1[e]);
    out[size_t(e)].w3 = static_cast<const uint16_t*>(w3[e]);
    out[size_t(e)].w2 = static_cast<const uint16_t*>(w2[e]);
    out[size_t(e)].ffn = ffn;
    out[size_t(e)].on_device = true;
  }
  return out;
}

}  // namespace

extern "C" {

const char* samoyeds_bench_last_error() { return last_error.c_str(); }

// Experts' dense weights on the device, one pointer per expert: w1, w3
// [ffn, hidden] and w2 [hidden, ffn]; the same for `shared` shared experts
// of shared_ffn rows (none: 0 and nulls). bf16 = 1, f16 = 0. The weights
// must outlive the peer.
int samoyeds_bench_dense_create(void** out, int bf16, int64_t hidden, int64_t ffn, int experts,
                                const void* const* w1, const void* const* w3, const void* const* w2, int shared,
                                int64_t shared_ffn, const void* const* s1, const void* const* s3,
                                const void* const* s2) {
  return guarded([&] {
    *out = new samoyeds::tuning::DenseMoeBaseline(bf16 ? samoyeds::DType::bf16 : samoyeds::DType::f16, hidden, ffn,
                                                  on_device(experts, ffn, w1, w3, w2),
                                                  on_device(shared, shared_ffn, s1, s3, s2));
  });
}

// Tokens x [tokens, hidden] (16-bit, host) and each token's top_k expert
// ids (host): the peer gathers each expert's rows once, untimed. `hidden`
// must be the peer's: it sizes what is read from x.
int samoyeds_bench_dense_set_tokens(void* peer, const uint16_t* x, int64_t tokens, int64_t hidden, int top_k,
                                    const int32_t* ids) {
  return guarded([&] {
    auto* p = static_cast<samoyeds::tuning::DenseMoeBaseline*>(peer);
    if (hidden != p->hidden())
      throw std::invalid_argument("hidden " + std::to_string(hidden) + ", the peer's is " +
                                  std::to_string(p->hidden()));
    samoyeds::Routing r;
    r.tokens = tokens;
    r.top_k = top_k;
    r.expert.assign(ids, ids + tokens * top_k);
    r.weight.assign(size_t(tokens * top_k), 1.0f);
    p->set_tokens(std::vector<uint16_t>(x, x + tokens * hidden), r);
  });
}

// One run of the GEMMs on `stream`: grouped (cublasGemmGroupedBatchedEx) or
// the per-expert loop.
int samoyeds_bench_dense_enqueue(void* peer, int grouped, void* stream) {
  return guarded([&] {
    auto* p = static_cast<samoyeds::tuning::DenseMoeBaseline*>(peer);
    grouped ? p->enqueue_grouped(stream) : p->enqueue_loop(stream);
  });
}

void samoyeds_bench_dense_destroy(void* peer) { delete static_cast<samoyeds::tuning::DenseMoeBaseline*>(peer); }

}  // extern "C"
