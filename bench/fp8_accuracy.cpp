// What FP8 costs in accuracy, in float64 on the CPU (no GPU): an MoE layer's
// output with its routed experts pruned to 1:2 x 2:4 in bf16, and with the
// same pruned experts in E4M3 (128 x 128 weight blocks, tokens and the
// gated activation quantized per 1 x 128 group, the activation rounded to
// bf16 first as the kernels write it), each against the layer with the
// dense bf16 experts and the FP8 one against the bf16 pruned one. The FP8
// kernels compute this model to within bf16 rounding (their GPU tests); the
// expert count is cut down where all of a model's experts would not fit
// this machine (the error comes from each expert's shape, the routing only
// picks which).
#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "format/fp8_pack.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/format.hpp"
#include "tuner/random_fill.hpp"
#include "tuner/random_routing.hpp"

namespace samoyeds {
namespace {

struct LayerShape {
  const char* name;
  int64_t hidden, ffn;
  int experts, top_k;
};

std::vector<float> as_float(const std::vector<uint16_t>& bits) {
  std::vector<float> f(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) f[i] = bf16_bits_to_float(bits[i]);
  return f;
}

// x [t, k] times w [m, k]^T in float64, for one row of x.
void matvec(const std::vector<float>& w, int64_t m, int64_t k, const double* x, double* out) {
  for (int64_t r = 0; r < m; ++r) {
    double s = 0.0;
    const float* wr = &w[size_t(r * k)];
    for (int64_t c = 0; c < k; ++c) s += double(wr[c]) * x[c];
    out[r] = s;
  }
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

double rel(const std::vector<double>& a, const std::vector<double>& b) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / den);
}

void run_shape(const LayerShape& s, int64_t tokens, uint64_t seed) {
  const SparsityParams sp{128, 1, 2};
  const int64_t H = s.hidden, I = s.ffn;
  // Tokens (bf16) and their routing: softmax top-k of random logits.
  const std::vector<uint16_t> xb = tuning::random_fill(tokens * H, DType::bf16, 1.0f, seed);
  const Routing routing = tuning::random_routing(tokens, s.experts, s.top_k, uint32_t(seed));
  // y per variant: 0 dense bf16, 1 pruned bf16, 2 pruned FP8.
  std::vector<std::vector<double>> y(3, std::vector<double>(size_t(tokens * H), 0.0));
  for (int e = 0; e < s.experts; ++e) {
    std::vector<int64_t> mine;
    std::vector<double> p;
    for (int64_t t = 0; t < tokens; ++t)
      for (int j = 0; j < s.top_k; ++j)
        if (routing.expert[size_t(t * s.top_k + j)] == e) {
          mine.push_back(t);
          p.push_back(routing.weight[size_t(t * s.top_k + j)]);
        }
    if (mine.empty()) continue;
    // The expert's three matrices in each variant, as floats.
    std::vector<std::vector<float>> w[3];
    const int64_t rows[3] = {I, I, H}, cols[3] = {H, H, I};
    for (int q = 0; q < 3; ++q) {
      const std::vector<uint16_t> d =
          tuning::random_fill(rows[q] * cols[q], DType::bf16, 0.02f, seed * 1000 + uint64_t(e) * 3 + uint64_t(q));
      w[0].push_back(as_float(d));
      w[1].push_back(as_float(decode_weights(pack_weights(d.data(), rows[q], cols[q], DType::bf16, sp))));
      w[2].push_back(decode_weights(pack_weights_e4m3(d.data(), rows[q], cols[q], DType::bf16, sp)));
    }
    for (size_t i = 0; i < mine.size(); ++i) {
      const int64_t t = mine[i];
      std::vector<double> x(static_cast<size_t>(H));
      for (int64_t c = 0; c < H; ++c) x[size_t(c)] = bf16_bits_to_float(xb[size_t(t * H + c)]);
      for (int v = 0; v < 3; ++v) {
        const std::vector<double> xin = v == 2 ? e4m3_token_round_trip(x) : x;
        std::vector<double> g(static_cast<size_t>(I)), u(static_cast<size_t>(I)), h(static_cast<size_t>(I)),
            out(static_cast<size_t>(H));
        matvec(w[v][0], I, H, xin.data(), g.data());
        matvec(w[v][1], I, H, xin.data(), u.data());
        for (int64_t r = 0; r < I; ++r) h[size_t(r)] = bf16_bits_to_float(float_to_bf16_bits(float(silu(g[size_t(r)]) * u[size_t(r)])));
        const std::vector<double> hin = v == 2 ? e4m3_token_round_trip(h) : h;
        matvec(w[v][2], H, I, hin.data(), out.data());
        for (int64_t c = 0; c < H; ++c) y[size_t(v)][size_t(t * H + c)] += p[i] * out[size_t(c)];
      }
    }
  }
  fmt::print("{:<34} {:>7} {:>12} {:>12} {:>12}\n", fmt::format("{} ({} experts, top-{})", s.name, s.experts, s.top_k),
             tokens, fmt::format("{:.4f}", rel(y[2], y[1])), fmt::format("{:.4f}", rel(y[1], y[0])),
             fmt::format("{:.4f}", rel(y[2], y[0])));
}

int run(int argc, char** argv) {
  CLI::App app{"FP8 accuracy of the dual-sparse MoE layer, float64 on the CPU"};
  int64_t tokens = 16;
  app.add_option("--tokens", tokens, "tokens per layer")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const LayerShape shapes[] = {{"mixtral-8x7b", 4096, 14336, 8, 2}, {"deepseek-v3", 7168, 2048, 16, 8},
                               {"qwen3-30b-a3b", 2048, 768, 128, 8}};
  fmt::print("relative Frobenius error of the layer output (float64 model of each variant)\n");
  fmt::print("{:<34} {:>7} {:>12} {:>12} {:>12}\n", "layer", "tokens", "fp8 vs bf16sp", "bf16sp vs dense",
             "fp8 vs dense");
  for (const LayerShape& s : shapes) run_shape(s, tokens, 17);
  return 0;
}

}  // namespace
}  // namespace samoyeds

int main(int argc, char** argv) {
  try {
    return samoyeds::run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "samoyeds_fp8_accuracy: %s\n", e.what());
    return 1;
  }
}
