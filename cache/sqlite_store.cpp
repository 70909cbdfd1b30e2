#include "cache/sqlite_store.hpp"

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"

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
Statement& Statement::bind_value(int i, const sqlite3_value* v) {
  sqlite3_bind_value(stmt_, i, v);
  return *this;
}
void Statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
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

namespace {

namespace fs = std::filesystem;

bool is_damage(int rc) { return (rc & 0xff) == SQLITE_CORRUPT || (rc & 0xff) == SQLITE_NOTADB; }

// access() rather than trying: a failed create would leave an empty file behind.
bool writable_here(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  const std::string dir = parent.empty() ? "." : parent.string();
  if (access(dir.c_str(), W_OK) != 0) return false;  // no -wal, -shm or journal possible
  return !fs::exists(path) || access(path.c_str(), W_OK) == 0;
}

std::string file_uri(const std::string& path, const char* params) {
  std::string out = "file:";
  for (char c : path) {
    if (c == '?' || c == '#' || c == '%')
      out += fmt::format("%{:02X}", unsigned(static_cast<unsigned char>(c)));
    else
      out += c;
  }
  return out + "?" + params;
}

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// A raw read-only handle for inspection and salvage: without immutable the
// file's WAL is read too; immutable where the folder allows no -shm.
sqlite3* open_read_only(const std::string& path, std::string* error) {
  for (const char* params : {"mode=ro", "mode=ro&immutable=1"}) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file_uri(path, params).c_str(), &db,
                             SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX, nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(db, 30000);
      rc = sqlite3_exec(db, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
    }
    if (rc == SQLITE_OK) return db;
    *error = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    if (is_damage(rc)) return nullptr;
  }
  return nullptr;
}

// First lines of PRAGMA quick_check/integrity_check, "ok" when clean.
std::string check(sqlite3* db, const char* pragma) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, pragma, -1, &st, nullptr) != SQLITE_OK) return sqlite3_errmsg(db);
  std::string out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    const auto* t = sqlite3_column_text(st, 0);
    if (!out.empty()) out += "; ";
    out += t ? reinterpret_cast<const char*>(t) : "";
  }
  if (rc != SQLITE_DONE) out += (out.empty() ? "" : "; ") + std::string(sqlite3_errmsg(db));
  sqlite3_finalize(st);
  for (auto& c : out)
    if (c == '\n') c = ' ';  // one message on one line
  return out;
}

}  // namespace

std::string move_cache_aside(const std::string& path) {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  std::string to = path + ".corrupt-" + stamp;
  for (int i = 1; fs::exists(to); ++i) to = fmt::format("{}.corrupt-{}-{}", path, stamp, i);
  std::error_code ec;
  fs::rename(path, to, ec);
  if (ec) throw Error(ErrorCode::CacheError, fmt::format("cannot move damaged cache '{}' aside: {}", path, ec.message()));
  for (const char* side : {"-wal", "-shm", "-journal"}) fs::rename(path + side, to + side, ec);
  return to;
}

void SqliteStore::close() {
  sqlite3_close(db_);
  db_ = nullptr;
}

int SqliteStore::open_file(bool writable, bool immutable, std::string* damage) {
  close();
  damage->clear();
  int rc;
  if (writable)
    rc = sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                         nullptr);
  else
    rc = sqlite3_open_v2(file_uri(path_, immutable ? "mode=ro&immutable=1" : "mode=ro").c_str(), &db_,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) return rc;
  sqlite3_busy_timeout(db_, 30000);
  // Touch the file first: a non-database file fails here.
  rc = sqlite3_exec(db_, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
  if (is_damage(rc)) *damage = sqlite3_errmsg(db_);
  if (rc != SQLITE_OK) return rc;
  // Malformed pages show only when read: quick_check walks every b-tree (no
  // index cross-check); 28 ms for a 60 MB file of 300 blobs of 200 KB
  // (2026-12-07, file in the page cache).
  const std::string q = check(db_, "PRAGMA quick_check(3)");
  if (q != "ok") {
    *damage = q;
    return SQLITE_CORRUPT;
  }
  return SQLITE_OK;
}

SqliteStore::SqliteStore(const std::string& path, OpenMode mode) : path_(path), mode_(mode) {
  std::error_code ec;
  const fs::path parent = fs::path(path).parent_path();
  if (mode != OpenMode::Foreign && !parent.empty()) fs::create_directories(parent, ec);  // failure shows up at open
  const bool existed = fs::exists(path);
  if (mode == OpenMode::Foreign && !existed) throw Error(ErrorCode::IoError, "'" + path + "' does not exist");
  bool writable = mode != OpenMode::Foreign && writable_here(path);
  const ino_t opened_inode = inode_of(path);
  std::string damage;
  int rc = open_file(writable, mode == OpenMode::Foreign, &damage);
  if (rc != SQLITE_OK && damage.empty() && !writable && existed && mode != OpenMode::Foreign)
    rc = open_file(false, true, &damage);  // a WAL file in a folder without room for its -shm
  if (!damage.empty()) {
    if (mode != OpenMode::Use || !writable) {
      close();
      throw Error(ErrorCode::CacheError,
                  fmt::format("cache file '{}' is damaged ({}){}", path, damage,
                              mode == OpenMode::Foreign ? ""
                                                        : "; `samoyeds cache verify --repair` salvages what is readable"));
    }
    close();
    // Another process may have replaced it already: then only reopen.
    if (inode_of(path) == opened_inode) {
      moved_aside_to_ = move_cache_aside(path);
      log(LogLevel::Warn, fmt::format("cache file '{}' was damaged ({}); moved it to '{}' and started a fresh cache",
                                      path, damage, moved_aside_to_));
    }
    rc = open_file(true, false, &damage);
  }
  if (rc != SQLITE_OK) {
    const std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
    close();
    throw Error(ErrorCode::CacheError, fmt::format("cannot open cache file '{}': {}", path, msg));
  }
  read_only_ = mode == OpenMode::Foreign || !writable || sqlite3_db_readonly(db_, "main") == 1;
  try {
    init_schema();
  } catch (...) {
    close();
    throw;
  }
}

SqliteStore::~SqliteStore() { sqlite3_close(db_); }

std::string SqliteStore::last_error() const {
  if (!db_) return "not open";
  std::string msg = sqlite3_errmsg(db_);
  const int ext = sqlite3_extended_errcode(db_);
  // A full disk, a quota or RLIMIT_FSIZE: SQLite says "disk I/O error" for
  // most of them and has forgotten errno by the time the commit fails.
  if ((ext & 0xff) == SQLITE_FULL || ext == SQLITE_IOERR_WRITE || ext == SQLITE_IOERR_TRUNCATE) {
    std::string why = "a write failed: a full disk, a quota or a failing disk";
    rlimit lim{};
    struct statvfs fs_info {};
    const std::string dir = fs::path(path_).has_parent_path() ? fs::path(path_).parent_path().string() : ".";
    if (getrlimit(RLIMIT_FSIZE, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY)
      why = fmt::format("out of disk space: the file-size limit (RLIMIT_FSIZE, {} bytes) is reached",
                        uint64_t(lim.rlim_cur));
    else if (statvfs(dir.c_str(), &fs_info) == 0 && uint64_t(fs_info.f_bavail) * fs_info.f_frsize < (64u << 20))
      why = "out of disk space: the disk is full";
    msg += fmt::format(" ({}; the write was rolled back, the cache is intact)", why);
  }
  return msg;
}

void SqliteStore::fail(const std::string& what) const {
  throw Error(ErrorCode::CacheError, fmt::format("cache file '{}': {}: {}", path_, what, last_error()));
}

void SqliteStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    sqlite3_free(err);
    throw Error(ErrorCode::CacheError, fmt::format("cache file '{}': {}", path_, last_error()));
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

std::string SqliteStore::integrity_check() { return check(db_, "PRAGMA integrity_check(10)"); }

void SqliteStore::init_schema() {
  // What the file holds already: an empty file becomes a cache; another
  // application's database is never turned into one.
  std::vector<std::string> tables;
  {
    Statement t(*this, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
    while (t.step()) tables.push_back(t.text(0));
  }
  auto has = [&](const char* name) { return std::find(tables.begin(), tables.end(), name) != tables.end(); };
  if (!has("schema_info") && (!tables.empty() || mode_ == OpenMode::Foreign)) {
    std::string names;
    for (const auto& t : tables) names += (names.empty() ? "" : ", ") + t;
    throw Error(ErrorCode::CacheError,
                fmt::format("'{}' is not a samoyeds cache or export: {}", path_,
                            tables.empty() ? std::string("it holds no tables")
                                           : "it holds another application's tables (" + names + ")"));
  }
  if (mode_ == OpenMode::Foreign && (!has("binaries") || !has("tuning_records")))
    throw Error(ErrorCode::CacheError,
                fmt::format("'{}' is not a samoyeds export: it lacks the binaries or tuning_records table", path_));
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
      // Version 3's columns, added to a version 2 table (defaults: unverified, no gathered config).
      std::vector<std::string> have;
      {
        Statement info(*this, "PRAGMA table_info(tuning_records)");
        while (info.step()) have.push_back(info.text(1));
      }
      for (const char* col : {"verified_tokens INTEGER NOT NULL DEFAULT 0", "verified_path TEXT NOT NULL DEFAULT ''",
                              "gathered_config TEXT NOT NULL DEFAULT ''", "gathered_ms REAL NOT NULL DEFAULT 0"}) {
        const std::string name = std::string(col).substr(0, std::string(col).find(' '));
        if (std::find(have.begin(), have.end(), name) == have.end())
          exec(fmt::format("ALTER TABLE tuning_records ADD COLUMN {}", col).c_str());
      }
      // Who is compiling which binary now, so that processes sharing the file
      // compile each kernel once (BinaryCache::claim). Older readers ignore it.
      exec("CREATE TABLE IF NOT EXISTS compile_claims (key TEXT PRIMARY KEY, pid INTEGER NOT NULL,"
           " claimed_unix INTEGER NOT NULL)");
      exec(fmt::format("UPDATE schema_info SET value = '{}' WHERE name = 'version' AND value IN ('1', '2')",
                       kSchemaVersion)
               .c_str());
    });
  }
  Statement v(*this, "SELECT value FROM schema_info WHERE name = 'version'");
  if (!v.step()) fail("missing schema version");
  const int version = int(std::stol(v.text(0)));
  if (version < kOldestReadableVersion || version > kSchemaVersion)
    fail(fmt::format("schema version {} but this library reads versions {} to {}", version, kOldestReadableVersion,
                     kSchemaVersion));
  schema_version_ = version;
  if (read_only_ && mode_ == OpenMode::Use)
    log(LogLevel::Warn, fmt::format("cache file '{}' cannot be written here: using it read-only (its kernels and "
                                    "tuning records are used; new kernels are compiled in memory, not stored)",
                                    path_));
}

std::string cache_damage(const std::string& path) {
  if (!fs::exists(path)) return "";
  std::string error;
  sqlite3* db = open_read_only(path, &error);
  if (!db) return error;
  const std::string result = check(db, "PRAGMA integrity_check(10)");
  sqlite3_close(db);
  return result == "ok" ? "" : result;
}

namespace {
// Copies the rows of `table` that can still be read, in rowid order: where a
// page is unreadable the scan starts again past the last row it read, one
// rowid further each time, and gives up on that table after a run of failures.
int64_t copy_readable_rows(sqlite3* src, SqliteStore& dst, const std::string& table, int64_t* unreadable) {
  // The columns both have: an older file lacks the newer ones, which keep their defaults.
  std::vector<std::string> src_cols, cols;
  {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(src, ("PRAGMA table_info(" + table + ")").c_str(), -1, &q, nullptr) == SQLITE_OK)
      while (sqlite3_step(q) == SQLITE_ROW)
        src_cols.emplace_back(reinterpret_cast<const char*>(sqlite3_column_text(q, 1)));
    sqlite3_finalize(q);
    Statement info(dst, ("PRAGMA table_info(" + table + ")").c_str());
    while (info.step())
      if (std::find(src_cols.begin(), src_cols.end(), info.text(1)) != src_cols.end()) cols.push_back(info.text(1));
  }
  if (cols.empty()) {
    ++*unreadable;  // the table's schema itself is unreadable
    return 0;
  }
  std::string names, marks;
  for (const auto& c : cols) {
    names += (names.empty() ? "" : ", ") + c;
    marks += marks.empty() ? "?" : ", ?";
  }
  const std::string select = fmt::format("SELECT rowid, {} FROM {} WHERE rowid >= ? ORDER BY rowid", names, table);
  const std::string insert = fmt::format("INSERT OR IGNORE INTO {} ({}) VALUES ({})", table, names, marks);
  int64_t copied = 0, next = INT64_MIN;
  int failures_in_a_row = 0;
  dst.transaction([&] {
    Statement ins(dst, insert.c_str());
    while (failures_in_a_row < 4096) {
      sqlite3_stmt* q = nullptr;
      if (sqlite3_prepare_v2(src, select.c_str(), -1, &q, nullptr) != SQLITE_OK) {
        ++*unreadable;  // the table's schema itself is unreadable
        return;
      }
      sqlite3_bind_int64(q, 1, next);
      int rc;
      while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        failures_in_a_row = 0;
        next = sqlite3_column_int64(q, 0) + 1;
        for (size_t c = 0; c < cols.size(); ++c) ins.bind_value(int(c) + 1, sqlite3_column_value(q, int(c) + 1));
        ins.run();
        ins.reset();
        ++copied;
      }
      sqlite3_finalize(q);
      if (rc == SQLITE_DONE) return;
      ++*unreadable;
      ++failures_in_a_row;
      next = next == INT64_MIN ? 1 : next + 1;
    }
  });
  return copied;
}
}  // namespace

SalvageResult salvage_cache(const std::string& path) {
  SalvageResult out;
  std::string error;
  sqlite3* src = open_read_only(path, &error);
  const std::string tmp = path + ".salvage";
  for (const char* side : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp + side);
  {
    SqliteStore dst(tmp);
    if (src) {
      out.binaries = copy_readable_rows(src, dst, "binaries", &out.unreadable);
      out.records = copy_readable_rows(src, dst, "tuning_records", &out.unreadable);
      sqlite3_close(src);
      // A row can be readable and its blob still damaged: the checksum decides.
      BinaryCache bins(dst);
      const auto bad = bins.corrupt_keys();
      out.binaries -= bins.remove(bad);
      out.unreadable += int64_t(bad.size());
    } else {
      ++out.unreadable;  // not a database at all: nothing to save
    }
    dst.exec("PRAGMA wal_checkpoint(TRUNCATE)");
  }
  if (fs::exists(path)) out.moved_aside_to = move_cache_aside(path);
  fs::rename(tmp, path);
  return out;
}

}  // namespace samoyeds
