// Float64 CPU reference of the expert ops, computed from decoded weights.
// Everything the GPU produces is checked against these.
#pragma once
#include <cstdint>
#include <vector>

#include "samoyeds/dtype.hpp"

namespace samoyeds {

// Bias: W's output plus a bias per output row (gpt-oss's down projection).
// ClampedSwiglu: gpt-oss's gated activation of (X W^T + b, X W_gate^T + b_gate).
enum class Epilogue { None, Silu, GatedSilu, Bias, ClampedSwiglu };
const char* epilogue_name(Epilogue e);
// Two weight operands (gate and up): GatedSilu, ClampedSwiglu.
inline bool gated_epilogue(Epilogue e) { return e == Epilogue::GatedSilu || e == Epilogue::ClampedSwiglu; }
// A bias per output row added first: Bias, ClampedSwiglu.
inline bool biased_epilogue(Epilogue e) { return e == Epilogue::Bias || e == Epilogue::ClampedSwiglu; }

struct DenseF64 {  // row-major
  int64_t rows = 0, cols = 0;
  std::vector<double> data;
  double at(int64_t r, int64_t c) const { return data[r * cols + c]; }
};

DenseF64 to_f64(const uint16_t* bits, int64_t rows, int64_t cols, DType dtype);

// Rows ids[0], ids[1], ... of a row-major [*, cols] matrix of 16-bit values,
// in that order: tokens gathered by id on the host, for the baselines (which
// take rows in order) and for calls that read rows in order.
std::vector<uint16_t> take_rows(const uint16_t* x, int64_t cols, const std::vector<int32_t>& ids);

// The biased epilogues' inputs: a bias per output row of W (the gate, for
// ClampedSwiglu) and of the second weight (w_gate, which is the up
// projection), and the clamped SwiGLU's constants.
struct EpilogueInputs {
  std::vector<double> bias, up_bias;  // [m] each
  double alpha = 1.702, limit = 7.0;
};

// gpt-oss's gated activation: (u' + 1) * g' * sigmoid(alpha g') with
// g' = min(g, limit) and u' = u clamped to [-limit, limit].
double clamped_swiglu(double g, double u, double alpha, double limit);

// Y[i, :] = epi(X[ids[i], :] . W^T), W [m, k], X [T, k]; Y is [ids.size(), m].
// GatedSilu: silu(X[ids] . W^T) * (X[ids] . W_gate^T), w_gate required.
// Bias, ClampedSwiglu: `in` gives the biases (up_bias is W_gate's).
DenseF64 reference_ssmm(const DenseF64& w, const DenseF64& x, const std::vector<int32_t>& ids,
                        Epilogue epi, const DenseF64* w_gate = nullptr, const EpilogueInputs& in = {});

// Down projection with routing weights: Y[ids[i], :] += p[i] * (H[i, :] . W^T);
// y is [T, m] and is updated in place.
void reference_down_combine(const DenseF64& w, const DenseF64& h, const std::vector<int32_t>& ids,
                            const std::vector<float>& p, DenseF64& y);

double silu(double x);

// ||a - b||_F / ||b||_F (b is the reference); 0 when both are zero.
double relative_frobenius_error(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace samoyeds
