#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include <fmt/format.h>

#include "cache/record_store.hpp"
#include "test_util/fixtures.hpp"

namespace samoyeds {
namespace {

using test::fresh_db;
using test::h200;
using test::record;
KernelSpec spec() { return test::mixtral_gated_up(); }

const TileConfig kA{64, 32, 64, 4, 1, 4}, kB{64, 64, 64, 2, 2, 3}, kC{64, 128, 64, 2, 4, 3};

TEST(RecordStore, RoundTripsEveryField) {
  SqliteStore db(fresh_db("records_roundtrip"));
  RecordStore rs(db);
  const TuningRecord r = record(64, kB, 0.25);
  EXPECT_TRUE(rs.put(r));
  auto got = rs.get(r.key);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->config, kB);
  EXPECT_DOUBLE_EQ(got->time_ms, 0.25);
  ASSERT_EQ(got->runner_up_ms.size(), 2u);
  EXPECT_NEAR(got->runner_up_ms[1], 0.3, 1e-9);
  EXPECT_NEAR(got->baseline_ms, 0.375, 1e-12);
  EXPECT_EQ(got->key.device, h200());
  EXPECT_EQ(got->key.sparsity, spec().sparsity);
}

TEST(RecordStore, EveryKeyFieldSeparatesRecords) {
  SqliteStore db(fresh_db("records_keys"));
  RecordStore rs(db);
  TuningRecord base = record(64, kA, 1.0);
  rs.put(base);
  std::vector<TuningRecord> variants(7, base);
  variants[0].key.device.driver_version = 12080;
  variants[1].key.device.nvrtc_version = "12.9";
  variants[2].key.device.library_version = "9.9.9";
  variants[3].key.dtype = DType::f16;
  variants[4].key.bucket = 128;
  variants[5].key.sparsity.V = 64;
  variants[6].key.experts = 64;
  for (auto& v : variants) {
    v.config = kC;
    rs.put(v);
  }
  EXPECT_EQ(rs.list().size(), 8u);
  EXPECT_EQ(rs.get(base.key)->config, kA);
}

TEST(RecordStore, KeepFasterKeepsTheFasterRecord) {
  SqliteStore db(fresh_db("records_faster"));
  RecordStore rs(db);
  rs.put(record(64, kA, 1.0));
  EXPECT_FALSE(rs.put(record(64, kB, 2.0), RecordStore::PutPolicy::KeepFaster));
  EXPECT_EQ(rs.get(record(64, kA, 1.0).key)->config, kA);
  EXPECT_TRUE(rs.put(record(64, kC, 0.5), RecordStore::PutPolicy::KeepFaster));
  EXPECT_EQ(rs.get(record(64, kA, 1.0).key)->config, kC);
}

TEST(RecordStore, VersionOneFileGainsTheRecordsTable) {
  const std::string path = fresh_db("records_migrate");
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(raw,
                         "CREATE TABLE schema_info (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
                         "INSERT INTO schema_info VALUES ('version', '1');",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  SqliteStore db(path);
  RecordStore rs(db);
  EXPECT_TRUE(rs.put(record(8, kA, 1.0)));
  Statement v(db, "SELECT value FROM schema_info WHERE name = 'version'");
  ASSERT_TRUE(v.step());
  EXPECT_EQ(v.text(0), std::to_string(SqliteStore::kSchemaVersion));
}

}  // namespace
}  // namespace samoyeds
