#include "generator/template_library.hpp"

#include <regex>
#include <set>

#include "core/sha256.hpp"
#include "generator/embedded_file.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

std::vector<std::string> include_names(const std::string& text) {
  static const std::regex include_line(R"(^[ \t]*#[ \t]*include[ \t]*["<]([^">]+)[">])", std::regex::multiline);
  std::vector<std::string> names;
  for (auto it = std::sregex_iterator(text.begin(), text.end(), include_line); it != std::sregex_iterator(); ++it)
    names.push_back((*it)[1]);
  return names;
}

TemplateLibrary::TemplateLibrary(Texts texts) : texts_(std::move(texts)) {}

const TemplateLibrary& TemplateLibrary::embedded() {
  static const TemplateLibrary library([] {
    Texts t;
    for (const detail::EmbeddedFile* f = detail::kEmbeddedTemplates; f->name; ++f) t[f->name] = f->text;
    return t;
  }());
  return library;
}

std::vector<std::string> TemplateLibrary::included_by(const std::string& source) const {
  std::set<std::string> seen;
  std::vector<std::string> pending = include_names(source);
  while (!pending.empty()) {
    const std::string name = pending.back();
    pending.pop_back();
    if (!seen.insert(name).second) continue;
    const auto it = texts_.find(name);
    if (it == texts_.end())
      throw Error(ErrorCode::CompileError,
                  "#include \"" + name + "\": the template library (templates/*.cuh) holds no such header");
    for (auto& inner : include_names(it->second)) pending.push_back(std::move(inner));
  }
  return {seen.begin(), seen.end()};
}

std::string TemplateLibrary::digest_of_included(const std::string& source) const {
  const std::vector<std::string> own = include_names(source);
  {
    std::lock_guard<std::mutex> lock(memo_mu_);
    const auto it = digest_by_includes_.find(own);
    if (it != digest_by_includes_.end()) return it->second;
  }
  Sha256 h;
  for (const auto& name : included_by(source)) {
    h.update(name);
    h.update(std::string(1, '\0'));
    h.update(texts_.at(name));
    h.update(std::string(1, '\0'));
  }
  std::string digest = h.hex_digest();
  std::lock_guard<std::mutex> lock(memo_mu_);
  return digest_by_includes_.emplace(own, std::move(digest)).first->second;
}

}  // namespace samoyeds
