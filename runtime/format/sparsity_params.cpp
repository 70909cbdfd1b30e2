#include <fmt/format.h>

#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"

namespace samoyeds {

void SparsityParams::validate() const {
  if (V != 32 && V != 64 && V != 128 && V != 256)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("segment length V={} unsupported (expected 32, 64, 128 or 256)", V));
  if (M < 1 || M > 8 || N < 1 || N > M)
    throw Error(ErrorCode::InvalidArgument,
                fmt::format("row pattern {}:{} unsupported (need 1 <= N <= M <= 8)", N, M));
}

std::string SparsityParams::to_string() const { return fmt::format("{}:{}x2:4/V{}", N, M, V); }

int64_t PackedWeights::payload_bytes() const {
  return int64_t(values.size()) * 2 + int64_t(meta.size()) + int64_t(sel.size());
}

}  // namespace samoyeds
