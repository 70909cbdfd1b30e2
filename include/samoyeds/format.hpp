// The dual-side sparse weight format (DESIGN.md): vector-wise N:M row selection
// per V-column segment, then 2:4 inside every kept row segment.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds {

struct SparsityParams {
  int V = 128;  // segment length along k
  int N = 1;    // rows kept ...
  int M = 2;    // ... of every M consecutive rows, per segment

  void validate() const;  // V in {32,64,128,256}, 1 <= N <= M <= 8
  std::string to_string() const;  // "1:2x2:4/V128"
  // From to_string()'s text, or from a row pattern "N:M" and a segment length
  // (command lines, sweep files). Validated; throws Error(InvalidArgument).
  static SparsityParams parse(const std::string& text);
  static SparsityParams from_rows(const std::string& n_m, int V);
  bool row_selection() const { return N < M; }
  bool operator==(const SparsityParams& o) const { return V == o.V && N == o.N && M == o.M; }
};

enum class PackMode {
  Magnitude,  // prune: per segment keep the N rows of largest 2:4-pruned L2 norm
  Strict,     // the weights already satisfy the pattern: verify, never prune
};

// Canonical (logical) packed form: what files and export hold. Backends derive
// their own physical layout from it (see device_layout.hpp).
struct PackedWeights {
  DType dtype = DType::f16;
  SparsityParams sparsity;
  int64_t m = 0, k = 0;          // the caller's shape
  int64_t m_pad = 0, k_pad = 0;  // m rounded up to M, k to V (padding is zero)

  std::vector<uint16_t> values;  // [condensed_rows, k_pad/2]
  std::vector<uint8_t> sel;      // [k_pad/V, condensed_rows]: row within the group
  std::vector<uint8_t> meta;     // 2 bits per value, value i at byte i/4, bits 2*(i%4)
  double retained_magnitude = 1.0;  // sum|kept| / sum|all| (1 for all-zero input)

  int64_t condensed_rows() const { return m_pad / sparsity.M * sparsity.N; }
  int64_t segments() const { return k_pad / sparsity.V; }
  uint8_t meta_at(int64_t value_index) const {
    return (meta[value_index / 4] >> (2 * (value_index % 4))) & 3u;
  }
  // Bytes of values + 2-bit metadata + selectors: the memory a packed matrix needs.
  int64_t payload_bytes() const;
};

// The sizes of a packed [m, k] matrix, from its shape and pattern alone (a
// file's header, a caller's buffers): checked for overflow, and m, k
// positive and below 2^31 (InvalidArgument otherwise).
struct PackedSizes {
  int64_t m_pad, k_pad, rows;        // rows: condensed rows
  int64_t values, sel, meta;         // counts: 16-bit values, selector bytes, metadata bytes
};
PackedSizes packed_sizes(int64_t m, int64_t k, const SparsityParams& sparsity);

// Dense row-major [m, k] 16-bit weights in. Throws Error on NaN/Inf, bad
// parameters, empty shapes, or (Strict) any pattern violation naming the first
// offending coordinates. Nothing is returned on error.
PackedWeights pack_weights(const uint16_t* dense, int64_t m, int64_t k, DType dtype,
                           const SparsityParams& sparsity, PackMode mode = PackMode::Magnitude);

// Exact decode back to the caller's [m, k] shape, as 16-bit bit patterns.
std::vector<uint16_t> decode_weights(const PackedWeights& packed);
// Decode to float64, what the CPU reference multiplies with.
std::vector<double> decode_weights_f64(const PackedWeights& packed);

// Structural checks of a packed object (sizes, selector ordering, metadata
// pairs increasing); throws Error describing the first problem.
void validate_packed(const PackedWeights& packed);

}  // namespace samoyeds
