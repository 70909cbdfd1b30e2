// Safetensors files (the format Hugging Face checkpoints ship in): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the bytes. Read one tensor at a time and write
// tensors in the order the header lists them, so a checkpoint of any size
// passes through bounded memory.
#pragma once
#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace samoyeds {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // "BF16", "F16", "F32", "U8", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
  int64_t elements() const;
};

// Bytes per element of a safetensors dtype name; 0 for one this reader does not know.
int safetensors_dtype_bytes(const std::string& dtype);

class SafetensorsReader {
 public:
  // Reads and checks the header: every range inside the file, its length
  // equal to the dtype's size times the shape's, no two ranges overlapping.
  explicit SafetensorsReader(const std::string& path);
  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const SafetensorsEntry* find(const std::string& name) const;  // null if absent
  std::vector<uint8_t> read(const SafetensorsEntry& entry);

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t data_offset_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

class SafetensorsWriter {
 public:
  // The header is written first, from every tensor's name, dtype and shape;
  // write() must then give each tensor's bytes in the same order.
  SafetensorsWriter(const std::string& path, std::vector<SafetensorsEntry> entries,
                    const std::map<std::string, std::string>& metadata = {});
  void write(const std::string& name, const void* data, size_t bytes);
  // Checks that every tensor was written; the file is complete after it.
  void finish();

 private:
  std::string path_;
  std::ofstream out_;
  std::vector<SafetensorsEntry> entries_;
  size_t next_ = 0;
};

}  // namespace samoyeds
