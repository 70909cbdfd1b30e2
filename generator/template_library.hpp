// The device templates as NVRTC sees them: in-memory headers, and one digest
// of their text that every binary cache key includes.
#pragma once
#include <string>
#include <vector>

namespace samoyeds {

struct TemplateHeader {
  std::string include_name;  // "samoyeds/common.cuh"
  std::string text;
};

const std::vector<TemplateHeader>& template_headers();
const std::string& template_library_digest();  // sha256 hex over names and texts

}  // namespace samoyeds
