// samoyeds cache ls|export|import|verify|prune: inspect and move the tuned
// records (and optionally the binaries) between machines of one GPU kind.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include <fmt/format.h>

#include "cache/binary_cache.hpp"
#include "cache/record_store.hpp"
#include "cli/cli_options.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/config_selector.hpp"
#include "samoyeds/tuning_record.hpp"

namespace samoyeds::cli {
namespace {

// What this machine can check imported entries against. The GPU parts are
// known only where a GPU is.
struct Here {
  bool have_gpu = false;
  DeviceFingerprint device;
  std::string nvrtc = nvrtc_version(), library = library_version();
};
Here here() {
  Here h;
  if (gpu_available()) {
    h.have_gpu = true;
    h.device = current_fingerprint();
  }
  return h;
}

// Why a record may not be used here, or "" if it may.
std::string mismatch(const TuningRecord& r, const Here& h) {
  if (h.have_gpu) return r.key.device.differences(h.device);
  std::string why;
  if (r.key.device.nvrtc_version != h.nvrtc) why += fmt::format("NVRTC {} vs {}", r.key.device.nvrtc_version, h.nvrtc);
  if (r.key.device.library_version != h.library)
    why += fmt::format("{}samoyeds {} vs {}", why.empty() ? "" : ", ", r.key.device.library_version, h.library);
  return why;
}

int cmd_ls(SqliteStore& db) {
  RecordStore records(db);
  BinaryCache binaries(db);
  const auto bins = binaries.list();
  const auto recs = records.list();
  fmt::print("cache {}: {} binaries, {} tuning records\n", db.path(), bins.size(), recs.size());
  if (!bins.empty())
    fmt::print("{:<8} {:<8} {:<7} {:>5} {:>6} {:>10} {}\n", "key", "arch", "nvrtc", "regs", "spill", "compile ms",
               "kernel");
  for (const auto& b : bins)
    fmt::print("{:<8} {:<8} {:<7} {:>5} {:>6} {:>10.1f} {}\n", b.key.substr(0, 8), b.arch, b.nvrtc, b.registers,
               b.spill_bytes, b.compile_ms, b.description);
  if (!recs.empty())
    fmt::print("{:<14} {:<8} {:<5} {:>13} {:<14} {:>6} {:<8} {:<26} {:>9} {:>8} {:>8} {}\n", "gpu", "op", "type",
               "m x k", "sparsity", "bucket", "backend", "config", "ms", "/cuBLAS", "verified", "gathered calls");
  // "verified": the tokens its winner was checked at on this shape ("no": a
  // record of an older tuner, never used).
  for (const auto& r : recs)
    fmt::print("{:<14} {:<8} {:<5} {:>6}x{:<6} {:<14} {:>6} {:<8} {:<26} {:>9.4f} {:>7.2f}x {:>8} {}\n",
               r.key.device.gpu_name.substr(0, 14), op_name(r.key.op), dtype_name(r.key.dtype), r.key.m, r.key.k,
               r.key.sparsity.to_string(), r.key.bucket, backend_name(r.backend), r.config.to_string(), r.time_ms,
               r.time_ms > 0 ? r.baseline_ms / r.time_ms : 0.0,
               r.verified() ? std::to_string(r.verified_tokens) : std::string("no"),
               r.gathered ? fmt::format("{} {:.4f} ms", r.gathered->to_string(), r.gathered_ms) : std::string("-"));
  return 0;
}

int cmd_export(SqliteStore& db, const std::string& file, bool with_binaries, bool force) {
  namespace fs = std::filesystem;
  if (fs::exists(file)) {
    if (!force) throw Error(ErrorCode::IoError, "'" + file + "' exists (use --force to replace it)");
    fs::remove(file);
  }
  // Written to a temporary name and renamed: an interrupted export leaves nothing half-written.
  const std::string tmp = file + ".partial";
  fs::remove(tmp);
  fs::remove(tmp + "-wal");
  fs::remove(tmp + "-shm");
  size_t n_rec = 0, n_bin = 0;
  {
    SqliteStore out(tmp);
    RecordStore dst(out);
    for (const auto& r : RecordStore(db).list()) n_rec += dst.put(r);
    if (with_binaries) {
      BinaryCache src(db), dst_bins(out);
      for (const auto& b : src.list())
        if (auto full = src.get(b.key)) {  // checksum-verified
          dst_bins.put(*full);
          ++n_bin;
        }
    }
    out.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    out.exec("PRAGMA journal_mode=DELETE");  // one self-contained file
  }
  fs::rename(tmp, file);
  fmt::print("exported {} tuning records and {} binaries to {} (samoyeds {}, NVRTC {})\n", n_rec, n_bin, file,
             library_version(), nvrtc_version());
  return 0;
}

int cmd_import(SqliteStore& db, const std::string& file, bool force) {
  if (!std::filesystem::exists(file)) throw Error(ErrorCode::IoError, "'" + file + "' does not exist");
  if (db.read_only()) throw Error(ErrorCode::CacheError, "cache '" + db.path() + "' is read-only here: nothing can be imported");
  SqliteStore in(file, OpenMode::Foreign);  // refuses what is not a samoyeds file; never changes it
  const Here h = here();
  if (!h.have_gpu)
    fmt::print("no GPU here: checking NVRTC and library versions only (GPU and driver are checked at use)\n");
  RecordStore src(in), dst(db);
  int took = 0, kept = 0, refused = 0;
  for (const auto& r : src.list()) {
    const std::string why = mismatch(r, h);
    if (!why.empty() && !force) {
      ++refused;
      fmt::print("refused {}: {}\n", r.key.to_string(), why);
      continue;
    }
    if (dst.put(r, RecordStore::PutPolicy::KeepFaster)) {
      ++took;
      if (!r.verified())
        fmt::print("took {} unverified (an older tuner's): dispatch will not use it until tuned again\n",
                   r.key.to_string());
    } else {
      ++kept;
      fmt::print("kept the existing {} record for {}\n", r.verified() ? "faster" : "verified or faster", r.key.to_string());
    }
  }
  BinaryCache src_bins(in), dst_bins(db);
  int bins = 0, bins_refused = 0, bins_corrupt = 0;
  for (const auto& b : src_bins.list()) {
    if ((b.nvrtc != h.nvrtc || b.library != h.library) && !force) {
      ++bins_refused;
      continue;
    }
    if (auto full = src_bins.get(b.key)) {
      dst_bins.put(*full);
      ++bins;
    } else {
      ++bins_corrupt;
    }
  }
  fmt::print("imported {} records ({} kept existing faster ones, {} refused), {} binaries ({} refused, {} corrupt)\n",
             took, kept, refused, bins, bins_refused, bins_corrupt);
  return refused || bins_refused || bins_corrupt ? 1 : 0;
}

int cmd_verify(SqliteStore& db) {
  BinaryCache bins(db);
  RecordStore recs(db);
  const Here h = here();
  int problems = 0;
  for (const auto& k : bins.corrupt_keys()) {
    ++problems;
    fmt::print("corrupt binary {}\n", k.substr(0, 16));
  }
  for (const auto& b : bins.list())
    if (b.nvrtc != h.nvrtc || b.library != h.library) {
      ++problems;
      fmt::print("stale binary {} ({}): NVRTC {} samoyeds {}\n", b.key.substr(0, 16), b.description, b.nvrtc,
                 b.library);
    }
  for (const auto& r : recs.list()) {
    const std::string why = mismatch(r, h);
    if (!why.empty()) {
      ++problems;
      fmt::print("record not usable here: {} ({})\n", r.key.to_string(), why);
    }
  }
  fmt::print("{}: {} problem(s)\n", db.path(), problems);
  return problems ? 1 : 0;
}

int cmd_prune(SqliteStore& db) {
  BinaryCache bins(db);
  RecordStore recs(db);
  const Here h = here();
  std::vector<std::string> gone = bins.corrupt_keys();
  for (const auto& b : bins.list())
    if (b.nvrtc != h.nvrtc || b.library != h.library) gone.push_back(b.key);
  const int n_bins = bins.remove(gone);
  const int n_recs = recs.prune([&](const TuningRecord& r) {
    return r.key.device.nvrtc_version == h.nvrtc && r.key.device.library_version == h.library;
  });
  fmt::print("pruned {} binaries and {} tuning records\n", n_bins, n_recs);
  return 0;
}

}  // namespace

int cmd_cache(const std::vector<std::string>& argv) {
  CLI::App app("Inspect and move the tuned records (and optionally the binaries) between machines of one GPU kind.",
               "samoyeds cache");
  std::string cache_path = default_cache_path(), file;
  bool binaries = false, force = false;
  CLI::Option* cache_opt =
      app.add_option("--cache", cache_path, "the cache file (default $SAMOYEDS_CACHE_DIR/samoyeds.sqlite)");
  app.require_subcommand(1, 1);
  app.fallthrough();  // --cache may follow the verb
  CLI::App* ls = app.add_subcommand("ls", "list the binaries (kernels) and tuning records the cache holds");
  CLI::App* exp = app.add_subcommand("export", "write the records (and binaries) into a new portable file");
  exp->add_option("FILE", file, "the file to write")->required();
  exp->add_flag("--binaries", binaries, "also export the binaries");
  exp->add_flag("--force", force, "replace FILE if it exists");
  CLI::App* imp = app.add_subcommand(
      "import",
      "merge a file: faster record wins a conflict; records or binaries of another GPU, driver, NVRTC or library "
      "version are refused unless --force");
  imp->add_option("FILE", file, "the file to merge")->required();
  imp->add_flag("--force", force, "take entries of another GPU, driver, NVRTC or library version too");
  CLI::App* verify = app.add_subcommand(
      "verify", "check the file, every binary's checksum and report stale records; exit 1 on problems");
  bool repair = false;
  verify->add_flag("--repair", repair, "copy what a damaged file still holds into a new one, and use that");
  CLI::App* prune =
      app.add_subcommand("prune", "delete corrupt binaries and entries of other NVRTC or library versions");
  if (argv.empty()) {
    std::fputs(app.help().c_str(), stderr);
    return kExitUsage;
  }
  if (const int rc = parse_args(app, argv); rc >= 0) return rc;

  // Only reading: a mistyped path is an error, never a new cache (or folder).
  if (ls->parsed() || verify->parsed()) {
    namespace fs = std::filesystem;
    std::error_code ec;
    if (fs::is_directory(cache_path, ec))
      throw Error(ErrorCode::IoError, "--cache: '" + cache_path + "' is a folder, not a cache file");
    if (!fs::exists(cache_path, ec)) {
      if (cache_opt->count()) throw Error(ErrorCode::IoError, "--cache: '" + cache_path + "': no such file");
      std::printf("cache %s: no such file yet (0 binaries, 0 tuning records)\n", cache_path.c_str());
      return 0;
    }
  }
  if (verify->parsed()) {
    // Before opening it as the cache, which would move a damaged file aside.
    const std::string damage = cache_damage(cache_path);
    if (!damage.empty()) {
      fmt::print("damaged database {}: {}\n", cache_path, damage);
      if (!repair) {
        fmt::print("`samoyeds cache verify --repair` copies what is readable into a new file\n");
        return 1;
      }
      const SalvageResult r = salvage_cache(cache_path);
      fmt::print("repaired: saved {} binaries and {} tuning records ({} unreadable rows or ranges); the damaged file "
                 "is now {}\n",
                 r.binaries, r.records, r.unreadable, r.moved_aside_to);
    }
  }
  SqliteStore db(cache_path);
  if (ls->parsed()) return cmd_ls(db);
  if (verify->parsed()) return cmd_verify(db);
  if (prune->parsed()) return cmd_prune(db);
  if (exp->parsed()) return cmd_export(db, file, binaries, force);
  return cmd_import(db, file, force);
}

}  // namespace samoyeds::cli
