// The one SQLite file behind every cache table: WAL, busy timeout, schema
// version, read-only fallback. Knows bytes and keys, not kernels.
#pragma once
#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace samoyeds {

class SqliteStore;

// A prepared statement with typed binds and reads; finalized on destruction.
class Statement {
 public:
  Statement(SqliteStore& store, const char* sql);
  ~Statement();
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int i, const std::string& v);
  Statement& bind(int i, int64_t v);
  Statement& bind(int i, double v);
  Statement& bind_blob(int i, const void* data, size_t size);
  Statement& bind_value(int i, const sqlite3_value* v);  // a value read from another database
  void reset();  // ready to step again with new binds
  bool step();  // true while a row is available
  void run();   // step to completion
  std::string text(int col) const;
  int64_t integer(int col) const;
  double real(int col) const;
  std::vector<char> blob(int col) const;

 private:
  SqliteStore& store_;
  sqlite3_stmt* stmt_ = nullptr;
};

// How a file is opened.
enum class OpenMode {
  // The cache itself: created if missing; read-only (with one warning) when
  // the file or its folder cannot be written; a damaged file (not a database,
  // truncated, malformed pages) is moved aside to `<path>.corrupt-<time>`,
  // with one warning, and replaced by a fresh cache.
  Use,
  // An existing file exactly as it is (cache verify): damage throws, nothing is moved.
  Inspect,
  // A file from elsewhere (cache import): opened immutable, never changed;
  // anything but a samoyeds cache or export throws.
  Foreign,
};

class SqliteStore {
 public:
  // 1: binaries; 2: + tuning_records (compile_claims needs no bump); 3: + what a
  // record's winner was verified at and its gathered config. Writable files
  // are brought up to date on open; version 2 is still read where the file
  // cannot be written (its records then count as unverified).
  static constexpr int kSchemaVersion = 3;
  static constexpr int kOldestReadableVersion = 2;

  // Creates the file and its folder if needed (Use). Throws Error(CacheError)
  // naming the file.
  explicit SqliteStore(const std::string& path, OpenMode mode = OpenMode::Use);
  ~SqliteStore();
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  // The file's schema version: kSchemaVersion unless opened read-only.
  int schema_version() const { return schema_version_; }
  void exec(const char* sql);
  // BEGIN IMMEDIATE ... COMMIT, rolled back if fn throws.
  void transaction(const std::function<void()>& fn);
  [[noreturn]] void fail(const std::string& what) const;
  // SQLite's message for the last failure, naming a full disk as such.
  std::string last_error() const;
  sqlite3* db() { return db_; }
  // PRAGMA integrity_check: "ok", or SQLite's first messages.
  std::string integrity_check();
  // Where a damaged file was moved on open (Use), or "".
  const std::string& moved_aside_to() const { return moved_aside_to_; }

 private:
  // Opens path_ read-write, read-only or immutable; returns SQLite's code of
  // the first read (sqlite_master), and on damage a description in *damage.
  int open_file(bool writable, bool immutable, std::string* damage);
  void close();
  void init_schema();
  std::string path_;
  OpenMode mode_;
  sqlite3* db_ = nullptr;
  bool read_only_ = false;
  int schema_version_ = 0;
  std::string moved_aside_to_;
};

// Renames a damaged cache file (and its -wal/-shm) to `<path>.corrupt-<UTC
// time>`; returns the new name.
std::string move_cache_aside(const std::string& path);

// What `cache verify --repair` does: copies every row that can still be read
// from the damaged file into a fresh cache, moves the damaged file aside and
// puts the copy in its place.
struct SalvageResult {
  int64_t binaries = 0, records = 0;  // rows saved
  int64_t unreadable = 0;             // rows or row ranges SQLite could not read
  std::string moved_aside_to;
};
SalvageResult salvage_cache(const std::string& path);

// "" when the file opens as a database and passes integrity_check, else why not.
std::string cache_damage(const std::string& path);

}  // namespace samoyeds
