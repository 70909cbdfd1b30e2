#include "cache/record_store.hpp"

#include <cstdio>
#include <ctime>
#include <functional>
#include <sstream>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

std::string cc_text(const DeviceFingerprint& d) { return fmt::format("{}.{}", d.cc_major, d.cc_minor); }

Epilogue parse_epilogue(const std::string& s) {
  if (s == "none") return Epilogue::None;
  if (s == "silu") return Epilogue::Silu;
  if (s == "gated_silu") return Epilogue::GatedSilu;
  if (s == "bias") return Epilogue::Bias;
  if (s == "clamped_swiglu") return Epilogue::ClampedSwiglu;
  throw Error(ErrorCode::CacheError, "unknown epilogue '" + s + "' in a tuning record");
}

// The one list of a record's columns: the key's (what makes a timing valid
// elsewhere) and then the result's. The column lists, the WHERE clause,
// binding and reading all derive from it.
struct Column {
  const char* name;
  bool key;
  std::function<void(Statement&, int, const TuningRecord&)> bind;
  std::function<void(const Statement&, int, TuningRecord&)> read;
  int since = 2;  // the schema version that added it; older files lack it and it keeps its default
};

const std::vector<Column>& columns() {
  using S = Statement;
  using R = TuningRecord;
  static const std::vector<Column> all = {
      {"gpu", true, [](S& s, int i, const R& r) { s.bind(i, r.key.device.gpu_name); },
       [](const S& q, int c, R& r) { r.key.device.gpu_name = q.text(c); }},
      {"cc", true, [](S& s, int i, const R& r) { s.bind(i, cc_text(r.key.device)); },
       [](const S& q, int c, R& r) {
         std::sscanf(q.text(c).c_str(), "%d.%d", &r.key.device.cc_major, &r.key.device.cc_minor);
       }},
      {"sm_count", true, [](S& s, int i, const R& r) { s.bind(i, int64_t(r.key.device.sm_count)); },
       [](const S& q, int c, R& r) { r.key.device.sm_count = int(q.integer(c)); }},
      {"driver", true, [](S& s, int i, const R& r) { s.bind(i, int64_t(r.key.device.driver_version)); },
       [](const S& q, int c, R& r) { r.key.device.driver_version = int(q.integer(c)); }},
      {"nvrtc", true, [](S& s, int i, const R& r) { s.bind(i, r.key.device.nvrtc_version); },
       [](const S& q, int c, R& r) { r.key.device.nvrtc_version = q.text(c); }},
      {"library", true, [](S& s, int i, const R& r) { s.bind(i, r.key.device.library_version); },
       [](const S& q, int c, R& r) { r.key.device.library_version = q.text(c); }},
      {"op", true, [](S& s, int i, const R& r) { s.bind(i, std::string(op_name(r.key.op))); },
       [](const S& q, int c, R& r) { r.key.op = parse_op(q.text(c)); }},
      {"dtype", true, [](S& s, int i, const R& r) { s.bind(i, std::string(dtype_name(r.key.dtype))); },
       [](const S& q, int c, R& r) { r.key.dtype = parse_dtype(q.text(c)); }},
      {"m", true, [](S& s, int i, const R& r) { s.bind(i, r.key.m); },
       [](const S& q, int c, R& r) { r.key.m = q.integer(c); }},
      {"k", true, [](S& s, int i, const R& r) { s.bind(i, r.key.k); },
       [](const S& q, int c, R& r) { r.key.k = q.integer(c); }},
      {"sparsity", true, [](S& s, int i, const R& r) { s.bind(i, r.key.sparsity.to_string()); },
       [](const S& q, int c, R& r) { r.key.sparsity = SparsityParams::parse(q.text(c)); }},
      {"experts", true, [](S& s, int i, const R& r) { s.bind(i, int64_t(r.key.experts)); },
       [](const S& q, int c, R& r) { r.key.experts = int(q.integer(c)); }},
      {"epilogue", true, [](S& s, int i, const R& r) { s.bind(i, std::string(epilogue_name(r.key.epilogue))); },
       [](const S& q, int c, R& r) { r.key.epilogue = parse_epilogue(q.text(c)); }},
      {"bucket", true, [](S& s, int i, const R& r) { s.bind(i, r.key.bucket); },
       [](const S& q, int c, R& r) { r.key.bucket = q.integer(c); }},
      {"backend", false, [](S& s, int i, const R& r) { s.bind(i, std::string(backend_name(r.backend))); },
       [](const S& q, int c, R& r) {
         try {
           r.backend = parse_backend(q.text(c));
         } catch (const Error&) {
           throw Error(ErrorCode::CacheError, "unknown backend '" + q.text(c) + "' in a tuning record");
         }
       }},
      // The config by its text name, in its backend's field list (read after the backend).
      {"config", false, [](S& s, int i, const R& r) { s.bind(i, r.config.to_string()); },
       [](const S& q, int c, R& r) { r.config = parse_config(q.text(c), r.backend); }},
      {"time_ms", false, [](S& s, int i, const R& r) { s.bind(i, r.time_ms); },
       [](const S& q, int c, R& r) { r.time_ms = q.real(c); }},
      {"runner_up_ms", false,
       [](S& s, int i, const R& r) {
         std::string ups;
         for (double v : r.runner_up_ms) ups += fmt::format("{}{:.6g}", ups.empty() ? "" : " ", v);
         s.bind(i, ups);
       },
       [](const S& q, int c, R& r) {
         std::istringstream ups(q.text(c));
         for (double v; ups >> v;) r.runner_up_ms.push_back(v);
       }},
      {"baseline_ms", false, [](S& s, int i, const R& r) { s.bind(i, r.baseline_ms); },
       [](const S& q, int c, R& r) { r.baseline_ms = q.real(c); }},
      {"created_unix", false,
       [](S& s, int i, const R& r) { s.bind(i, r.created_unix ? r.created_unix : int64_t(std::time(nullptr))); },
       [](const S& q, int c, R& r) { r.created_unix = q.integer(c); }},
      {"verified_tokens", false, [](S& s, int i, const R& r) { s.bind(i, r.verified_tokens); },
       [](const S& q, int c, R& r) { r.verified_tokens = q.integer(c); }, 3},
      {"verified_path", false, [](S& s, int i, const R& r) { s.bind(i, r.verified_path); },
       [](const S& q, int c, R& r) { r.verified_path = q.text(c); }, 3},
      // "" when the winner gathers itself (read after the backend).
      {"gathered_config", false,
       [](S& s, int i, const R& r) { s.bind(i, r.gathered ? r.gathered->to_string() : std::string()); },
       [](const S& q, int c, R& r) {
         const std::string text = q.text(c);
         if (!text.empty()) r.gathered = parse_config(text, r.backend);
       },
       3},
      {"gathered_ms", false, [](S& s, int i, const R& r) { s.bind(i, r.gathered_ms); },
       [](const S& q, int c, R& r) { r.gathered_ms = q.real(c); }, 3},
  };
  return all;
}

// The columns a file of schema `version` has.
std::vector<const Column*> columns_of(int version) {
  std::vector<const Column*> out;
  for (const Column& c : columns())
    if (c.since <= version) out.push_back(&c);
  return out;
}

// "gpu, cc, ..." (every column of a file of schema `version`) and "gpu = ? AND cc = ? ..." (the key's).
std::string column_list(int version) {
  std::string t;
  for (const Column* c : columns_of(version)) t += fmt::format("{}{}", t.empty() ? "" : ", ", c->name);
  return t;
}
const std::string& key_where() {
  static const std::string text = [] {
    std::string t;
    for (const Column& c : columns())
      if (c.key) t += fmt::format("{}{} = ?", t.empty() ? "" : " AND ", c.name);
    return t;
  }();
  return text;
}

// Binds the key columns from index `first` on; returns the next index.
int bind_key(Statement& s, int first, const TuningKey& key) {
  TuningRecord r;
  r.key = key;
  for (const Column& c : columns())
    if (c.key) c.bind(s, first++, r);
  return first;
}

TuningRecord read(const Statement& q, int version) {
  TuningRecord r;
  int i = 0;
  for (const Column* c : columns_of(version)) c->read(q, i++, r);
  return r;
}

}  // namespace

bool RecordStore::put(const TuningRecord& r, PutPolicy policy) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only()) return false;
  bool written = false;
  store_.transaction([&] {
    if (policy == PutPolicy::KeepFaster) {
      // A verified record beats an unverified one (an older cache's) whatever their times.
      Statement q(store_,
                  fmt::format("SELECT time_ms, verified_tokens > 0 AND verified_path != '' FROM tuning_records "
                              "WHERE {}",
                              key_where())
                      .c_str());
      bind_key(q, 1, r.key);
      if (q.step()) {
        const bool old_verified = q.integer(1) != 0;
        if (old_verified && !r.verified()) return;
        if (old_verified == r.verified() && q.real(0) <= r.time_ms) return;
      }
    }
    // A writable file has the current schema (SqliteStore brings it up to date).
    std::string marks;
    for (size_t i = 0; i < columns().size(); ++i) marks += i ? ", ?" : "?";
    Statement ins(store_, fmt::format("INSERT OR REPLACE INTO tuning_records ({}) VALUES ({})",
                                      column_list(SqliteStore::kSchemaVersion), marks)
                              .c_str());
    int i = 1;
    for (const Column& c : columns()) c.bind(ins, i++, r);
    ins.run();
    written = true;
  });
  return written;
}

std::optional<TuningRecord> RecordStore::get(const TuningKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const int version = store_.schema_version();
  Statement q(store_,
              fmt::format("SELECT {} FROM tuning_records WHERE {}", column_list(version), key_where()).c_str());
  bind_key(q, 1, key);
  if (!q.step()) return std::nullopt;
  return read(q, version);
}

std::vector<TuningRecord> RecordStore::same_kernel(const TuningKey& key) {
  std::lock_guard<std::mutex> lock(mu_);
  const int version = store_.schema_version();
  Statement q(store_, fmt::format("SELECT {} FROM tuning_records WHERE op = ? AND dtype = ? AND m = ? AND k = ?"
                                  " AND sparsity = ? AND experts = ? AND epilogue = ? ORDER BY bucket",
                                  column_list(version))
                          .c_str());
  q.bind(1, std::string(op_name(key.op))).bind(2, std::string(dtype_name(key.dtype))).bind(3, key.m).bind(4, key.k);
  q.bind(5, key.sparsity.to_string()).bind(6, int64_t(key.experts)).bind(7, std::string(epilogue_name(key.epilogue)));
  std::vector<TuningRecord> out;
  while (q.step()) out.push_back(read(q, version));
  return out;
}

std::vector<TuningRecord> RecordStore::list() {
  std::lock_guard<std::mutex> lock(mu_);
  const int version = store_.schema_version();
  Statement q(store_, fmt::format("SELECT {} FROM tuning_records ORDER BY gpu, op, dtype, m, k, bucket",
                                  column_list(version))
                          .c_str());
  std::vector<TuningRecord> out;
  while (q.step()) out.push_back(read(q, version));
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
      Statement del(store_, fmt::format("DELETE FROM tuning_records WHERE {}", key_where()).c_str());
      bind_key(del, 1, r.key);
      del.run();
      ++removed;
    }
  });
  return removed;
}

}  // namespace samoyeds
