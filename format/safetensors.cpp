#include "format/safetensors.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "samoyeds/error.hpp"

namespace samoyeds {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(ErrorCode::IoError, fmt::format("{}: {}", path, what));
}

// A header larger than this is not a checkpoint's (the largest models list
// some ten thousand tensors in a few MB).
constexpr uint64_t kMaxHeaderBytes = uint64_t(100) << 20;

}  // namespace

int64_t SafetensorsEntry::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int safetensors_dtype_bytes(const std::string& dtype) {
  static const std::map<std::string, int> bytes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
      {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
  auto it = bytes.find(dtype);
  return it == bytes.end() ? 0 : it->second;
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  if (!in_) fail(path, "cannot open");
  in_.seekg(0, std::ios::end);
  const uint64_t file_bytes = uint64_t(in_.tellg());
  in_.seekg(0);
  unsigned char len_bytes[8];
  if (!in_.read(reinterpret_cast<char*>(len_bytes), 8)) fail(path, "shorter than a safetensors header");
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = header_bytes << 8 | len_bytes[i];
  if (header_bytes > kMaxHeaderBytes || 8 + header_bytes > file_bytes)
    fail(path, fmt::format("header of {} bytes in a file of {}", header_bytes, file_bytes));
  std::string text(header_bytes, '\0');
  in_.read(text.data(), std::streamsize(header_bytes));
  data_offset_ = 8 + header_bytes;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    fail(path, std::string("header is not JSON: ") + e.what());
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");
  try {
    for (auto it = header.begin(); it != header.end(); ++it) {
      if (it.key() == "__metadata__") {
        for (auto m = it.value().begin(); m != it.value().end(); ++m) metadata_[m.key()] = m.value().get<std::string>();
        continue;
      }
      SafetensorsEntry e;
      e.name = it.key();
      e.dtype = it.value().at("dtype").get<std::string>();
      e.shape = it.value().at("shape").get<std::vector<int64_t>>();
      const auto offsets = it.value().at("data_offsets").get<std::vector<uint64_t>>();
      if (offsets.size() != 2) fail(path, fmt::format("tensor {}: data_offsets needs two numbers", e.name));
      e.begin = offsets[0];
      e.end = offsets[1];
      entries_.push_back(std::move(e));
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& ex) {
    fail(path, std::string("malformed header: ") + ex.what());
  }
  const uint64_t data_bytes = file_bytes - data_offset_;
  for (const auto& e : entries_) {
    const int size = safetensors_dtype_bytes(e.dtype);
    if (size == 0) fail(path, fmt::format("tensor {}: unknown dtype {}", e.name, e.dtype));
    // The shape's product is checked for overflow: a header could make it wrap to the range's length.
    uint64_t bytes = uint64_t(size);
    bool overflow = false;
    for (int64_t d : e.shape) {
      if (d < 0) fail(path, fmt::format("tensor {}: negative dimension", e.name));
      overflow |= __builtin_mul_overflow(bytes, uint64_t(d), &bytes);
    }
    if (overflow || e.end < e.begin || e.end > data_bytes || e.end - e.begin != bytes)
      fail(path, fmt::format("tensor {}: bytes [{}, {}) do not hold its {} shape of {} values within the {} data bytes",
                             e.name, e.begin, e.end, e.dtype, e.shape.size(), data_bytes));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries_)
    if (e.end > e.begin) by_offset.push_back(&e);  // empty tensors hold no bytes to overlap
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(path, fmt::format("tensors {} and {} overlap", by_offset[i - 1]->name, by_offset[i]->name));
}

const SafetensorsEntry* SafetensorsReader::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

std::vector<uint8_t> SafetensorsReader::read(const SafetensorsEntry& entry) {
  std::vector<uint8_t> bytes(entry.end - entry.begin);
  in_.seekg(std::streamoff(data_offset_ + entry.begin));
  if (!in_.read(reinterpret_cast<char*>(bytes.data()), std::streamsize(bytes.size())))
    fail(path_, fmt::format("tensor {}: short read", entry.name));
  return bytes;
}

SafetensorsWriter::SafetensorsWriter(const std::string& path, std::vector<SafetensorsEntry> entries,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), out_(path, std::ios::binary | std::ios::trunc), entries_(std::move(entries)) {
  if (!out_) fail(path, "cannot create");
  nlohmann::ordered_json header;
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (auto& e : entries_) {
    const int size = safetensors_dtype_bytes(e.dtype);
    if (size == 0) fail(path, fmt::format("tensor {}: unknown dtype {}", e.name, e.dtype));
    e.begin = offset;
    e.end = offset + uint64_t(e.elements()) * uint64_t(size);
    offset = e.end;
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {e.begin, e.end}}};
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  unsigned char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = uint8_t(uint64_t(text.size()) >> (8 * i));
  out_.write(reinterpret_cast<const char*>(len_bytes), 8);
  out_.write(text.data(), std::streamsize(text.size()));
}

void SafetensorsWriter::write(const std::string& name, const void* data, size_t bytes) {
  if (next_ >= entries_.size() || entries_[next_].name != name)
    fail(path_, fmt::format("tensor {} written out of the header's order", name));
  const SafetensorsEntry& e = entries_[next_++];
  if (bytes != e.end - e.begin)
    fail(path_, fmt::format("tensor {}: {} bytes given for {}", name, bytes, e.end - e.begin));
  out_.write(static_cast<const char*>(data), std::streamsize(bytes));
  if (!out_) fail(path_, fmt::format("tensor {}: write failed", name));
}

void SafetensorsWriter::finish() {
  if (next_ != entries_.size())
    fail(path_, fmt::format("{} of {} tensors written", next_, entries_.size()));
  out_.close();
  if (!out_) fail(path_, "close failed");
}

}  // namespace samoyeds
