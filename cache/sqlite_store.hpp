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

class SqliteStore {
 public:
  static constexpr int kSchemaVersion = 2;  // 1: binaries; 2: + tuning_records

  // Creates the file and its folder if needed. Falls back to read-only when
  // the file cannot be written. Throws Error(CacheError) naming the file.
  explicit SqliteStore(const std::string& path);
  ~SqliteStore();
  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  void exec(const char* sql);
  // BEGIN IMMEDIATE ... COMMIT, rolled back if fn throws.
  void transaction(const std::function<void()>& fn);
  [[noreturn]] void fail(const std::string& what) const;
  sqlite3* db() { return db_; }

 private:
  void init_schema();
  std::string path_;
  sqlite3* db_ = nullptr;
  bool read_only_ = false;
};

}  // namespace samoyeds
