#include "generator/template_library.hpp"

#include "core/sha256.hpp"
#include "generator/embedded_file.hpp"

namespace samoyeds {

const std::vector<TemplateHeader>& template_headers() {
  static const std::vector<TemplateHeader> headers = [] {
    std::vector<TemplateHeader> h;
    for (const detail::EmbeddedFile* f = detail::kEmbeddedTemplates; f->name; ++f) h.push_back({f->name, f->text});
    return h;
  }();
  return headers;
}

const std::string& template_library_digest() {
  static const std::string digest = [] {
    Sha256 h;
    for (const auto& t : template_headers()) {
      h.update(t.include_name);
      h.update(std::string(1, '\0'));
      h.update(t.text);
      h.update(std::string(1, '\0'));
    }
    return h.hex_digest();
  }();
  return digest;
}

}  // namespace samoyeds
