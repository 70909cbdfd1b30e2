// Safetensors files and packed checkpoints (format/): round trips, refusals
// of damaged files, and `samoyeds pack` over a small two-shard checkpoint.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include <fmt/format.h>

#include "format/packed_checkpoint.hpp"
#include "format/safetensors.hpp"
#include "samoyeds/error.hpp"
#include "test_util/fixtures.hpp"
#include "test_util/random_data.hpp"

namespace samoyeds {
namespace {

namespace fs = std::filesystem;
using test::random_matrix;

fs::path fresh_dir(const std::string& tag) {
  const fs::path dir = fs::path(::testing::TempDir()) /
                       fmt::format("samoyeds_ckpt_{}_{}_{}", tag, getpid(),
                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

template <class T>
std::vector<uint8_t> bytes_of(const std::vector<T>& v) {
  std::vector<uint8_t> b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

struct Tensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

void write_shard(const fs::path& path, const std::vector<Tensor>& tensors,
                 const std::map<std::string, std::string>& metadata = {{"format", "pt"}}) {
  std::vector<SafetensorsEntry> entries;
  for (const auto& t : tensors) entries.push_back({t.name, t.dtype, t.shape});
  SafetensorsWriter w(path.string(), entries, metadata);
  for (const auto& t : tensors) w.write(t.name, t.bytes.data(), t.bytes.size());
  w.finish();
}

Tensor expert(const std::string& name, int64_t m, int64_t k) {
  return {name, "BF16", {m, k}, bytes_of(random_matrix(m, k, DType::bf16))};
}

TEST(Safetensors, RoundTripKeepsNamesShapesBytesAndMetadata) {
  const fs::path dir = fresh_dir("st");
  const std::vector<float> f = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::vector<Tensor> tensors = {{"a.weight", "F32", {2, 3}, bytes_of(f)},
                                       {"b", "U8", {5}, {1, 2, 3, 4, 5}},
                                       {"empty", "I64", {0}, {}}};
  write_shard(dir / "x.safetensors", tensors, {{"format", "pt"}, {"note", "hi"}});
  SafetensorsReader r((dir / "x.safetensors").string());
  ASSERT_EQ(r.entries().size(), 3u);
  EXPECT_EQ(r.metadata().at("note"), "hi");
  for (const auto& t : tensors) {
    const SafetensorsEntry* e = r.find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->dtype, t.dtype);
    EXPECT_EQ(e->shape, t.shape);
    EXPECT_EQ(r.read(*e), t.bytes);
  }
  EXPECT_EQ(r.find("missing"), nullptr);
  // Empty tensors share their offset with a neighbour (as safetensors writes them): no overlap.
  write_shard(dir / "y.safetensors", {{"b", "U8", {2}, {7, 8}}, {"z", "F32", {0}, {}}, {"c", "U8", {1}, {9}}});
  SafetensorsReader y((dir / "y.safetensors").string());
  EXPECT_EQ(y.read(*y.find("c")), std::vector<uint8_t>{9});
}

TEST(Safetensors, DamagedFilesAreRefusedNamingTheProblem) {
  const fs::path dir = fresh_dir("bad");
  auto raw = [&](const std::string& header, size_t data_bytes) {
    const fs::path p = dir / "bad.safetensors";
    std::ofstream o(p, std::ios::binary);
    const uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) o.put(char(n >> (8 * i)));
    o << header << std::string(data_bytes, '\0');
    return p.string();
  };
  auto refused = [&](const std::string& path, const std::string& words) {
    try {
      SafetensorsReader r(path);
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::IoError);
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused(raw(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8), "tensor t");  // past the end
  refused(raw(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", 16), "tensor t");  // size mismatch
  refused(raw(R"({"t":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})", 4), "unknown dtype Q4");
  refused(raw(R"({"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
              R"("u":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})", 8), "overlap");
  refused(raw("not json", 0), "not JSON");
  // 24 x 768614336404564651 x 2 bytes wraps to 16 in 64 bits: refused, not taken as 16 bytes.
  refused(raw(R"({"t":{"dtype":"BF16","shape":[24,768614336404564651],"data_offsets":[0,16]}})", 16), "tensor t");
  {
    std::ofstream o(dir / "short.safetensors", std::ios::binary);
    o << "abc";
  }
  refused((dir / "short.safetensors").string(), "shorter than");
  const fs::path huge = dir / "huge.safetensors";
  {
    std::ofstream o(huge, std::ios::binary);
    for (int i = 0; i < 8; ++i) o.put(char(0x7f));  // a header length past the file
  }
  refused(huge.string(), "header of");
}

TEST(PackedCheckpoint, ExpertWeightsAreRecognizedByName) {
  for (const char* yes : {"model.layers.0.block_sparse_moe.experts.3.w1.weight", "model.layers.7.mlp.experts.0.w2.weight",
                          "model.layers.1.mlp.experts.127.gate_proj.weight", "model.layers.1.mlp.experts.5.down_proj.weight",
                          "model.layers.3.mlp.shared_experts.up_proj.weight", "model.layers.2.mlp.shared_expert.gate_proj.weight"})
    EXPECT_TRUE(is_expert_weight(yes)) << yes;
  for (const char* no : {"model.layers.0.block_sparse_moe.gate.weight", "model.layers.0.mlp.gate_proj.weight",
                         "model.layers.2.mlp.shared_expert_gate.weight", "model.layers.1.mlp.experts.5.down_proj.bias",
                         "model.layers.1.mlp.experts.gate_up_proj", "model.layers.3.mlp.experts.0.w1.weight_scale_inv",
                         "model.embed_tokens.weight"})
    EXPECT_FALSE(is_expert_weight(no)) << no;
}

// Two shards and an index, Qwen-style and Mixtral-style names, a router and
// an embedding that must pass through untouched, a config and a tokenizer.
struct Checkpoint {
  fs::path dir;
  std::vector<Tensor> shard1, shard2;
};
Checkpoint make_checkpoint(const fs::path& dir) {
  Checkpoint c{dir, {}, {}};
  c.shard1 = {{"model.embed_tokens.weight", "F32", {4, 8}, bytes_of(std::vector<float>(32, 0.5f))},
              expert("model.layers.0.mlp.experts.0.gate_proj.weight", 64, 256),
              expert("model.layers.0.mlp.experts.0.up_proj.weight", 64, 256),
              expert("model.layers.0.mlp.experts.0.down_proj.weight", 256, 64),
              expert("model.layers.0.mlp.shared_experts.gate_proj.weight", 40, 200)};  // padded both ways
  c.shard2 = {{"model.layers.1.block_sparse_moe.gate.weight", "BF16", {8, 256},
               bytes_of(random_matrix(8, 256, DType::bf16))},
              expert("model.layers.1.block_sparse_moe.experts.0.w1.weight", 64, 256),
              expert("model.layers.1.block_sparse_moe.experts.0.w2.weight", 256, 64)};
  write_shard(dir / "model-00001-of-00002.safetensors", c.shard1);
  write_shard(dir / "model-00002-of-00002.safetensors", c.shard2);
  std::ofstream index(dir / "model.safetensors.index.json");
  index << "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  bool first = true;
  for (const auto* shard : {&c.shard1, &c.shard2})
    for (const auto& t : *shard) {
      index << (first ? "" : ", ") << "\"" << t.name << "\": \"model-0000" << (shard == &c.shard1 ? 1 : 2)
            << "-of-00002.safetensors\"";
      first = false;
    }
  index << "}}";
  std::ofstream(dir / "config.json") << R"({"model_type": "qwen2_moe"})";
  std::ofstream(dir / "tokenizer.json") << "{}";
  return c;
}

TEST(PackedCheckpoint, PacksEveryExpertWeightAsPackWeightsDoesAndCopiesTheRest) {
  const fs::path in = fresh_dir("in"), out = fresh_dir("out") / "packed";
  const Checkpoint c = make_checkpoint(in);
  PackCheckpointOptions o;
  o.metadata["samoyeds.library_version"] = "test";
  std::vector<std::string> seen;
  const PackCheckpointResult r =
      pack_checkpoint(in.string(), out.string(), o, [&](const std::string& n) { seen.push_back(n); });
  EXPECT_EQ(r.packed, 6);
  EXPECT_EQ(r.copied, 2);
  EXPECT_EQ(seen.size(), 6u);
  EXPECT_TRUE(fs::exists(out / "config.json") && fs::exists(out / "tokenizer.json"));
  int64_t packed_bytes = 0, dense_bytes = 0;
  for (const auto& [file, tensors] : {std::pair{"model-00001-of-00002.safetensors", c.shard1},
                                      std::pair{"model-00002-of-00002.safetensors", c.shard2}}) {
    SafetensorsReader shard((out / file).string());
    EXPECT_EQ(shard.metadata().at("format"), "pt");  // the input's metadata is kept
    EXPECT_EQ(shard.metadata().at("samoyeds.format"), "packed");
    EXPECT_EQ(shard.metadata().at("samoyeds.sparsity"), "1:2x2:4/V128");
    EXPECT_EQ(shard.metadata().at("samoyeds.library_version"), "test");
    for (const auto& t : tensors) {
      if (!is_expert_weight(t.name)) {
        ASSERT_NE(shard.find(t.name), nullptr) << t.name;
        EXPECT_EQ(shard.read(*shard.find(t.name)), t.bytes) << t.name;
        continue;
      }
      EXPECT_EQ(shard.find(t.name), nullptr) << "dense copy of " << t.name;
      std::vector<uint16_t> dense(t.bytes.size() / 2);
      std::memcpy(dense.data(), t.bytes.data(), t.bytes.size());
      const PackedWeights want = pack_weights(dense.data(), t.shape[0], t.shape[1], DType::bf16, {128, 1, 2});
      const PackedWeights got = read_packed_matrix(shard, t.name);
      EXPECT_EQ(got.m, want.m);
      EXPECT_EQ(got.k, want.k);
      EXPECT_EQ(got.values, want.values) << t.name;
      EXPECT_EQ(got.sel, want.sel) << t.name;
      EXPECT_EQ(got.meta, want.meta) << t.name;
      EXPECT_EQ(decode_weights(got), decode_weights(want)) << t.name;
      packed_bytes += int64_t(want.values.size() * 2 + want.sel.size() + want.meta.size() + 16);
      dense_bytes += int64_t(t.bytes.size());
    }
  }
  EXPECT_EQ(r.packed_bytes, packed_bytes);
  EXPECT_EQ(r.dense_bytes, dense_bytes);
  // The folder reader finds each matrix in its shard, with the checkpoint's dtype and pattern.
  const PackedCheckpointReader folder(out.string());
  const PackedWeights w2 = folder.matrix("model.layers.1.block_sparse_moe.experts.0.w2.weight");
  EXPECT_EQ(w2.m, 256);
  EXPECT_EQ(w2.dtype, DType::bf16);
  EXPECT_EQ(w2.sparsity, (SparsityParams{128, 1, 2}));
  EXPECT_EQ(folder.vector16("model.layers.1.block_sparse_moe.gate.weight", DType::bf16, 8 * 256).size(), 2048u);
  EXPECT_THROW(folder.vector16("model.layers.1.block_sparse_moe.gate.weight", DType::f16, 8 * 256), Error);
  EXPECT_THROW(folder.vector16("model.embed_tokens.weight", DType::bf16, 32), Error);  // F32
  EXPECT_THROW(folder.matrix("model.layers.9.mlp.experts.0.gate_proj.weight"), Error);
  std::ifstream index(out / "model.safetensors.index.json");
  const std::string text((std::istreambuf_iterator<char>(index)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"model.layers.1.block_sparse_moe.experts.0.w2.weight.values\": "
                      "\"model-00002-of-00002.safetensors\""),
            std::string::npos)
      << text;
}

TEST(PackedCheckpoint, RefusesWhatItCannotPackNamingTheTensor) {
  auto refused = [&](const std::vector<Tensor>& tensors, const std::string& config, const std::string& words,
                     ErrorCode code, PackMode mode = PackMode::Magnitude) {
    const fs::path in = fresh_dir("rin"), out = fresh_dir("rout");
    write_shard(in / "model.safetensors", tensors);
    if (!config.empty()) std::ofstream(in / "config.json") << config;
    PackCheckpointOptions o;
    o.mode = mode;
    try {
      pack_checkpoint(in.string(), out.string(), o);
      ADD_FAILURE() << "accepted: " << words;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), code) << e.what();
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  const auto w = expert("model.layers.0.mlp.experts.0.gate_proj.weight", 64, 256);
  refused({{w.name, "BF16", {1, 64, 256}, w.bytes}}, "", "3-D expert weight", ErrorCode::Unsupported);
  refused({{w.name, "F8_E4M3", {64, 128}, std::vector<uint8_t>(64 * 128)}}, "", "dequantize FP8",
          ErrorCode::Unsupported);
  refused({w}, R"({"model_type": "gpt_oss"})", "gpt_oss", ErrorCode::Unsupported);
  refused({w}, "", "experts.0.gate_proj.weight", ErrorCode::PatternViolation, PackMode::Strict);
  const fs::path same = fresh_dir("same");
  write_shard(same / "model.safetensors", {w});
  EXPECT_THROW(pack_checkpoint(same.string(), same.string(), {}), Error);
  EXPECT_THROW(pack_checkpoint(fresh_dir("empty").string(), fresh_dir("o").string(), {}), Error);
}

TEST(PackedCheckpoint, ADamagedPackedMatrixIsRefusedOnRead) {
  const fs::path in = fresh_dir("din"), out = fresh_dir("dout");
  write_shard(in / "model.safetensors", {expert("model.layers.0.mlp.experts.0.gate_proj.weight", 64, 256)});
  pack_checkpoint(in.string(), out.string(), {});
  SafetensorsReader good((out / "model.safetensors").string());
  const std::string name = "model.layers.0.mlp.experts.0.gate_proj.weight";
  EXPECT_NO_THROW(read_packed_matrix(good, name));
  EXPECT_THROW(read_packed_matrix(good, "model.layers.0.mlp.experts.1.gate_proj.weight"), Error);
  // Selectors of 1:2 must be 0 or 1: a 7 is refused by validate_packed.
  std::vector<Tensor> tensors;
  for (const auto& e : good.entries()) {
    Tensor t{e.name, e.dtype, e.shape, good.read(e)};
    if (e.name == name + ".sel") t.bytes[3] = 7;
    tensors.push_back(t);
  }
  write_shard(out / "damaged.safetensors", tensors, good.metadata());
  SafetensorsReader damaged((out / "damaged.safetensors").string());
  try {
    read_packed_matrix(damaged, name);
    ADD_FAILURE() << "a selector of 7 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("selector"), std::string::npos) << e.what();
  }
  SafetensorsReader dense((in / "model.safetensors").string());
  EXPECT_THROW(read_packed_matrix(dense, name), Error);  // not a packed shard
  // A shape that does not fit the stored parts is refused before their sizes are trusted.
  std::vector<Tensor> reshaped;
  for (const auto& e : good.entries()) {
    Tensor t{e.name, e.dtype, e.shape, good.read(e)};
    if (e.name == name + ".shape") {
      const int64_t mk[2] = {4 * 64, 256};
      std::memcpy(t.bytes.data(), mk, sizeof mk);
    }
    reshaped.push_back(t);
  }
  write_shard(out / "reshaped.safetensors", reshaped, good.metadata());
  SafetensorsReader bad_shape((out / "reshaped.safetensors").string());
  EXPECT_THROW(read_packed_matrix(bad_shape, name), Error);
}

TEST(PackedCheckpoint, AnEarlierRunsIndexDoesNotSurvive) {
  const fs::path in = fresh_dir("sin"), out = fresh_dir("sout");
  write_shard(in / "model.safetensors", {expert("model.layers.0.mlp.experts.0.gate_proj.weight", 64, 256)});
  std::ofstream(out / "model.safetensors.index.json") << R"({"weight_map": {"x": "gone.safetensors"}})";
  pack_checkpoint(in.string(), out.string(), {});
  EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
  EXPECT_NO_THROW(PackedCheckpointReader(out.string()).matrix("model.layers.0.mlp.experts.0.gate_proj.weight"));
}

TEST(PackedCheckpoint, TheCommandPacksAFolder) {
  const fs::path in = fresh_dir("cin"), out = fresh_dir("cout") / "packed";
  make_checkpoint(in);
  const auto r = test::run_cli(fmt::format("pack --model {} --out {} --quiet", in.string(), out.string()));
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("6 expert weights packed (1:2x2:4/V128), 2 other tensors copied, 2 shard(s)"),
            std::string::npos)
      << r.out;
  EXPECT_TRUE(fs::exists(out / "model-00002-of-00002.safetensors"));
  EXPECT_EQ(test::run_cli("pack --model " + in.string()).rc, 2);  // --out is required
  const auto bad = test::run_cli(fmt::format("pack --model {} --out {} --rows 3:2", in.string(), out.string()));
  EXPECT_EQ(bad.rc, 2) << bad.out;
}

}  // namespace
}  // namespace samoyeds
