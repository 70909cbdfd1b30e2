// The backends, from the one list in samoyeds/kernel_spec.hpp
// (SAMOYEDS_BACKENDS): each entry's family is defined in its folder.
#include "backends/backend.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds {

#define SAMOYEDS_BACKEND_DECLARE(name, text, family) const KernelFamily& family();
SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_DECLARE)
#undef SAMOYEDS_BACKEND_DECLARE

const KernelFamily& kernel_family(Backend backend) {
  switch (backend) {
#define SAMOYEDS_BACKEND_FAMILY(name, text, family) \
  case Backend::name: return family();
    SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_FAMILY)
#undef SAMOYEDS_BACKEND_FAMILY
  }
  throw Error(ErrorCode::InvalidArgument, "no such backend");
}

TileConfig parse_config(const std::string& text, Backend backend) {
  return TileConfig::parse(text, kernel_family(backend).schedule_fields());
}

Backend default_backend(const KernelSpec& spec) {
  KernelSpec s = spec;
  s.backend = Backend::WgmmaSp;
  if (!kernel_family(Backend::WgmmaSp).search_space(s).empty()) return Backend::WgmmaSp;
  return Backend::MmaSp;
}

}  // namespace samoyeds
