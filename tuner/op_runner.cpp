#include "tuner/op_runner.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <set>

#include <fmt/format.h>

#include "backends/backend.hpp"
#include "core/cuda_driver.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/expert_ops.hpp"
#include "samoyeds/reference.hpp"
#include "core/parallel_for.hpp"
#include "tuner/random_fill.hpp"
#include "tuner/random_routing.hpp"
#include "tuner/sampled_check.hpp"
#include "tuner/timing.hpp"

namespace samoyeds {

using tuning::random_fill;

// gpt-oss's biased epilogues in a spec's test data: a float bias per output
// row of each weight operand and expert, on the device for the launches and
// on the host for the reference; empty for the other epilogues.
struct EpilogueData {
  std::vector<DeviceBuffer> device;      // [operand]: experts * m floats
  std::vector<std::vector<float>> host;  // the same values
  int64_t m = 0;

  EpilogueData() = default;
  EpilogueData(const KernelSpec& spec, int64_t rows, int experts, uint64_t seed) : m(rows) {
    if (!biased_epilogue(spec.epilogue)) return;
    std::mt19937 gen(static_cast<uint32_t>(seed));
    // Biases of a few units push some gate and up values past the clamp (7).
    std::normal_distribution<float> nd(0.0f, 3.0f);
    for (int w = 0; w < (gated_epilogue(spec.epilogue) ? 2 : 1); ++w) {
      host.emplace_back(size_t(rows * experts));
      for (auto& v : host.back()) v = nd(gen);
      device.emplace_back(host.back().size() * 4);
      device.back().upload(host.back().data(), device.back().bytes());
    }
  }
  // `opt` with the biases and the activation the spec's epilogue takes.
  LaunchOptions apply(const KernelSpec& spec, LaunchOptions opt) const {
    for (size_t w = 0; w < device.size(); ++w) opt.bias[w] = static_cast<const float*>(device[w].data());
    if (spec.epilogue == Epilogue::ClampedSwiglu) opt.activation.kind = ExpertActivation::Kind::ClampedSwiglu;
    return opt;
  }
  // The reference's inputs for expert e (the activation's constants are the defaults the launch takes too).
  EpilogueInputs inputs(int e) const {
    EpilogueInputs in;
    if (host.size() > 0) in.bias.assign(host[0].begin() + e * m, host[0].begin() + (e + 1) * m);
    if (host.size() > 1) in.up_bias.assign(host[1].begin() + e * m, host[1].begin() + (e + 1) * m);
    return in;
  }
};

// Rows of every expert's weights decoded to float64, for checking a launch
// on the real shape by sampled output rows: the same rows of each operand.
struct SampledWeights {
  std::vector<int64_t> rows;                // increasing
  std::vector<std::vector<DenseF64>> f64;   // [operand][expert]: rows x k
};

// Device data for timing one spec: weights in rotated copies, a token batch
// four times the largest bucket, ids into it, gathered rows for cuBLAS.
struct OpRunner::Problem {
  struct LtRun {  // cuSPARSELt for one token count: a plan and rotated compressed weights per operand
    std::vector<std::shared_ptr<tuning::CusparseLtBaseline::Plan>> plans;
    std::vector<std::vector<DeviceBuffer>> compressed;
  };
  std::map<int64_t, LtRun> lt;
  int operands = 1;
  std::vector<std::vector<PackedExpertWeights>> sparse;  // [operand][copy]
  std::vector<std::vector<DeviceBuffer>> dense;          // [operand][copy]
  DeviceBuffer x, ids, x_gathered, y, y2, p;
  EpilogueData epi;
  int64_t batch_rows = 0;
  // For checks on this shape: token rows in the order of the output's rows
  // (gathered for the up projections, x as it is for down) and sampled weights.
  std::vector<uint16_t> x_out_order;
  std::vector<float> probs;  // the routing weights in p
  SampledWeights sampled;
};

// A grouped spec's data: every expert's weights (sparse for ours, dense for
// cuBLAS), a token batch, and per token count its routing.
struct OpRunner::Grouped {
  int operands = 1;
  std::vector<GroupedExpertWeights> sparse;      // [operand]
  std::vector<std::vector<DeviceBuffer>> dense;  // [operand][expert]
  EpilogueData epi;
  std::vector<uint16_t> x_host;                  // up: the batch's tokens [max_tokens, k]; down: h [rows, k]
  SampledWeights sampled;                        // for checks on this shape
  DeviceBuffer x, y, y2;
  DeviceBuffer x_list;  // up: room for the tokens in list order (configs that read them by TMA copy them there)
  struct Batch {
    tuning::RoutedBatch routed;
    DeviceBuffer offsets, list_token, list_weight;
    DeviceBuffer x_gathered;  // up: the tokens in list order, for cuBLAS (down reads x, already in list order)
  };
  std::map<int64_t, std::unique_ptr<Batch>> batches;
  // The routing of `tokens` tokens (built once; `mu` guards the map).
  Batch& batch(const KernelSpec& spec, int64_t tokens, int top_k, std::mutex& mu);
  // The one grouped launch of spec's op on `b`'s routing.
  void launch(KernelRuntime& rt, const KernelSpec& spec, const TileConfig& config, const Batch& b, int64_t tokens,
              int64_t max_tokens, void* stream) const {
    LaunchOptions opt;
    opt.stream = stream;
    opt.backend = spec.backend;
    opt.config = config;
    opt = epi.apply(spec, opt);
    const auto* off = static_cast<const int32_t*>(b.offsets.data());
    // The list-order copy, where a config makes one, is timed with the launch, as MoeLayer runs both.
    if (spec.op == Op::GatedUp)
      grouped_gated_up(rt, sparse[0], sparse[1], x.data(), max_tokens, static_cast<const int32_t*>(b.list_token.data()),
                       off, tokens, y.data(), opt,
                       {x_list.data(), int64_t(b.routed.lists.token.size())});
    else
      grouped_down_scaled(rt, sparse[0], x.data(), int64_t(b.routed.lists.token.size()), off, tokens,
                          static_cast<const float*>(b.list_weight.data()), y.data(), opt);
  }
};

namespace {

// Rows `rows` of a packed matrix, decoded to float64.
DenseF64 decoded_rows(const PackedWeights& p, const std::vector<int64_t>& rows) {
  const std::vector<double> all = decode_weights_f64(p);
  DenseF64 out{int64_t(rows.size()), p.k, {}};
  out.data.reserve(rows.size() * size_t(p.k));
  for (int64_t r : rows) out.data.insert(out.data.end(), all.begin() + r * p.k, all.begin() + (r + 1) * p.k);
  return out;
}

// Random weights for `experts` experts of one operand, packed (in parallel:
// the larger models have gigabytes of them) and dense; with `sampled`, its
// rows of each expert decoded to float64 as well.
void random_experts(const KernelSpec& spec, int64_t m, int64_t k, int experts, uint64_t seed,
                    std::vector<PackedWeights>* packed, std::vector<std::vector<uint16_t>>* dense,
                    SampledWeights* sampled = nullptr) {
  packed->resize(size_t(experts));
  dense->resize(size_t(experts));
  if (sampled) sampled->f64.emplace_back(size_t(experts));
  parallel_for(size_t(experts), 0, [&](size_t e) {
    (*dense)[e] = random_fill(m * k, spec.dtype, 0.05f, seed + 1000 * e);
    (*packed)[e] = pack_weights((*dense)[e].data(), m, k, spec.dtype, spec.sparsity);
    if (sampled) sampled->f64.back()[e] = decoded_rows((*packed)[e], sampled->rows);
  });
}

// The epilogue inputs of output rows `rows` only.
EpilogueInputs inputs_of_rows(EpilogueInputs in, const std::vector<int64_t>& rows) {
  for (auto* v : {&in.bias, &in.up_bias}) {
    if (v->empty()) continue;
    std::vector<double> kept;
    for (int64_t r : rows) kept.push_back((*v)[size_t(r)]);
    *v = std::move(kept);
  }
  return in;
}

// A routing's lists on the device, as the grouped launches read them.
void upload_lists(const tuning::RoutedBatch& r, DeviceBuffer* offsets, DeviceBuffer* list_token,
                  DeviceBuffer* list_weight) {
  *offsets = DeviceBuffer(r.offsets.size() * 4);
  offsets->upload(r.offsets.data(), r.offsets.size() * 4);
  *list_token = DeviceBuffer(r.lists.token.size() * 4 + 16);
  list_token->upload(r.lists.token.data(), r.lists.token.size() * 4);
  *list_weight = DeviceBuffer(r.list_weight.size() * 4 + 16);
  list_weight->upload(r.list_weight.data(), r.list_weight.size() * 4);
}

// The key of a spec's test data, its backend left out: every backend times
// and checks on the same data.
std::string data_key(const KernelSpec& spec) {
  return fmt::format("{} {} {} m{} k{} {} E{}{} {}", op_name(spec.op), spec.arch, dtype_name(spec.dtype), spec.m,
                     spec.k, spec.sparsity.to_string(), spec.experts, spec.grouped ? " grouped" : "",
                     epilogue_name(spec.epilogue));
}

// Whether a candidate's output is within the DESIGN.md tolerance of the
// float64 reference (a NaN anywhere fails); if not, *why says by how much.
bool matches_reference(const std::vector<uint16_t>& got, DType dtype, const std::vector<double>& ref,
                       const std::string& what, std::string* why) {
  std::vector<double> g(got.size());
  for (size_t i = 0; i < got.size(); ++i) g[i] = to_float(dtype, got[i]);
  const double err = relative_frobenius_error(g, ref);
  const double tol = dtype_tolerance(dtype);
  if (err <= tol) return true;
  *why = fmt::format("{}relative error {:.3g} > {:.0e}", what, err, tol);
  return false;
}

}  // namespace

OpRunner::OpRunner(KernelRuntime& rt, int64_t max_tokens, int top_k)
    : rt_(rt), max_tokens_(max_tokens), top_k_(top_k) {
  if (top_k < 1) throw Error(ErrorCode::InvalidArgument, fmt::format("top_k {} (at least 1)", top_k));
  rt_.device().make_current();
  CUstream s;
  check(driver().cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  stream_ = s;
}

OpRunner::~OpRunner() { driver().cuStreamDestroy(static_cast<CUstream>(stream_)); }

DeviceFingerprint OpRunner::device() { return current_fingerprint(rt_.device().info().ordinal); }

void OpRunner::prepare(const KernelSpec& spec, const TileConfig& config) { rt_.get(spec, config); }

// One expert on a small shape (partial row and token tiles), `tokens`
// gathered rows and routing weights, and its float64 reference: built once
// per spec and token count; each candidate runs on it into a poisoned output.
struct OpRunner::SingleCheck {
  std::vector<PackedExpertWeights> weights;  // [operand]
  EpilogueData epi;
  int64_t rows = 0, m = 0;
  DeviceBuffer x, ids, x_in_order, p, y;
  std::vector<double> reference;  // [tokens, m]
};

OpRunner::SingleCheck& OpRunner::single_check(const KernelSpec& spec, int64_t tokens) {
  const std::string key = fmt::format("{} tokens {}", data_key(spec), tokens);
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = single_checks_[key];
  if (slot) return *slot;
  auto c = std::make_unique<SingleCheck>();
  const int64_t m = 320, k = std::max<int64_t>(384, spec.sparsity.V * 2), rows = tokens + 37;
  const bool gated = spec.op == Op::GatedUp;
  c->epi = EpilogueData(spec, m, 1, 23);
  std::vector<DenseF64> decoded;
  for (int w = 0; w < (gated ? 2 : 1); ++w) {
    auto dense = random_fill(m * k, spec.dtype, 0.1f, uint64_t(17 + w));
    const PackedWeights packed = pack_weights(dense.data(), m, k, spec.dtype, spec.sparsity);
    decoded.push_back(DenseF64{m, k, decode_weights_f64(packed)});
    c->weights.push_back(PackedExpertWeights::upload(packed));
  }
  auto x = random_fill(rows * k, spec.dtype, 1.0f, 99);
  std::vector<int32_t> ids(static_cast<size_t>(tokens));
  std::mt19937 gen(7);
  for (auto& i : ids) i = int32_t(gen() % uint32_t(rows));
  std::vector<float> p(static_cast<size_t>(tokens));
  for (auto& v : p) v = 0.25f + float(gen() % 100) / 100.0f;
  const std::vector<uint16_t> xg = take_rows(x.data(), k, ids);
  c->rows = rows;
  c->m = m;
  c->x = DeviceBuffer(x.size() * 2);
  c->x.upload(x.data(), x.size() * 2);
  c->ids = DeviceBuffer(ids.size() * 4 + 16);
  c->ids.upload(ids.data(), ids.size() * 4);
  c->x_in_order = DeviceBuffer(xg.size() * 2 + 16);
  c->x_in_order.upload(xg.data(), xg.size() * 2);
  c->p = DeviceBuffer(p.size() * 4 + 16);
  c->p.upload(p.data(), p.size() * 4);
  c->y = DeviceBuffer(size_t(tokens * m * 2));

  const DenseF64 xf = to_f64(x.data(), rows, k, spec.dtype);
  std::vector<int32_t> rows_used = ids;
  if (spec.op == Op::Down) std::iota(rows_used.begin(), rows_used.end(), 0);
  DenseF64 ref = reference_ssmm(decoded[0], xf, rows_used, spec.epilogue, gated ? &decoded[1] : nullptr,
                                c->epi.inputs(0));
  if (spec.op == Op::Down)
    for (int64_t i = 0; i < tokens; ++i)
      for (int64_t r = 0; r < m; ++r) ref.data[size_t(i * m + r)] *= p[size_t(i)];
  c->reference = std::move(ref.data);
  slot = std::move(c);
  return *slot;
}

bool OpRunner::verify(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* why) {
  if (spec.grouped) return verify_grouped(spec, config, tokens, why);
  SingleCheck& c = single_check(spec, tokens);
  // Candidates are checked one at a time (the autotuner's verify phase is serial).
  c.y.fill_bytes(0xff);  // NaN: anything not written shows up
  run_candidate(spec, config, c.weights[0], spec.op == Op::GatedUp ? &c.weights[1] : nullptr, c.x.data(), c.rows,
                static_cast<const int32_t*>(c.ids.data()), c.x_in_order.data(), static_cast<const float*>(c.p.data()),
                tokens, c.y.data(), nullptr, c.epi);
  rt_.device().synchronize();
  std::vector<uint16_t> got(size_t(tokens * c.m));
  c.y.download(got.data(), got.size() * 2);
  return matches_reference(got, spec.dtype, c.reference, "", why);
}

bool OpRunner::verify_at_bucket(const KernelSpec& spec, const TileConfig& config, int64_t tokens, std::string* path,
                                std::string* why) {
  if (tokens > max_tokens_) throw Error(ErrorCode::InvalidArgument, "bucket larger than the tuner's buffers");
  const bool gated = spec.op == Op::GatedUp;
  const bool in_order = kernel_family(spec.backend).reads_rows_in_order(config) && spec.op != Op::Down;
  const int64_t k = spec.k, m = spec.m;
  // The output rows checked: each with its expert, its token row and its routing weight.
  struct Checked {
    int64_t row;
    int expert;
    const uint16_t* x;
    double scale;
  };
  std::vector<Checked> checked;
  const DeviceBuffer* y = nullptr;
  const SampledWeights* sampled = nullptr;
  const EpilogueData* epi = nullptr;
  if (spec.grouped) {
    Grouped& g = grouped(spec);
    const Grouped::Batch& b = g.batch(spec, tokens, top_k_, mu_);
    g.y.fill_bytes(0xff);  // NaN: any row not written shows up
    rt_.device().synchronize();
    g.launch(rt_, spec, config, b, tokens, max_tokens_, stream_);
    const auto& off = b.routed.lists.offsets;
    const int64_t list_rows = int64_t(b.routed.lists.token.size());
    std::set<int64_t> rows;  // every expert's first and last row, and one of every token tile
    for (int e = 0; e < spec.experts; ++e)
      if (off[size_t(e)] < off[size_t(e) + 1]) rows.insert({int64_t(off[size_t(e)]), int64_t(off[size_t(e) + 1]) - 1});
    for (int64_t i : tuning::one_per_block(list_rows, tuning::kTokenRowBlock, uint32_t(tokens))) rows.insert(i);
    for (int64_t i : rows) {
      const int e = int(std::upper_bound(off.begin(), off.end(), i) - off.begin()) - 1;
      const int64_t src = gated ? b.routed.lists.token[size_t(i)] : i;
      checked.push_back({i, e, &g.x_host[size_t(src * k)], gated ? 1.0 : double(b.routed.list_weight[size_t(i)])});
    }
    y = &g.y;
    sampled = &g.sampled;
    epi = &g.epi;
    *path = fmt::format("grouped launch over {} experts ({} list rows: {} tokens, top-{}), token rows {}",
                        spec.experts, list_rows, tokens, top_k_,
                        in_order ? "copied into list order" : gated ? "gathered by id" : "in list order");
  } else {
    Problem& p = problem(spec);
    p.y.fill_bytes(0xff);
    rt_.device().synchronize();
    launch(spec, config, p, 0, tokens);
    for (int64_t i : tuning::one_per_block(tokens, tuning::kTokenRowBlock, uint32_t(tokens)))
      checked.push_back({i, 0, &p.x_out_order[size_t(i * k)], spec.op == Op::Down ? double(p.probs[size_t(i)]) : 1.0});
    y = &p.y;
    sampled = &p.sampled;
    epi = &p.epi;
    *path = fmt::format("one expert, {} tokens, token rows {}", tokens,
                        in_order || spec.op == Op::Down ? "in order" : "gathered by id");
  }
  rt_.device().synchronize();
  // What the launch wrote at the sampled outputs.
  const auto& cols = sampled->rows;
  const size_t n_cols = cols.size();
  std::vector<double> got(checked.size() * n_cols), ref(checked.size() * n_cols);
  std::vector<uint16_t> row_bits(static_cast<size_t>(m));
  for (size_t i = 0; i < checked.size(); ++i) {
    y->download(row_bits.data(), size_t(m) * 2, size_t(checked[i].row * m) * 2);
    for (size_t c = 0; c < n_cols; ++c) got[i * n_cols + c] = to_float(spec.dtype, row_bits[size_t(cols[c])]);
  }
  // The float64 reference of the same outputs, in chunks of one expert's rows (in parallel).
  std::vector<std::pair<size_t, size_t>> chunks;
  for (size_t first = 0; first < checked.size();) {
    size_t last = first;
    while (last < checked.size() && last - first < 64 && checked[last].expert == checked[first].expert) ++last;
    chunks.push_back({first, last});
    first = last;
  }
  parallel_for(chunks.size(), 0, [&](size_t ci) {
    const auto [first, last] = chunks[ci];
    const int e = checked[first].expert;
    DenseF64 x{int64_t(last - first), k, {}};
    for (size_t i = first; i < last; ++i) {
      const DenseF64 row = to_f64(checked[i].x, 1, k, spec.dtype);
      x.data.insert(x.data.end(), row.data.begin(), row.data.end());
    }
    std::vector<int32_t> ids(last - first);
    std::iota(ids.begin(), ids.end(), 0);
    const DenseF64 r = reference_ssmm(sampled->f64[0][size_t(e)], x, ids, spec.epilogue,
                                      gated ? &sampled->f64[1][size_t(e)] : nullptr,
                                      inputs_of_rows(epi->inputs(e), cols));
    for (size_t i = first; i < last; ++i)
      for (size_t c = 0; c < n_cols; ++c) ref[i * n_cols + c] = r.data[(i - first) * n_cols + c] * checked[i].scale;
  });
  return tuning::rows_and_cols_match(got, ref, checked.size(), n_cols, spec.dtype, why);
}

void OpRunner::release(const KernelSpec& spec) {
  const std::string key = data_key(spec);
  std::lock_guard<std::mutex> lock(mu_);
  problems_.erase(key);
  grouped_.erase(key);
  const auto erase_tokens_of = [&](auto& checks) {
    for (auto it = checks.begin(); it != checks.end();)
      it = it->first.rfind(key + " tokens ", 0) == 0 ? checks.erase(it) : std::next(it);
  };
  erase_tokens_of(checks_);
  erase_tokens_of(single_checks_);
}

OpRunner::Problem& OpRunner::problem(const KernelSpec& spec) {
  const std::string key = data_key(spec);
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = problems_[key];
  if (slot) return *slot;
  auto p = std::make_unique<Problem>();
  p->operands = spec.op == Op::GatedUp ? 2 : 1;
  const int64_t m = spec.m, k = spec.k;
  p->sampled.rows = tuning::one_per_block(m, tuning::kWeightRowBlock, uint32_t(m + k));
  for (int w = 0; w < p->operands; ++w) {
    auto dense = random_fill(m * k, spec.dtype, 0.05f, uint64_t(m * 31 + k + w));
    const PackedWeights packed = pack_weights(dense.data(), m, k, spec.dtype, spec.sparsity);
    p->sampled.f64.push_back({decoded_rows(packed, p->sampled.rows)});
    const int copies = tuning::rotation_copies(size_t(packed.payload_bytes()));
    p->sparse.emplace_back();
    for (int c = 0; c < copies; ++c) p->sparse.back().push_back(PackedExpertWeights::upload(packed));
    const int dense_copies = tuning::rotation_copies(size_t(m * k * 2));
    p->dense.emplace_back();
    for (int c = 0; c < dense_copies; ++c) {
      p->dense.back().emplace_back(size_t(m * k * 2));
      p->dense.back().back().upload(dense.data(), size_t(m * k * 2));
    }
  }
  p->batch_rows = spec.op == Op::Down ? max_tokens_ : 4 * max_tokens_;
  auto x = random_fill(p->batch_rows * k, spec.dtype, 1.0f, 5);
  std::vector<int32_t> perm(static_cast<size_t>(p->batch_rows));
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), std::mt19937(11));
  perm.resize(static_cast<size_t>(max_tokens_));
  const std::vector<uint16_t> xg = take_rows(x.data(), k, perm);
  // Varied routing weights: a down kernel reading the wrong one fails its check.
  std::vector<float> probs(static_cast<size_t>(max_tokens_));
  std::mt19937 pgen(13);
  for (auto& v : probs) v = 0.25f + float(pgen() % 100) / 100.0f;
  p->probs = probs;
  p->x = DeviceBuffer(x.size() * 2);
  p->x.upload(x.data(), x.size() * 2);
  p->ids = DeviceBuffer(perm.size() * 4);
  p->ids.upload(perm.data(), perm.size() * 4);
  p->x_gathered = DeviceBuffer(xg.size() * 2);
  p->x_gathered.upload(xg.data(), xg.size() * 2);
  p->x_out_order = spec.op == Op::Down ? x : xg;
  p->p = DeviceBuffer(probs.size() * 4);
  p->p.upload(probs.data(), probs.size() * 4);
  p->y = DeviceBuffer(size_t(max_tokens_ * m * 2));
  p->y2 = DeviceBuffer(size_t(max_tokens_ * m * 2));
  p->epi = EpilogueData(spec, m, 1, 29);
  slot = std::move(p);
  return *slot;
}

void OpRunner::run_candidate(const KernelSpec& spec, const TileConfig& config, const PackedExpertWeights& w0,
                                     const PackedExpertWeights* w1, const void* x, int64_t x_rows,
                                     const int32_t* ids, const void* x_in_order, const float* p, int64_t tokens,
                                     void* y, void* stream, const EpilogueData& epi) {
  LaunchOptions opt;
  opt.stream = stream;
  opt.backend = spec.backend;  // without it a config valid for both backends would run mma_sp's kernel
  opt.config = config;
  opt = epi.apply(spec, opt);
  // A kernel that reads rows in order gets them so (as a call with rows in
  // order, e.g. a shared expert's, gives them); down reads x in order already.
  if (kernel_family(spec.backend).reads_rows_in_order(config) && spec.op != Op::Down) {
    x = x_in_order;
    x_rows = tokens;
    ids = nullptr;
  }
  if (spec.op == Op::GatedUp)
    gated_up(rt_, w0, *w1, x, x_rows, ids, tokens, y, opt);
  else if (spec.op == Op::Down)
    down_scaled(rt_, w0, x, tokens, p, y, opt);
  else
    ssmm(rt_, w0, x, x_rows, ids, tokens, y, spec.epilogue, opt);
}

void OpRunner::launch(const KernelSpec& spec, const TileConfig& config, Problem& p, int copy, int64_t tokens) {
  const auto* w1 = spec.op == Op::GatedUp ? &p.sparse[1][size_t(copy) % p.sparse[1].size()] : nullptr;
  run_candidate(spec, config, p.sparse[0][size_t(copy) % p.sparse[0].size()], w1, p.x.data(), p.batch_rows,
                static_cast<const int32_t*>(p.ids.data()), p.x_gathered.data(), static_cast<const float*>(p.p.data()),
                tokens, p.y.data(), stream_, p.epi);
}

double OpRunner::time_ms(const KernelSpec& spec, const TileConfig& config, int64_t tokens) {
  if (tokens > max_tokens_) throw Error(ErrorCode::InvalidArgument, "bucket larger than the tuner's buffers");
  if (spec.grouped) {
    Grouped& g = grouped(spec);
    const Grouped::Batch& b = g.batch(spec, tokens, top_k_, mu_);
    // At a few tokens the experts a routing touches may fit L2 (Qwen3-30B:
    // 8 of 128 experts, 13 MB): each launch alone after a flush, as the
    // cuBLAS loop beside it.
    return tuning::flushed_median_ms(stream_,
                                     [&](int) { g.launch(rt_, spec, config, b, tokens, max_tokens_, stream_); });
  }
  Problem& p = problem(spec);
  const int batch = tuning::held_batch(int(p.sparse[0].size()), p.operands);
  return tuning::median_ms(stream_, [&](int i) { launch(spec, config, p, i, tokens); }, batch, 5, 2,
                           tuning::Launches::BackToBack);
}

double OpRunner::baseline_ms(const KernelSpec& spec, int64_t tokens) {
  if (spec.grouped) {  // cuBLAS expert after expert on the same routing (the classic loop)
    Grouped& g = grouped(spec);
    const Grouped::Batch& b = g.batch(spec, tokens, top_k_, mu_);
    const auto& off = b.routed.lists.offsets;
    const char* x = static_cast<const char*>(spec.op == Op::GatedUp ? b.x_gathered.data() : g.x.data());
    return tuning::flushed_median_ms(stream_, [&](int) {
      for (int e = 0; e < spec.experts; ++e) {
        const int64_t begin = off[size_t(e)], n = off[size_t(e) + 1] - begin;
        if (n == 0) continue;
        for (int w = 0; w < g.operands; ++w)
          cublas_.gemm(stream_, spec.dtype, spec.m, n, spec.k, g.dense[size_t(w)][size_t(e)].data(),
                       x + begin * spec.k * 2,
                       static_cast<char*>(w == 0 ? g.y.data() : g.y2.data()) + begin * spec.m * 2);
      }
    });
  }
  Problem& p = problem(spec);
  const int batch = tuning::held_batch(int(p.dense[0].size()), p.operands);
  // The dense job: every weight operand times the gathered tokens.
  return tuning::median_ms(stream_, [&](int i) {
    for (int w = 0; w < p.operands; ++w)
      cublas_.gemm(stream_, spec.dtype, spec.m, tokens, spec.k, p.dense[size_t(w)][size_t(i) % p.dense[size_t(w)].size()].data(),
                   p.x_gathered.data(), w == 0 ? p.y.data() : p.y2.data());
  }, batch, 5, 2, tuning::Launches::BackToBack);
}

double OpRunner::cusparselt_ms(const KernelSpec& spec, int64_t tokens, std::string* why) {
  if (spec.grouped) {
    *why = "cuSPARSELt is not timed for grouped launches";
    return -1.0;
  }
  if (!cusparselt_looked_) {
    cusparselt_looked_ = true;
    cusparselt_ = tuning::CusparseLtBaseline::create(&cusparselt_absent_);
  }
  if (!cusparselt_) {
    *why = cusparselt_absent_;
    return -1.0;
  }
  Problem& p = problem(spec);
  auto& run = p.lt[tokens];
  if (run.plans.empty()) try {
    for (int w = 0; w < p.operands; ++w) {
      auto plan = cusparselt_->prepare(stream_, spec.dtype, spec.m, tokens, spec.k, p.dense[size_t(w)][0].data(),
                                       p.x_gathered.data(), p.y.data());
      const size_t bytes = cusparselt_->compressed_bytes(*plan);
      std::vector<char> host(bytes);
      copy_to_host(host.data(), cusparselt_->compressed(*plan), bytes);
      run.compressed.emplace_back();
      for (int c = 0; c < tuning::rotation_copies(bytes); ++c) {
        run.compressed.back().emplace_back(bytes);
        run.compressed.back().back().upload(host.data(), bytes);
      }
      run.plans.push_back(std::move(plan));
    }
  } catch (const Error& e) {
    // Not every shape is one cuSPARSELt takes (e.g. a single token): say so
    // for this row instead of ending the run.
    run = Problem::LtRun{};
    *why = fmt::format("{} tokens: {}", tokens, e.what());
    return -1.0;
  }
  const int batch = tuning::held_batch(int(run.compressed[0].size()), p.operands);
  return tuning::median_ms(stream_, [&](int i) {
    for (int w = 0; w < p.operands; ++w)
      cusparselt_->matmul(stream_, *run.plans[size_t(w)],
                          run.compressed[size_t(w)][size_t(i) % run.compressed[size_t(w)].size()].data(),
                          p.x_gathered.data(), w == 0 ? p.y.data() : p.y2.data());
  }, batch, 5, 2, tuning::Launches::BackToBack);
}

// Every expert small (partial row and token tiles), `tokens` tokens routed
// top_k each: each list row against the float64 reference of its expert.
// The data and the reference are built once per spec; each candidate runs
// on them into a poisoned output.
struct OpRunner::GroupedCheck {
  std::vector<GroupedExpertWeights> weights;  // [operand]
  tuning::RoutedBatch routed;
  int64_t x_rows = 0, rows = 0, m = 0;
  DeviceBuffer x, offsets, list_token, list_weight, y;
  DeviceBuffer x_list;            // up: room for the tokens in list order [rows, k]
  EpilogueData epi;
  std::vector<double> reference;  // [rows, m], list order
};

OpRunner::GroupedCheck& OpRunner::grouped_check(const KernelSpec& spec, int64_t tokens) {
  const std::string key = fmt::format("{} tokens {}", data_key(spec), tokens);
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = checks_[key];
  if (slot) return *slot;
  const int E = spec.experts;
  const int64_t m = 320, k = std::max<int64_t>(384, spec.sparsity.V * 2);
  const bool gated = spec.op == Op::GatedUp;
  if (!gated && spec.op != Op::Down)
    throw Error(ErrorCode::Unsupported, "grouped tuning covers the gated up and the down projection");
  auto c = std::make_unique<GroupedCheck>();
  std::vector<std::vector<DenseF64>> decoded(gated ? 2 : 1);
  for (int w = 0; w < (gated ? 2 : 1); ++w) {
    std::vector<PackedWeights> packed;
    std::vector<std::vector<uint16_t>> dense;
    random_experts(spec, m, k, E, uint64_t(17 + w), &packed, &dense);
    for (const auto& p : packed) decoded[size_t(w)].push_back(DenseF64{m, k, decode_weights_f64(p)});
    c->weights.push_back(GroupedExpertWeights::upload(packed));
  }
  c->epi = EpilogueData(spec, m, E, 31);
  c->routed = tuning::random_routed_batch(tokens, E, top_k_, 3);
  const auto& b = c->routed;
  c->m = m;
  c->rows = int64_t(b.lists.token.size());      // tokens * top_k
  c->x_rows = gated ? tokens : c->rows;         // down reads h, one row per list row
  const auto x = random_fill(c->x_rows * k, spec.dtype, 1.0f, 99);
  c->x = DeviceBuffer(x.size() * 2);
  c->x.upload(x.data(), x.size() * 2);
  if (gated) c->x_list = DeviceBuffer(size_t(c->rows * k * 2));
  upload_lists(b, &c->offsets, &c->list_token, &c->list_weight);
  c->y = DeviceBuffer(size_t(c->rows * m * 2) + 16);
  const DenseF64 xf = to_f64(x.data(), c->x_rows, k, spec.dtype);
  c->reference.assign(size_t(c->rows * m), 0.0);
  for (int e = 0; e < E; ++e) {
    const int64_t begin = b.lists.offsets[size_t(e)], end = b.lists.offsets[size_t(e) + 1];
    if (begin == end) continue;
    std::vector<int32_t> ids;  // up: the expert's tokens; down: its rows of h
    for (int64_t i = begin; i < end; ++i) ids.push_back(gated ? b.lists.token[size_t(i)] : int32_t(i));
    const DenseF64 r = reference_ssmm(decoded[0][size_t(e)], xf, ids, spec.epilogue,
                                      gated ? &decoded[1][size_t(e)] : nullptr, c->epi.inputs(e));
    for (int64_t i = begin; i < end; ++i) {
      const double scale = gated ? 1.0 : double(b.list_weight[size_t(i)]);
      for (int64_t col = 0; col < m; ++col)
        c->reference[size_t(i * m + col)] = r.data[size_t((i - begin) * m + col)] * scale;
    }
  }
  slot = std::move(c);
  return *slot;
}

bool OpRunner::verify_grouped(const KernelSpec& spec, const TileConfig& config, int64_t tokens,
                                      std::string* why) {
  GroupedCheck& c = grouped_check(spec, tokens);
  // Candidates are checked one at a time (the autotuner's verify phase is serial).
  c.y.fill_bytes(0xff);  // NaN: any row not written shows up
  LaunchOptions opt;
  opt.backend = spec.backend;
  opt.config = config;
  opt = c.epi.apply(spec, opt);
  const auto* off = static_cast<const int32_t*>(c.offsets.data());
  if (spec.op == Op::GatedUp)
    grouped_gated_up(rt_, c.weights[0], c.weights[1], c.x.data(), c.x_rows,
                     static_cast<const int32_t*>(c.list_token.data()), off, tokens, c.y.data(), opt,
                     {c.x_list.data(), c.rows});
  else
    grouped_down_scaled(rt_, c.weights[0], c.x.data(), c.x_rows, off, tokens,
                        static_cast<const float*>(c.list_weight.data()), c.y.data(), opt);
  rt_.device().synchronize();
  std::vector<uint16_t> got(size_t(c.rows * c.m));
  c.y.download(got.data(), got.size() * 2);
  return matches_reference(got, spec.dtype, c.reference, fmt::format("grouped over {} experts: ", spec.experts), why);
}

OpRunner::Grouped& OpRunner::grouped(const KernelSpec& spec) {
  const std::string key = data_key(spec);
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = grouped_[key];
  if (slot) return *slot;
  if (spec.op != Op::GatedUp && spec.op != Op::Down)
    throw Error(ErrorCode::Unsupported, "grouped tuning covers the gated up and the down projection");
  auto g = std::make_unique<Grouped>();
  g->operands = spec.op == Op::GatedUp ? 2 : 1;
  const int64_t m = spec.m, k = spec.k;
  g->sampled.rows = tuning::one_per_block(m, tuning::kWeightRowBlock, uint32_t(m + k));
  for (int w = 0; w < g->operands; ++w) {
    std::vector<PackedWeights> packed;
    std::vector<std::vector<uint16_t>> dense;
    random_experts(spec, m, k, spec.experts, uint64_t(m * 31 + k + w), &packed, &dense, &g->sampled);
    g->sparse.push_back(GroupedExpertWeights::upload(packed));
    g->dense.emplace_back();
    for (const auto& d : dense) {
      g->dense.back().emplace_back(d.size() * 2);
      g->dense.back().back().upload(d.data(), d.size() * 2);
    }
  }
  const int64_t list_rows = max_tokens_ * top_k_;
  const int64_t x_rows = spec.op == Op::GatedUp ? max_tokens_ : list_rows;
  g->x_host = random_fill(x_rows * k, spec.dtype, 1.0f, 5);
  g->x = DeviceBuffer(g->x_host.size() * 2);
  g->x.upload(g->x_host.data(), g->x_host.size() * 2);
  g->y = DeviceBuffer(size_t(list_rows * m * 2));
  g->y2 = DeviceBuffer(size_t(list_rows * m * 2));
  if (spec.op == Op::GatedUp) g->x_list = DeviceBuffer(size_t(list_rows * k * 2));
  g->epi = EpilogueData(spec, m, spec.experts, 37);
  slot = std::move(g);
  return *slot;
}

OpRunner::Grouped::Batch& OpRunner::Grouped::batch(const KernelSpec& spec, int64_t tokens, int top_k,
                                                                   std::mutex& mu) {
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = batches[tokens];
  if (slot) return *slot;
  auto b = std::make_unique<Batch>();
  b->routed = tuning::random_routed_batch(tokens, spec.experts, top_k, uint32_t(7 + tokens));
  const auto& r = b->routed;
  upload_lists(r, &b->offsets, &b->list_token, &b->list_weight);
  if (spec.op == Op::GatedUp) {
    const std::vector<uint16_t> xg = take_rows(x_host.data(), spec.k, r.lists.token);
    b->x_gathered = DeviceBuffer(xg.size() * 2 + 16);
    b->x_gathered.upload(xg.data(), xg.size() * 2);
  }
  slot = std::move(b);
  return *slot;
}

}  // namespace samoyeds
