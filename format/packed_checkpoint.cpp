#include "format/packed_checkpoint.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace fs = std::filesystem;
namespace {

const char* kIndex = "model.safetensors.index.json";

[[noreturn]] void fail(ErrorCode code, const std::string& what) { throw Error(code, "pack checkpoint: " + what); }

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in) fail(ErrorCode::IoError, "cannot open " + path.string());
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    fail(ErrorCode::IoError, fmt::format("{} is not JSON: {}", path.string(), e.what()));
  }
}

// The shard files, in the order the index first names them (or the one file).
std::vector<std::string> shard_files(const fs::path& dir) {
  if (fs::exists(dir / kIndex)) {
    const auto index = read_json(dir / kIndex);
    std::vector<std::string> files;
    std::set<std::string> seen;
    for (auto it = index.at("weight_map").begin(); it != index.at("weight_map").end(); ++it) {
      const std::string f = it.value().get<std::string>();
      if (f.find('/') != std::string::npos || f.find("..") != std::string::npos)
        fail(ErrorCode::InvalidArgument, fmt::format("{} names a shard outside the folder: {}", kIndex, f));
      if (seen.insert(f).second) files.push_back(f);
    }
    return files;
  }
  if (fs::exists(dir / "model.safetensors")) return {"model.safetensors"};
  fail(ErrorCode::InvalidArgument,
       fmt::format("{} holds neither model.safetensors nor {}", dir.string(), kIndex));
}

void refuse_unsupported_model(const fs::path& dir) {
  if (!fs::exists(dir / "config.json")) return;
  const auto config = read_json(dir / "config.json");
  const std::string type = config.value("model_type", "");
  if (type == "gpt_oss")
    fail(ErrorCode::Unsupported,
         "gpt_oss: its experts (biases, clamped SwiGLU) are not computed by the kernels yet (docs/models.md)");
}

}  // namespace

bool is_expert_weight(const std::string& name) {
  static const std::regex pattern(
      R"((^|\.)(experts\.[0-9]+|shared_experts?)\.(w1|w2|w3|gate_proj|up_proj|down_proj)\.weight$)");
  return std::regex_search(name, pattern);
}

namespace {

PackCheckpointResult pack_folder(const std::string& in_dir, const std::string& out_dir,
                                 const PackCheckpointOptions& options,
                                 const std::function<void(const std::string&)>& progress) {
  const SparsityParams& sp = options.sparsity;
  sp.validate();
  const fs::path in(in_dir), out(out_dir);
  if (!fs::is_directory(in)) fail(ErrorCode::InvalidArgument, in_dir + " is not a folder");
  std::error_code ec;
  if (fs::exists(out) && fs::equivalent(in, out, ec))
    fail(ErrorCode::InvalidArgument, "the output folder must differ from the input");
  refuse_unsupported_model(in);
  const std::vector<std::string> files = shard_files(in);
  fs::create_directories(out);
  fs::remove(out / kIndex);  // an earlier run's index would name shards of that run

  PackCheckpointResult result;
  nlohmann::ordered_json weight_map;
  uint64_t total_bytes = 0;
  for (const std::string& file : files) {
    SafetensorsReader reader((in / file).string());
    // The output's header: each expert weight's four parts, the rest as is.
    std::vector<SafetensorsEntry> entries;
    for (const auto& e : reader.entries()) {
      if (!is_expert_weight(e.name)) {
        entries.push_back({e.name, e.dtype, e.shape});
        continue;
      }
      if (e.shape.size() != 2)
        fail(ErrorCode::Unsupported, fmt::format("{} in {}: {}-D expert weight (packs 2-D [out, in] matrices)",
                                                 e.name, file, e.shape.size()));
      if (e.dtype != "BF16" && e.dtype != "F16")
        fail(ErrorCode::Unsupported,
             fmt::format("{} in {}: {} weights (packs BF16 or F16; dequantize FP8 checkpoints first)", e.name, file,
                         e.dtype));
      // Sizes known before packing: the header comes first.
      const PackedSizes p = packed_sizes(e.shape[0], e.shape[1], sp);
      entries.push_back({e.name + ".values", e.dtype, {p.rows, p.k_pad / 2}});
      entries.push_back({e.name + ".sel", "U8", {p.k_pad / sp.V, p.rows}});
      entries.push_back({e.name + ".meta", "U8", {p.meta}});
      entries.push_back({e.name + ".shape", "I64", {2}});
    }
    std::map<std::string, std::string> metadata = reader.metadata();
    for (const auto& [k, v] : options.metadata) metadata[k] = v;
    metadata["samoyeds.format"] = "packed";
    metadata["samoyeds.format_version"] = std::to_string(kPackedCheckpointVersion);
    metadata["samoyeds.sparsity"] = sp.to_string();
    SafetensorsWriter writer((out / file).string(), entries, metadata);
    for (const auto& e : reader.entries()) {
      const std::vector<uint8_t> bytes = reader.read(e);
      if (!is_expert_weight(e.name)) {
        writer.write(e.name, bytes.data(), bytes.size());
        weight_map[e.name] = file;
        total_bytes += bytes.size();
        ++result.copied;
        continue;
      }
      if (progress) progress(e.name);
      const DType dtype = e.dtype == "BF16" ? DType::bf16 : DType::f16;
      std::vector<uint16_t> dense(size_t(e.elements()));
      std::memcpy(dense.data(), bytes.data(), bytes.size());
      PackedWeights p;
      try {
        p = pack_weights(dense.data(), e.shape[0], e.shape[1], dtype, sp, options.mode);
      } catch (const Error& err) {
        throw Error(err.code(), fmt::format("{} in {}: {}", e.name, file, err.what()));
      }
      const int64_t shape[2] = {p.m, p.k};
      writer.write(e.name + ".values", p.values.data(), p.values.size() * 2);
      writer.write(e.name + ".sel", p.sel.data(), p.sel.size());
      writer.write(e.name + ".meta", p.meta.data(), p.meta.size());
      writer.write(e.name + ".shape", shape, sizeof shape);
      for (const char* part : {".values", ".sel", ".meta", ".shape"}) weight_map[e.name + part] = file;
      const int64_t packed_bytes = int64_t(p.values.size() * 2 + p.sel.size() + p.meta.size() + sizeof shape);
      total_bytes += uint64_t(packed_bytes);
      result.dense_bytes += int64_t(bytes.size());
      result.packed_bytes += packed_bytes;
      ++result.packed;
    }
    writer.finish();
    result.shards.push_back((out / file).string());
  }
  if (files.size() > 1 || fs::exists(in / kIndex)) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    std::ofstream o(out / kIndex);
    o << index.dump(2) << "\n";
    o.close();
    if (!o) fail(ErrorCode::IoError, "cannot write " + (out / kIndex).string());
  }
  // The rest of the folder (config, tokenizer, generation settings) as it is.
  const std::set<std::string> shards(files.begin(), files.end());
  for (const auto& entry : fs::directory_iterator(in)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || shards.count(name) || name == kIndex) continue;
    fs::copy_file(entry.path(), out / name, fs::copy_options::overwrite_existing);
  }
  return result;
}

}  // namespace

PackCheckpointResult pack_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                     const PackCheckpointOptions& options,
                                     const std::function<void(const std::string&)>& progress) {
  try {
    return pack_folder(in_dir, out_dir, options, progress);
  } catch (const fs::filesystem_error& e) {
    fail(ErrorCode::IoError, e.what());
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidArgument, std::string("a malformed index: ") + e.what());
  }
}

PackedWeights read_packed_matrix(SafetensorsReader& shard, const std::string& name) {
  const auto& meta_of = shard.metadata();
  auto get = [&](const char* key) {
    const auto it = meta_of.find(key);
    return it == meta_of.end() ? std::string() : it->second;
  };
  if (get("samoyeds.format") != "packed" || get("samoyeds.sparsity").empty())
    fail(ErrorCode::InvalidArgument, shard.path() + " is not a samoyeds packed checkpoint shard");
  if (get("samoyeds.format_version") != std::to_string(kPackedCheckpointVersion))
    fail(ErrorCode::Unsupported, fmt::format("{}: packed format version '{}', this library reads {}", shard.path(),
                                             get("samoyeds.format_version"), kPackedCheckpointVersion));
  auto part = [&](const char* suffix) -> const SafetensorsEntry& {
    const SafetensorsEntry* e = shard.find(name + suffix);
    if (!e) fail(ErrorCode::InvalidArgument, fmt::format("{}: no tensor {}{}", shard.path(), name, suffix));
    return *e;
  };
  const SafetensorsEntry &values = part(".values"), &sel = part(".sel"), &meta = part(".meta"), &shape = part(".shape");
  if ((values.dtype != "BF16" && values.dtype != "F16") || sel.dtype != "U8" || meta.dtype != "U8" ||
      shape.dtype != "I64" || shape.end - shape.begin != 16)
    fail(ErrorCode::InvalidArgument, fmt::format("{}: {}'s packed parts have unexpected dtypes", shard.path(), name));
  PackedWeights p;
  p.dtype = values.dtype == "BF16" ? DType::bf16 : DType::f16;
  p.sparsity = SparsityParams::parse(get("samoyeds.sparsity"));
  const std::vector<uint8_t> dims = shard.read(shape);
  int64_t mk[2];
  std::memcpy(mk, dims.data(), sizeof mk);
  p.m = mk[0];
  p.k = mk[1];
  try {
    const PackedSizes sizes = packed_sizes(p.m, p.k, p.sparsity);  // the shape checked before any size is used
    p.m_pad = sizes.m_pad;
    p.k_pad = sizes.k_pad;
    const std::vector<uint8_t> v = shard.read(values);
    p.values.resize(v.size() / 2);
    std::memcpy(p.values.data(), v.data(), v.size());
    p.sel = shard.read(sel);
    p.meta = shard.read(meta);
    validate_packed(p);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}: {}: {}", shard.path(), name, e.what()));
  }
  return p;
}

PackedCheckpointReader::PackedCheckpointReader(const std::string& dir) : dir_(dir) {
  try {
    for (const std::string& file : shard_files(dir)) {
      shards_.emplace(file, std::make_unique<SafetensorsReader>((fs::path(dir) / file).string()));
      for (const auto& e : shards_.at(file)->entries()) where_[e.name] = file;
    }
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidArgument, fmt::format("{}: a malformed index: {}", dir, e.what()));
  }
}

SafetensorsReader& PackedCheckpointReader::shard_of(const std::string& tensor) const {
  const auto it = where_.find(tensor);
  if (it == where_.end()) fail(ErrorCode::InvalidArgument, fmt::format("{} holds no tensor {}", dir_, tensor));
  return *shards_.at(it->second);
}

PackedWeights PackedCheckpointReader::matrix(const std::string& weight_name) const {
  return read_packed_matrix(shard_of(weight_name + ".values"), weight_name);
}

std::vector<uint16_t> PackedCheckpointReader::vector16(const std::string& tensor, DType dtype, int64_t count) const {
  SafetensorsReader& shard = shard_of(tensor);
  const SafetensorsEntry& e = *shard.find(tensor);
  const char* want = dtype == DType::bf16 ? "BF16" : "F16";
  if (e.dtype != want || e.end - e.begin != uint64_t(count) * 2)
    fail(ErrorCode::InvalidArgument, fmt::format("{}: {} is {} of {} bytes; {} {} values expected", dir_, tensor,
                                                 e.dtype, e.end - e.begin, count, want));
  const std::vector<uint8_t> bytes = shard.read(e);
  std::vector<uint16_t> out(static_cast<size_t>(count));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace samoyeds
