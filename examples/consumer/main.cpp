// Uses samoyeds through its public headers only, with no GPU: packs a random
// weight into the dual-side format, checks the pattern and the kept values,
// takes the C ABI's error path, and prints the library's version.
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <samoyeds/error.hpp>
#include <samoyeds/format.hpp>
#include <samoyeds/samoyeds.h>
#include <samoyeds/tuning_record.hpp>

#ifndef SAMOYEDS_EXPECTED_VERSION
#error "build with -DSAMOYEDS_EXPECTED_VERSION=\"<version the package declares>\""
#endif

static int failures = 0;
static void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

int main() {
  const int64_t m = 64, k = 256;
  samoyeds::SparsityParams sparsity;
  sparsity.V = 64, sparsity.N = 1, sparsity.M = 2;  // 1:2 rows per 64 columns, then 2:4: a quarter kept

  std::mt19937 rng(2026);
  std::uniform_real_distribution<float> uniform(0.5f, 2.0f);  // never zero: every kept value is visible
  std::vector<uint16_t> dense(size_t(m * k));
  for (auto& v : dense) v = samoyeds::float_to_half_bits(rng() % 2 ? uniform(rng) : -uniform(rng));

  const samoyeds::PackedWeights packed = samoyeds::pack_weights(dense.data(), m, k, samoyeds::DType::f16, sparsity);
  samoyeds::validate_packed(packed);
  const std::vector<uint16_t> decoded = samoyeds::decode_weights(packed);
  check(decoded.size() == dense.size(), "decode returns the caller's shape");

  int64_t kept = 0, foreign = 0;
  for (size_t i = 0; i < decoded.size(); ++i) {
    if ((decoded[i] & 0x7fff) == 0) continue;
    ++kept;
    if (decoded[i] != dense[i]) ++foreign;
  }
  check(kept == m * k / 4, "a quarter of the values is kept: " + std::to_string(kept) + " of " +
                               std::to_string(m * k));
  check(foreign == 0, std::to_string(foreign) + " decoded values differ from the dense ones");

  // The decoded matrix satisfies the pattern (Strict verifies, never prunes);
  // the random dense one does not.
  const samoyeds::PackedWeights again =
      samoyeds::pack_weights(decoded.data(), m, k, samoyeds::DType::f16, sparsity, samoyeds::PackMode::Strict);
  check(samoyeds::decode_weights(again) == decoded, "Strict repack of the decoded weights round-trips");
  bool rejected = false;
  try {
    samoyeds::pack_weights(dense.data(), m, k, samoyeds::DType::f16, sparsity, samoyeds::PackMode::Strict);
  } catch (const samoyeds::Error&) {
    rejected = true;
  }
  check(rejected, "Strict pack rejects dense weights");

  // C ABI: a bad segment length is reported before any device work.
  samoyeds_weights* handle = nullptr;
  const samoyeds_status status = samoyeds_weights_pack(dense.data(), m, k, SAMOYEDS_F16, 48, 1, 2, 0, &handle);
  check(status == SAMOYEDS_INVALID_ARGUMENT && handle == nullptr, "C ABI rejects V=48 with INVALID_ARGUMENT");
  check(std::string(samoyeds_last_error()).find("V=48") != std::string::npos,
        std::string("C ABI last error names V=48: ") + samoyeds_last_error());

  const std::string version = samoyeds::library_version();
  check(version == SAMOYEDS_EXPECTED_VERSION,
        "library " + version + " is the version built against, " + SAMOYEDS_EXPECTED_VERSION);
  std::printf("samoyeds %s: packed %lldx%lld f16 as %s, %lld payload bytes\n", version.c_str(), (long long)m,
              (long long)k, packed.sparsity.to_string().c_str(), (long long)packed.payload_bytes());
  return failures == 0 ? 0 : 1;
}
