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

// Sizes of a matrix's packed parts, known before packing (the header comes first).
struct PackedShape {
  int64_t rows, half_k, segments, meta_bytes;
};
PackedShape packed_shape(int64_t m, int64_t k, const SparsityParams& sp) {
  const int64_t m_pad = (m + sp.M - 1) / sp.M * sp.M, k_pad = (k + sp.V - 1) / sp.V * sp.V;
  const int64_t rows = m_pad / sp.M * sp.N;
  return {rows, k_pad / 2, k_pad / sp.V, (rows * (k_pad / 2) + 3) / 4};
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

PackCheckpointResult pack_checkpoint(const std::string& in_dir, const std::string& out_dir,
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
      const PackedShape p = packed_shape(e.shape[0], e.shape[1], sp);
      entries.push_back({e.name + ".values", e.dtype, {p.rows, p.half_k}});
      entries.push_back({e.name + ".sel", "U8", {p.segments, p.rows}});
      entries.push_back({e.name + ".meta", "U8", {p.meta_bytes}});
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
    std::ofstream(out / kIndex) << index.dump(2) << "\n";
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

PackedWeights read_packed_matrix(SafetensorsReader& shard, const std::string& name) {
  const auto sparsity = shard.metadata().find("samoyeds.sparsity");
  if (sparsity == shard.metadata().end() || shard.metadata().count("samoyeds.format") == 0)
    fail(ErrorCode::InvalidArgument, shard.path() + " is not a samoyeds packed checkpoint shard");
  const auto version = shard.metadata().at("samoyeds.format_version");
  if (version != std::to_string(kPackedCheckpointVersion))
    fail(ErrorCode::Unsupported, fmt::format("{}: packed format version {}, this library reads {}", shard.path(),
                                             version, kPackedCheckpointVersion));
  auto part = [&](const char* suffix) -> const SafetensorsEntry& {
    const SafetensorsEntry* e = shard.find(name + suffix);
    if (!e) fail(ErrorCode::InvalidArgument, fmt::format("{}: no tensor {}{}", shard.path(), name, suffix));
    return *e;
  };
  const SafetensorsEntry &values = part(".values"), &sel = part(".sel"), &meta = part(".meta"), &shape = part(".shape");
  if ((values.dtype != "BF16" && values.dtype != "F16") || sel.dtype != "U8" || meta.dtype != "U8" ||
      shape.dtype != "I64" || shape.elements() != 2)
    fail(ErrorCode::InvalidArgument, fmt::format("{}: {}'s packed parts have unexpected dtypes", shard.path(), name));
  PackedWeights p;
  p.dtype = values.dtype == "BF16" ? DType::bf16 : DType::f16;
  p.sparsity = SparsityParams::parse(sparsity->second);
  const std::vector<uint8_t> dims = shard.read(shape);
  int64_t mk[2];
  std::memcpy(mk, dims.data(), sizeof mk);
  p.m = mk[0];
  p.k = mk[1];
  if (p.m <= 0 || p.k <= 0) fail(ErrorCode::InvalidArgument, fmt::format("{}: {} has shape [{}, {}]", shard.path(),
                                                                          name, p.m, p.k));
  p.m_pad = (p.m + p.sparsity.M - 1) / p.sparsity.M * p.sparsity.M;
  p.k_pad = (p.k + p.sparsity.V - 1) / p.sparsity.V * p.sparsity.V;
  const std::vector<uint8_t> v = shard.read(values);
  p.values.resize(v.size() / 2);
  std::memcpy(p.values.data(), v.data(), v.size());
  p.sel = shard.read(sel);
  p.meta = shard.read(meta);
  try {
    validate_packed(p);
  } catch (const Error& e) {
    throw Error(ErrorCode::InvalidArgument, fmt::format("{}: {}: {}", shard.path(), name, e.what()));
  }
  return p;
}

}  // namespace samoyeds
