#include "cache/record_store.hpp"

#include <ctime>
#include <sstream>

#include <fmt/format.h>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

constexpr const char* kColumns =
    "gpu, cc, sm_count, driver, nvrtc, library, op, dtype, m, k, sparsity, experts, epilogue, bucket,"
    " backend, config, time_ms, runner_up_ms, baseline_ms, created_unix";
constexpr const char* kKeyWhere =
    "gpu = ? AND cc = ? AND sm_count = ? AND driver = ? AND nvrtc = ? AND library = ? AND op = ? AND dtype = ?"
    " AND m = ? AND k = ? AND sparsity = ? AND experts = ? AND epilogue = ? AND bucket = ?";

std::string cc_text(const DeviceFingerprint& d) { return fmt::format("{}.{}", d.cc_major, d.cc_minor); }

// Binds the 14 key columns starting at index `first`.
void bind_key(Statement& s, int first, const TuningKey& k) {
  const int i = first;
  s.bind(i + 0, k.device.gpu_name).bind(i + 1, cc_text(k.device)).bind(i + 2, int64_t(k.device.sm_count));
  s.bind(i + 3, int64_t(k.device.driver_version)).bind(i + 4, k.device.nvrtc_version);
  s.bind(i + 5, k.device.library_version).bind(i + 6, std::string(op_name(k.op)));
  s.bind(i + 7, std::string(dtype_name(k.dtype))).bind(i + 8, k.m).bind(i + 9, k.k);
  s.bind(i + 10, k.sparsity.to_string()).bind(i + 11, int64_t(k.experts));
  s.bind(i + 12, std::string(epilogue_name(k.epilogue))).bind(i + 13, k.bucket);
}

Epilogue parse_epilogue(const std::string& s) {
  if (s == "none") return Epilogue::None;
  if (s == "silu") return Epilogue::Silu;
  if (s == "gated_silu") return Epilogue::GatedSilu;
  throw Error(ErrorCode::CacheError, "unknown epilogue '" + s + "' in a tuning record");
}

TuningRecord read(const Statement& q) {
  TuningRecord r;
  TuningKey& k = r.key;
  k.device.gpu_name = q.text(0);
  std::sscanf(q.text(1).c_str(), "%d.%d", &k.device.cc_major, &k.device.cc_minor);
  k.device.sm_count = int(q.integer(2));
  k.device.driver_version = int(q.integer(3));
  k.device.nvrtc_version = q.text(4);
  k.device.library_version = q.text(5);
  k.op = parse_op(q.text(6));
  k.dtype = parse_dtype(q.text(7));
  k.m = q.integer(8);
  k.k = q.integer(9);
  k.sparsity = SparsityParams::parse(q.text(10));
  k.experts = int(q.integer(11));
  k.epilogue = parse_epilogue(q.text(12));
  k.bucket = q.integer(13);
  try {
    r.backend = parse_backend(q.text(14));
  } catch (const Error&) {
    throw Error(ErrorCode::CacheError, "unknown backend '" + q.text(14) + "' in a tuning record");
  }
  r.config = TileConfig::parse(q.text(15));
  r.time_ms = q.real(16);
  std::istringstream ups(q.text(17));
  for (double v; ups >> v;) r.runner_up_ms.push_back(v);
  r.baseline_ms = q.real(18);
  r.created_unix = q.integer(19);
  return r;
}

}  // namespace

bool RecordStore::put(const TuningRecord& r, PutPolicy policy) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only()) return false;
  bool written = false;
  store_.transaction([&] {
    if (policy == PutPolicy::KeepFaster) {
      Statement q(store_, fmt::format("SELECT time_ms FROM tuning_records WHERE {}", kKeyWhere).c_str());
      bind_key(q, 1, r.key);
      if (q.step() && q.real(0) <= r.time_ms) return;
    }
    std::string ups;
    for (double v : r.runner_up_ms) ups += fmt::format("{}{:.6g}", ups.empty() ? "" : " ", v);
    Statement ins(store_, fmt::format("INSERT OR REPLACE INTO tuning_records ({}) VALUES "
                                      "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                      kColumns)
                              .c_str());
    bind_key(ins, 1, r.key);
    ins.bind(15, std::string(backend_name(r.backend))).bind(16, r.config.to_string()).bind(17, r.time_ms);
    ins.bind(18, ups).bind(19, r.baseline_ms);
    ins.bind(20, r.created_unix ? r.created_unix : int64_t(std::time(nullptr)));
    ins.run();
    written = true;
  });
  return written;
}

std::optional<TuningRecord> RecordStore::get(const TuningKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, fmt::format("SELECT {} FROM tuning_records WHERE {}", kColumns, kKeyWhere).c_str());
  bind_key(q, 1, key);
  if (!q.step()) return std::nullopt;
  return read(q);
}

std::vector<TuningRecord> RecordStore::same_kernel(const TuningKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, fmt::format("SELECT {} FROM tuning_records WHERE op = ? AND dtype = ? AND m = ? AND k = ?"
                                  " AND sparsity = ? AND experts = ? AND epilogue = ? ORDER BY bucket",
                                  kColumns)
                          .c_str());
  q.bind(1, std::string(op_name(key.op))).bind(2, std::string(dtype_name(key.dtype))).bind(3, key.m).bind(4, key.k);
  q.bind(5, key.sparsity.to_string()).bind(6, int64_t(key.experts)).bind(7, std::string(epilogue_name(key.epilogue)));
  std::vector<TuningRecord> out;
  while (q.step()) out.push_back(read(q));
  return out;
}

std::vector<TuningRecord> RecordStore::list() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, fmt::format("SELECT {} FROM tuning_records ORDER BY gpu, op, dtype, m, k, bucket", kColumns)
                          .c_str());
  std::vector<TuningRecord> out;
  while (q.step()) out.push_back(read(q));
  return out;
}

int RecordStore::prune(const std::function<bool(const TuningRecord&)>& keep) {
  std::vector<TuningRecord> all = list();
  std::lock_guard<std::mutex> lock(mu_);
  int removed = 0;
  if (store_.read_only()) return 0;
  store_.transaction([&] {
    for (const auto& r : all) {
      if (keep(r)) continue;
      Statement del(store_, fmt::format("DELETE FROM tuning_records WHERE {}", kKeyWhere).c_str());
      bind_key(del, 1, r.key);
      del.run();
      ++removed;
    }
  });
  return removed;
}

}  // namespace samoyeds
