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
  EXPECT_EQ(got->verified_tokens, 64);
  EXPECT_EQ(got->verified_path, "grouped launch over 8 experts");
  EXPECT_FALSE(got->gathered);

  TuningRecord in_order = record(128, kA, 0.5);
  in_order.gathered = kC;
  in_order.gathered_ms = 0.75;
  rs.put(in_order);
  got = rs.get(in_order.key);
  ASSERT_TRUE(got && got->gathered);
  EXPECT_EQ(*got->gathered, kC);
  EXPECT_DOUBLE_EQ(got->gathered_ms, 0.75);
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

// A verified record replaces an unverified one (an older cache's) even where slower.
TEST(RecordStore, KeepFasterPrefersAVerifiedRecord) {
  SqliteStore db(fresh_db("records_faster_verified"));
  RecordStore rs(db);
  const TuningRecord old = test::unverified(record(64, kA, 0.5));
  rs.put(old);
  EXPECT_TRUE(rs.put(record(64, kB, 1.0), RecordStore::PutPolicy::KeepFaster));
  EXPECT_EQ(rs.get(old.key)->config, kB);
  EXPECT_FALSE(rs.put(old, RecordStore::PutPolicy::KeepFaster)) << "an unverified record never replaces a verified one";
}

// A version 2 file (records without what was verified): read as it is where
// it cannot be written, its records unverified; brought to version 3 where it can.
TEST(RecordStore, VersionTwoFileIsReadAndUpgraded) {
  const std::string path = fresh_db("records_v2");
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
  const TuningRecord r = record(64, kB, 0.25);
  const std::string sql = fmt::format(
      "CREATE TABLE schema_info (name TEXT PRIMARY KEY, value TEXT NOT NULL);"
      "INSERT INTO schema_info VALUES ('version', '2');"
      "CREATE TABLE binaries (key TEXT PRIMARY KEY, arch TEXT NOT NULL, nvrtc TEXT NOT NULL, library TEXT NOT NULL,"
      " kernel_name TEXT NOT NULL, description TEXT NOT NULL, registers INTEGER, spill_bytes INTEGER,"
      " compile_ms REAL, size INTEGER NOT NULL, checksum TEXT NOT NULL, created_unix INTEGER NOT NULL,"
      " blob BLOB NOT NULL);"
      "CREATE TABLE tuning_records (gpu TEXT NOT NULL, cc TEXT NOT NULL, sm_count INTEGER NOT NULL,"
      " driver INTEGER NOT NULL, nvrtc TEXT NOT NULL, library TEXT NOT NULL, op TEXT NOT NULL, dtype TEXT NOT NULL,"
      " m INTEGER NOT NULL, k INTEGER NOT NULL, sparsity TEXT NOT NULL, experts INTEGER NOT NULL,"
      " epilogue TEXT NOT NULL, bucket INTEGER NOT NULL, backend TEXT NOT NULL, config TEXT NOT NULL,"
      " time_ms REAL NOT NULL, runner_up_ms TEXT NOT NULL, baseline_ms REAL NOT NULL, created_unix INTEGER NOT NULL,"
      " PRIMARY KEY (gpu, cc, sm_count, driver, nvrtc, library, op, dtype, m, k, sparsity, experts, epilogue,"
      " bucket));"
      "INSERT INTO tuning_records VALUES ('{}', '9.0', 132, 13000, '13.0', '{}', 'gated_up', 'bf16', {}, {}, '{}',"
      " {}, 'gated_silu', 64, 'mma_sp', '{}', 0.25, '', 0.5, 1);",
      r.key.device.gpu_name, r.key.device.library_version, r.key.m, r.key.k, r.key.sparsity.to_string(),
      r.key.experts, kB.to_string());
  ASSERT_EQ(sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(raw);
  sqlite3_close(raw);
  {
    SqliteStore foreign(path, OpenMode::Foreign);
    EXPECT_EQ(foreign.schema_version(), 2);
    RecordStore rs(foreign);
    const auto got = rs.get(r.key);
    ASSERT_TRUE(got);
    EXPECT_EQ(got->config, kB);
    EXPECT_FALSE(got->verified());
  }
  SqliteStore db(path);
  EXPECT_EQ(db.schema_version(), SqliteStore::kSchemaVersion);
  RecordStore rs(db);
  ASSERT_TRUE(rs.get(r.key));
  EXPECT_FALSE(rs.get(r.key)->verified());
  EXPECT_TRUE(rs.put(r));
  EXPECT_TRUE(rs.get(r.key)->verified());
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
