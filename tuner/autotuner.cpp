#include "tuner/autotuner.hpp"

#include <algorithm>
#include <chrono>
#include <map>
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

// The runner's checks, an exception counting as a failed check (*why: its first line).
bool small_check(CandidateRunner& runner, const KernelSpec& spec, const TileConfig& config, std::string* why) {
  try {
    return runner.verify(spec, config, kVerifyTokens, why);
  } catch (const std::exception& e) {
    *why = first_line(e.what());
    return false;
  }
}
bool check_at_bucket(CandidateRunner& runner, const KernelSpec& spec, const TileConfig& config, int64_t bucket,
                     std::string* path, std::string* why) {
  try {
    return runner.verify_at_bucket(spec, config, bucket, path, why);
  } catch (const std::exception& e) {
    *why = first_line(e.what());
    return false;
  }
}

}  // namespace

TuneReport tune_spec(const KernelSpec& spec, CandidateRunner& runner, RecordStore* store, const TuneOptions& opt,
                     const TuneLog& log) {
  const auto start = std::chrono::steady_clock::now();
  spec.validate();
  if (opt.buckets.empty()) throw Error(ErrorCode::InvalidArgument, "no token buckets to tune");
  if (opt.backends.empty()) throw Error(ErrorCode::InvalidArgument, "no backend to tune");
  const int sm_count = runner.device().sm_count;
  // Candidates of every backend this arch supports (wgmma_sp's search space
  // is empty below sm_90a).
  struct Candidate {
    KernelSpec spec;
    TileConfig config;
    std::vector<int64_t> default_for;  // Candidates::Defaults: the buckets it is the default of
    std::string name() const { return fmt::format("{}/{}", backend_name(spec.backend), config.to_string()); }
  };
  std::vector<Candidate> configs;
  for (Backend b : opt.backends) {
    KernelSpec bs = spec;
    bs.backend = b;
    const KernelFamily& family = kernel_family(b);
    if (opt.candidates == TuneOptions::Candidates::Defaults) {
      if (family.search_space(bs).empty()) continue;  // not on this arch
      for (int64_t bucket : opt.buckets) {
        const TileConfig d = family.default_config(bs, bucket, sm_count);
        auto same = std::find_if(configs.begin(), configs.end(),
                                 [&](const Candidate& c) { return c.spec.backend == b && c.config == d; });
        if (same == configs.end()) configs.push_back({bs, d, {bucket}});
        else same->default_for.push_back(bucket);
      }
      continue;
    }
    std::vector<TileConfig> cs;
    if (opt.candidates == TuneOptions::Candidates::Named) {
      for (const std::string& text : opt.named) {
        try {  // a name with another backend's schedule is not this backend's
          const TileConfig c = parse_config(text, b);
          if (auto why = family.invalid_reason(bs, c))
            log.line(fmt::format("skip {}/{}: {}", backend_name(b), text, *why));
          else
            cs.push_back(c);
        } catch (const Error&) {
          log.line(fmt::format("skip {}/{}: not a {} config name", backend_name(b), text, backend_name(b)));
        }
      }
    } else {
      cs = family.search_space(bs);
    }
    if (opt.max_configs > 0 && int(cs.size()) > opt.max_configs) cs.resize(size_t(opt.max_configs));
    for (const auto& c : cs) configs.push_back({bs, c, {}});
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
        runner.prepare(configs[i].spec, configs[i].config);
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
    if (small_check(runner, configs[i].spec, configs[i].config, &why)) {
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
  for (int64_t bucket : opt.buckets) {
    std::vector<std::pair<double, Candidate>> timed;
    for (const auto& c : survivors) {
      if (opt.candidates == TuneOptions::Candidates::Defaults) {
        if (std::find(c.default_for.begin(), c.default_for.end(), bucket) == c.default_for.end()) continue;
      } else if (opt.candidates == TuneOptions::Candidates::SearchSpace) {
        // Token tiles far wider than the bucket only waste work.
        if (c.config.block_n > std::max<int64_t>(32, 2 * bucket)) continue;
        if (!kernel_family(c.spec.backend).worth_timing(c.spec, c.config, bucket, sm_count)) continue;
      }
      try {
        timed.push_back({runner.time_ms(c.spec, c.config, bucket), c});
        log.timed(c.spec, c.config, bucket, timed.back().first);
      } catch (const std::exception& e) {
        log.line(fmt::format("skip {} at {} tokens: {}", c.name(), bucket, first_line(e.what())));
      }
    }
    if (timed.empty()) {
      // Chosen candidates (defaults, named) that could not run here stand
      // for nothing else: the bucket is reported missing, not filled in.
      if (opt.candidates != TuneOptions::Candidates::SearchSpace) {
        log.line(fmt::format("no candidate ran at {} tokens", bucket));
        log.progress("time", ++bucket_index, int(opt.buckets.size()));
        continue;
      }
      for (const auto& c : survivors) timed.push_back({runner.time_ms(c.spec, c.config, bucket), c});
    }
    auto by_time = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::stable_sort(timed.begin(), timed.end(), by_time);
    // The best few of each backend timed again; the re-timed ones go first,
    // so that the winner and each backend's best are re-timed figures and a
    // quick pass never overtakes them.
    std::map<Backend, int> per_backend;
    std::vector<std::pair<double, Candidate>> retimed, quick;
    for (auto& t : timed) (per_backend[t.second.spec.backend]++ < std::max(1, opt.retime_top) ? retimed : quick).push_back(t);
    for (auto& t : retimed) t.first = runner.time_ms(t.second.spec, t.second.config, bucket);
    std::stable_sort(retimed.begin(), retimed.end(), by_time);
    size_t n_retimed = retimed.size();
    timed = retimed;
    timed.insert(timed.end(), quick.begin(), quick.end());

    // The winner: the fastest candidate whose output also matches at this
    // bucket on the real shape, through the launch dispatch will take.
    TuningRecord r;
    for (auto it = timed.begin(); it != timed.end();) {
      std::string why;
      if (check_at_bucket(runner, it->second.spec, it->second.config, bucket, &r.verified_path, &why)) break;
      ++report.wrong_answers;
      log.line(fmt::format("skip {} at {} tokens: output check on the real shape failed: {}", it->second.name(),
                           bucket, why));
      if (size_t(it - timed.begin()) < n_retimed) --n_retimed;
      it = timed.erase(it);
    }
    // A winner from the quick pass is re-timed, so that a record's time is always a second figure.
    if (!timed.empty() && n_retimed == 0)
      timed[0].first = runner.time_ms(timed[0].second.spec, timed[0].second.config, bucket);
    if (timed.empty()) {
      log.line(fmt::format("no candidate verified at {} tokens", bucket));
      log.progress("time", ++bucket_index, int(opt.buckets.size()));
      continue;
    }
    const Candidate& win = timed[0].second;
    r.verified_tokens = bucket;
    r.key = TuningKey::of(runner.device(), spec, bucket);
    r.backend = win.spec.backend;
    r.config = win.config;
    r.time_ms = timed[0].first;
    // A winner that reads token rows in order: what calls that gather by id
    // run instead, verified and timed here too (its gathering twin, else
    // the fastest gathering candidate that verifies).
    const KernelFamily& family = kernel_family(win.spec.backend);
    if (family.reads_rows_in_order(win.config) && spec.op != Op::Down) {
      std::vector<Candidate> gathering = {
          {win.spec, family.gathered_config(win.spec, win.config, true, bucket, sm_count), {}}};
      // The record holds one backend: a gathered config of another cannot stand in.
      for (const auto& t : timed)
        if (t.second.spec.backend == win.spec.backend && !family.reads_rows_in_order(t.second.config))
          gathering.push_back(t.second);
      for (const Candidate& g : gathering) {
        std::string path, why;
        try {
          runner.prepare(g.spec, g.config);
        } catch (const std::exception& e) {
          log.line(fmt::format("skip {} as the gathered config at {} tokens: {}", g.name(), bucket,
                               first_line(e.what())));
          continue;
        }
        // The small check with partial tiles too (the twin did not compete, so it has not had it),
        // then the bucket's.
        if (!small_check(runner, g.spec, g.config, &why) ||
            !check_at_bucket(runner, g.spec, g.config, bucket, &path, &why)) {
          log.line(fmt::format("skip {} as the gathered config at {} tokens: output check failed: {}", g.name(),
                               bucket, why));
          continue;
        }
        try {
          r.gathered_ms = runner.time_ms(g.spec, g.config, bucket);
        } catch (const std::exception& e) {
          log.line(fmt::format("skip {} as the gathered config at {} tokens: {}", g.name(), bucket,
                               first_line(e.what())));
          continue;
        }
        r.gathered = g.config;
        break;
      }
      if (!r.gathered)
        log.line(fmt::format("{} at {} tokens: no gathered config verified; calls that gather take the untuned one",
                             win.name(), bucket));
    }
    for (size_t i = 1; i < timed.size() && int(i) <= opt.runner_ups; ++i) r.runner_up_ms.push_back(timed[i].first);
    try {
      r.baseline_ms = runner.baseline_ms(spec, bucket);
    } catch (const std::exception& e) {  // the record stands without its baseline
      log.line(fmt::format("cuBLAS baseline at {} tokens: {}", bucket, first_line(e.what())));
      r.baseline_ms = 0.0;
    }
    if (store) store->put(r);
    report.records.push_back(r);
    report.timed.emplace_back();
    for (const auto& t : timed) report.timed.back().push_back({t.second.spec, t.second.config, t.first});
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
