#include "cache/sqlite_store.hpp"

#include <filesystem>

#include <fmt/format.h>

#include "samoyeds/environment.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

Statement::Statement(SqliteStore& store, const char* sql) : store_(store) {
  if (sqlite3_prepare_v2(store.db(), sql, -1, &stmt_, nullptr) != SQLITE_OK)
    store.fail(fmt::format("preparing '{}'", sql));
}
Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement& Statement::bind(int i, const std::string& v) {
  sqlite3_bind_text(stmt_, i, v.c_str(), int(v.size()), SQLITE_TRANSIENT);
  return *this;
}
Statement& Statement::bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}
Statement& Statement::bind(int i, double v) {
  sqlite3_bind_double(stmt_, i, v);
  return *this;
}
Statement& Statement::bind_blob(int i, const void* data, size_t size) {
  sqlite3_bind_blob64(stmt_, i, data, sqlite3_uint64(size), SQLITE_TRANSIENT);
  return *this;
}
bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  store_.fail("executing statement");
}
void Statement::run() {
  while (step()) {
  }
}
std::string Statement::text(int col) const {
  const auto* p = sqlite3_column_text(stmt_, col);
  return p ? std::string(reinterpret_cast<const char*>(p), size_t(sqlite3_column_bytes(stmt_, col))) : "";
}
int64_t Statement::integer(int col) const { return sqlite3_column_int64(stmt_, col); }
double Statement::real(int col) const { return sqlite3_column_double(stmt_, col); }
std::vector<char> Statement::blob(int col) const {
  const char* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  return p ? std::vector<char>(p, p + sqlite3_column_bytes(stmt_, col)) : std::vector<char>();
}

SqliteStore::SqliteStore(const std::string& path) : path_(path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);  // failure shows up at open

  int rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                           nullptr);
  if (rc != SQLITE_OK && fs::exists(path)) {
    sqlite3_close(db_);
    db_ = nullptr;
    rc = sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_FULLMUTEX, nullptr);
    read_only_ = true;
  }
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw Error(ErrorCode::CacheError, fmt::format("cannot open cache file '{}': {}", path, msg));
  }
  sqlite3_busy_timeout(db_, 30000);
  try {
    init_schema();
  } catch (...) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw;
  }
}

SqliteStore::~SqliteStore() { sqlite3_close(db_); }

void SqliteStore::fail(const std::string& what) const {
  throw Error(ErrorCode::CacheError,
              fmt::format("cache file '{}': {}: {}", path_, what, db_ ? sqlite3_errmsg(db_) : "not open"));
}

void SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown";
    sqlite3_free(err);
    throw Error(ErrorCode::CacheError, fmt::format("cache file '{}': {}", path_, msg));
  }
}

void SqliteStore::transaction(const std::function<void()>& fn) {
  exec("BEGIN IMMEDIATE");
  try {
    fn();
    exec("COMMIT");
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
}

void SqliteStore::init_schema() {
  // Touch the file first: a non-database file fails here with a clear message.
  if (sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr) != SQLITE_OK)
    fail("not a usable SQLite database (delete it, or point SAMOYEDS_CACHE_DIR elsewhere)");
  if (!read_only_) {
    exec("PRAGMA journal_mode=WAL");
    transaction([&] {
      exec("CREATE TABLE IF NOT EXISTS schema_info (name TEXT PRIMARY KEY, value TEXT NOT NULL)");
      exec(fmt::format("INSERT OR IGNORE INTO schema_info VALUES ('version', '{}')", kSchemaVersion).c_str());
      exec(
          "CREATE TABLE IF NOT EXISTS binaries ("
          " key TEXT PRIMARY KEY, arch TEXT NOT NULL, nvrtc TEXT NOT NULL, library TEXT NOT NULL,"
          " kernel_name TEXT NOT NULL, description TEXT NOT NULL, registers INTEGER, spill_bytes INTEGER,"
          " compile_ms REAL, size INTEGER NOT NULL, checksum TEXT NOT NULL, created_unix INTEGER NOT NULL,"
          " blob BLOB NOT NULL)");
      // Version 2 added tuning records; a version 1 file gains the table here.
      exec(
          "CREATE TABLE IF NOT EXISTS tuning_records ("
          " gpu TEXT NOT NULL, cc TEXT NOT NULL, sm_count INTEGER NOT NULL, driver INTEGER NOT NULL,"
          " nvrtc TEXT NOT NULL, library TEXT NOT NULL, op TEXT NOT NULL, dtype TEXT NOT NULL,"
          " m INTEGER NOT NULL, k INTEGER NOT NULL, sparsity TEXT NOT NULL, experts INTEGER NOT NULL,"
          " epilogue TEXT NOT NULL, bucket INTEGER NOT NULL, backend TEXT NOT NULL, config TEXT NOT NULL,"
          " time_ms REAL NOT NULL, runner_up_ms TEXT NOT NULL, baseline_ms REAL NOT NULL,"
          " created_unix INTEGER NOT NULL,"
          " PRIMARY KEY (gpu, cc, sm_count, driver, nvrtc, library, op, dtype, m, k, sparsity, experts, epilogue,"
          " bucket))");
      exec(fmt::format("UPDATE schema_info SET value = '{}' WHERE name = 'version' AND value = '1'", kSchemaVersion)
               .c_str());
    });
  }
  Statement v(*this, "SELECT value FROM schema_info WHERE name = 'version'");
  if (!v.step()) fail("missing schema version");
  const int version = int(std::stol(v.text(0)));
  if (version != kSchemaVersion)
    fail(fmt::format("schema version {} but this library reads version {}", version, kSchemaVersion));
  if (read_only_) log(LogLevel::Warn, fmt::format("cache file '{}' is read-only: nothing new will be stored", path_));
}

}  // namespace samoyeds
