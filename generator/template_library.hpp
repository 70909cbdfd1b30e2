// The device templates as NVRTC sees them: in-memory headers by include name,
// and the part of them a generated source reaches through its #include lines
// (what a binary's cache key hashes and what NVRTC is handed).
#pragma once
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace samoyeds {

// The names in `text`'s #include lines, in order ("samoyeds/common.cuh").
// Every include line counts, even under an #if: a key that hashes a header
// too many is only conservative.
std::vector<std::string> include_names(const std::string& text);

class TemplateLibrary {
 public:
  using Texts = std::map<std::string, std::string>;  // include name -> text

  explicit TemplateLibrary(Texts texts);
  TemplateLibrary(const TemplateLibrary&) = delete;
  TemplateLibrary& operator=(const TemplateLibrary&) = delete;

  // templates/*.cuh as compiled into the library.
  static const TemplateLibrary& embedded();

  const Texts& texts() const { return texts_; }
  // Every template `source` includes, directly or through other templates,
  // sorted by name. Throws Error(CompileError) for a name the library lacks.
  std::vector<std::string> included_by(const std::string& source) const;
  // sha256 hex over the names and texts of included_by(source). Remembered
  // per list of `source`'s own include lines: kernels of one family share it.
  std::string digest_of_included(const std::string& source) const;

 private:
  Texts texts_;
  mutable std::mutex memo_mu_;
  mutable std::map<std::vector<std::string>, std::string> digest_by_includes_;
};

}  // namespace samoyeds
