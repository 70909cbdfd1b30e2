#include "tuner/autotuner.hpp"

#include <algorithm>
#include <chrono>
#include <mutex>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "core/parallel_for.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Token count the candidates are verified at: partial row and token tiles.
constexpr int64_t kVerifyTokens = 100;

}  // namespace

TuneReport tune_spec(const KernelSpec& spec, TuningBackend& backend, RecordStore& store, const TuneOptions& opt,
                     const TuneLog& log) {
  const auto start = std::chrono::steady_clock::now();
  spec.validate();
  if (opt.buckets.empty()) throw Error(ErrorCode::InvalidArgument, "no token buckets to tune");
  if (opt.backends.empty()) throw Error(ErrorCode::InvalidArgument, "no backend to tune");
  // Candidates: every valid config of every backend this arch supports
  // (wgmma_sp's search space is empty below sm_90a).
  struct Candidate {
    KernelSpec spec;
    TileConfig config;
    std::string name() const {
      return spec.backend == Backend::MmaSp ? config.to_string()
                                            : fmt::format("{}/{}", backend_name(spec.backend), config.to_string());
    }
  };
  std::vector<Candidate> configs;
  for (Backend b : opt.backends) {
    KernelSpec bs = spec;
    bs.backend = b;
    std::vector<TileConfig> cs = kernel_family(b).search_space(bs);
    if (opt.max_configs > 0 && int(cs.size()) > opt.max_configs) cs.resize(size_t(opt.max_configs));
    for (const auto& c : cs) configs.push_back({bs, c});
  }
  TuneReport report;
  report.candidates = int(configs.size());
  if (configs.empty()) throw Error(ErrorCode::Unsupported, "no valid config to tune for " + spec.to_string());

  // 1. Compile every candidate in parallel; a failure skips that candidate.
  std::vector<char> usable(configs.size(), 0);
  {
    int done = 0;
    std::mutex mu;
    parallel_for(configs.size(), opt.jobs, [&](size_t i) {
      try {
        backend.prepare(configs[i].spec, configs[i].config);
        usable[i] = 1;
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(mu);
        ++report.compile_failures;
        log.line(fmt::format("skip {}: {}", configs[i].name(), first_line(e.what())));
      }
      std::lock_guard<std::mutex> lock(mu);
      log.progress("compile", ++done, int(configs.size()));
    });
  }

  // 2. Only candidates whose output matches the reference may compete.
  std::vector<Candidate> survivors;
  for (size_t i = 0; i < configs.size(); ++i) {
    if (!usable[i]) continue;
    std::string why;
    bool ok = false;
    try {
      ok = backend.verify(configs[i].spec, configs[i].config, kVerifyTokens, &why);
    } catch (const std::exception& e) {
      why = first_line(e.what());
    }
    if (ok) {
      survivors.push_back(configs[i]);
    } else {
      ++report.wrong_answers;
      log.line(fmt::format("skip {}: output check failed: {}", configs[i].name(), why));
    }
    log.progress("verify", int(i + 1), int(configs.size()));
  }
  if (survivors.empty()) throw Error(ErrorCode::Unsupported, "no candidate compiled and verified for " + spec.to_string());

  // 3. Per bucket: time everyone once, re-time the best few, record the winner
  //    (whichever backend it belongs to).
  int bucket_index = 0;
  const int sm_count = backend.device().sm_count;
  for (int64_t bucket : opt.buckets) {
    std::vector<std::pair<double, Candidate>> timed;
    for (const auto& c : survivors) {
      // Token tiles far wider than the bucket only waste work.
      if (c.config.block_n > std::max<int64_t>(32, 2 * bucket)) continue;
      if (!kernel_family(c.spec.backend).worth_timing(c.spec, c.config, bucket, sm_count)) continue;
      try {
        timed.push_back({backend.time_ms(c.spec, c.config, bucket), c});
        log.timed(c.spec, c.config, bucket, timed.back().first);
      } catch (const std::exception& e) {
        log.line(fmt::format("skip {} at {} tokens: {}", c.name(), bucket, first_line(e.what())));
      }
    }
    if (timed.empty())
      for (const auto& c : survivors) timed.push_back({backend.time_ms(c.spec, c.config, bucket), c});
    auto by_time = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::stable_sort(timed.begin(), timed.end(), by_time);
    const size_t top = std::min(timed.size(), size_t(std::max(1, opt.retime_top)));
    for (size_t i = 0; i < top; ++i) timed[i].first = backend.time_ms(timed[i].second.spec, timed[i].second.config, bucket);
    std::stable_sort(timed.begin(), timed.begin() + long(top), by_time);

    const Candidate& win = timed[0].second;
    TuningRecord r;
    r.key = TuningKey::of(backend.device(), spec, bucket);
    r.backend = win.spec.backend;
    r.config = win.config;
    r.time_ms = timed[0].first;
    for (size_t i = 1; i < timed.size() && int(i) <= opt.runner_ups; ++i) r.runner_up_ms.push_back(timed[i].first);
    r.baseline_ms = backend.baseline_ms(spec, bucket);
    store.put(r);
    report.records.push_back(r);
    log.line(fmt::format("{} {} m{} k{} bucket {:>5}: {} {:.4f} ms ({:.2f}x cuBLAS {:.4f} ms){}", op_name(spec.op),
                         dtype_name(spec.dtype), spec.m, spec.k, bucket, win.name(), r.time_ms,
                         r.baseline_ms / r.time_ms, r.baseline_ms,
                         r.runner_up_ms.empty() ? "" : fmt::format(", next {:.4f} ms", r.runner_up_ms[0])));
    log.progress("time", ++bucket_index, int(opt.buckets.size()));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace samoyeds
