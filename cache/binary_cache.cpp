#include "cache/binary_cache.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>

#include <fmt/format.h>

#include "core/sha256.hpp"
#include "samoyeds/environment.hpp"

namespace samoyeds {

namespace {
// Columns every query reads, in this order, then whatever it adds.
constexpr const char* kRecordColumns =
    "key, arch, nvrtc, library, kernel_name, description, registers, spill_bytes, compile_ms";
constexpr int kRecordColumnCount = 9;

BinaryRecord read_record(const Statement& q) {
  BinaryRecord r;
  r.key = q.text(0);
  r.arch = q.text(1);
  r.nvrtc = q.text(2);
  r.library = q.text(3);
  r.kernel_name = q.text(4);
  r.description = q.text(5);
  r.registers = int(q.integer(6));
  r.spill_bytes = int(q.integer(7));
  r.compile_ms = q.real(8);
  return r;
}
}  // namespace

std::optional<BinaryRecord> BinaryCache::get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_,
              fmt::format("SELECT {}, size, checksum, blob FROM binaries WHERE key = ?", kRecordColumns).c_str());
  q.bind(1, key);
  if (!q.step()) return std::nullopt;
  BinaryRecord r = read_record(q);
  const int64_t size = q.integer(kRecordColumnCount);
  const std::string checksum = q.text(kRecordColumnCount + 1);
  r.blob = q.blob(kRecordColumnCount + 2);
  const std::string actual = sha256_hex(r.blob.data(), r.blob.size());
  if (int64_t(r.blob.size()) != size || actual != checksum) {
    log(LogLevel::Warn, fmt::format("cache '{}': binary {} is corrupt ({} of {} bytes, checksum {}); deleting it "
                                    "so it is rebuilt",
                                    store_.path(), key.substr(0, 16), r.blob.size(), size,
                                    actual == checksum ? "ok" : "mismatch"));
    if (!store_.read_only()) {
      Statement del(store_, "DELETE FROM binaries WHERE key = ?");
      del.bind(1, key).run();
    }
    return std::nullopt;
  }
  return r;
}

void BinaryCache::put(const BinaryRecord& r) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only()) return;
  store_.transaction([&] {
    Statement ins(store_,
                  "INSERT OR IGNORE INTO binaries (key, arch, nvrtc, library, kernel_name, description, registers,"
                  " spill_bytes, compile_ms, size, checksum, created_unix, blob)"
                  " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    ins.bind(1, r.key).bind(2, r.arch).bind(3, r.nvrtc).bind(4, r.library).bind(5, r.kernel_name);
    ins.bind(6, r.description).bind(7, int64_t(r.registers)).bind(8, int64_t(r.spill_bytes)).bind(9, r.compile_ms);
    ins.bind(10, int64_t(r.blob.size())).bind(11, sha256_hex(r.blob.data(), r.blob.size()));
    ins.bind(12, int64_t(std::time(nullptr))).bind_blob(13, r.blob.data(), r.blob.size());
    ins.run();
    Statement done(store_, "DELETE FROM compile_claims WHERE key = ? AND pid = ?");
    done.bind(1, r.key).bind(2, int64_t(getpid())).run();
  });
}

BinaryCache::Claim BinaryCache::claim(const std::string& key, int stale_after_s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only()) return Claim::Compile;  // nothing to share: compile in memory
  Claim result = Claim::Compile;
  store_.transaction([&] {
    Statement have(store_, "SELECT 1 FROM binaries WHERE key = ?");
    if (have.bind(1, key).step()) {
      result = Claim::Present;
      return;
    }
    const int64_t now = int64_t(std::time(nullptr));
    Statement holder(store_, "SELECT pid, claimed_unix FROM compile_claims WHERE key = ?");
    if (holder.bind(1, key).step()) {
      const pid_t pid = pid_t(holder.integer(0));
      // pid is this process for another thread's claim: that thread is alive.
      const bool alive = pid == getpid() || kill(pid, 0) == 0 || errno == EPERM;
      if (alive && now - holder.integer(1) < stale_after_s) {
        result = Claim::Wait;
        return;
      }
    }
    Statement take(store_, "INSERT OR REPLACE INTO compile_claims (key, pid, claimed_unix) VALUES (?, ?, ?)");
    take.bind(1, key).bind(2, int64_t(getpid())).bind(3, now).run();
  });
  return result;
}

void BinaryCache::release(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only()) return;
  Statement del(store_, "DELETE FROM compile_claims WHERE key = ? AND pid = ?");
  del.bind(1, key).bind(2, int64_t(getpid())).run();
}

std::vector<BinaryRecord> BinaryCache::list(bool with_blobs) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, fmt::format("SELECT {}{} FROM binaries ORDER BY description", kRecordColumns,
                                  with_blobs ? ", blob" : "")
                          .c_str());
  std::vector<BinaryRecord> out;
  while (q.step()) {
    out.push_back(read_record(q));
    if (with_blobs) out.back().blob = q.blob(kRecordColumnCount);
  }
  return out;
}

std::vector<std::string> BinaryCache::corrupt_keys() {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, "SELECT key, size, checksum, blob FROM binaries");
  std::vector<std::string> bad;
  while (q.step()) {
    const std::vector<char> blob = q.blob(3);
    if (int64_t(blob.size()) != q.integer(1) || sha256_hex(blob.data(), blob.size()) != q.text(2))
      bad.push_back(q.text(0));
  }
  return bad;
}

int BinaryCache::remove(const std::vector<std::string>& keys) {
  std::lock_guard<std::mutex> lock(mu_);
  if (store_.read_only() || keys.empty()) return 0;
  store_.transaction([&] {
    for (const auto& k : keys) {
      Statement del(store_, "DELETE FROM binaries WHERE key = ?");
      del.bind(1, k).run();
    }
  });
  return int(keys.size());
}

}  // namespace samoyeds
