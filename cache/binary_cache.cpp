#include "cache/binary_cache.hpp"

#include <ctime>

#include <fmt/format.h>

#include "cache/sha256.hpp"
#include "samoyeds/environment.hpp"

namespace samoyeds {

std::optional<BinaryRecord> BinaryCache::get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_,
              "SELECT arch, nvrtc, library, kernel_name, description, registers, spill_bytes, compile_ms, size,"
              " checksum, blob FROM binaries WHERE key = ?");
  q.bind(1, key);
  if (!q.step()) return std::nullopt;
  BinaryRecord r;
  r.key = key;
  r.arch = q.text(0);
  r.nvrtc = q.text(1);
  r.library = q.text(2);
  r.kernel_name = q.text(3);
  r.description = q.text(4);
  r.registers = int(q.integer(5));
  r.spill_bytes = int(q.integer(6));
  r.compile_ms = q.real(7);
  const int64_t size = q.integer(8);
  const std::string checksum = q.text(9);
  r.blob = q.blob(10);
  if (int64_t(r.blob.size()) != size || sha256_hex(r.blob.data(), r.blob.size()) != checksum) {
    log(LogLevel::Warn, fmt::format("cache '{}': binary {} is corrupt ({} of {} bytes, checksum {}); deleting it "
                                    "so it is rebuilt",
                                    store_.path(), key.substr(0, 16), r.blob.size(), size,
                                    sha256_hex(r.blob.data(), r.blob.size()) == checksum ? "ok" : "mismatch"));
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
  });
}

std::vector<BinaryRecord> BinaryCache::list(bool with_blobs) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement q(store_, with_blobs ? "SELECT key, arch, nvrtc, library, kernel_name, description, registers,"
                                   " spill_bytes, compile_ms, blob FROM binaries ORDER BY description"
                                 : "SELECT key, arch, nvrtc, library, kernel_name, description, registers,"
                                   " spill_bytes, compile_ms FROM binaries ORDER BY description");
  std::vector<BinaryRecord> out;
  while (q.step()) {
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
    if (with_blobs) r.blob = q.blob(9);
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace samoyeds
