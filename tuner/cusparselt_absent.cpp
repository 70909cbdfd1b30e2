// Built when cusparseLt.h was not found: the baseline reports itself absent.
#include "tuner/cusparselt_baseline.hpp"

namespace samoyeds::tuning {

struct CusparseLtBaseline::Impl {};
struct CusparseLtBaseline::Plan {};

std::unique_ptr<CusparseLtBaseline> CusparseLtBaseline::create(std::string* why) {
  *why = "built without cusparseLt.h (scripts/build_for_gpu.sh fetches it)";
  return nullptr;
}
CusparseLtBaseline::~CusparseLtBaseline() = default;
std::shared_ptr<CusparseLtBaseline::Plan> CusparseLtBaseline::prepare(void*, DType, int64_t, int64_t, int64_t,
                                                                      const void*, const void*, void*) {
  return nullptr;
}
size_t CusparseLtBaseline::compressed_bytes(const Plan&) const { return 0; }
const void* CusparseLtBaseline::compressed(const Plan&) const { return nullptr; }
void CusparseLtBaseline::matmul(void*, Plan&, const void*, const void*, void*) {}

}  // namespace samoyeds::tuning
