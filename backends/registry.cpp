#include "backends/backend.hpp"
#include "backends/mma_sp/mma_sp_family.hpp"
#include "backends/wgmma_sp/wgmma_sp_family.hpp"

namespace samoyeds {

const KernelFamily& kernel_family(Backend backend) {
  static const MmaSpFamily mma_sp;
  static const WgmmaSpFamily wgmma_sp;
  switch (backend) {
    case Backend::MmaSp: return mma_sp;
    case Backend::WgmmaSp: return wgmma_sp;
  }
  return mma_sp;
}

Backend default_backend(const KernelSpec& spec) {
  KernelSpec s = spec;
  s.backend = Backend::WgmmaSp;
  if (!kernel_family(Backend::WgmmaSp).search_space(s).empty()) return Backend::WgmmaSp;
  return Backend::MmaSp;
}

}  // namespace samoyeds
