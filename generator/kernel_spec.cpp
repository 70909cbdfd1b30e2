#include "samoyeds/kernel_spec.hpp"

#include <cctype>
#include <cstdio>
#include <functional>

#include <fmt/format.h>

#include "samoyeds/error.hpp"

namespace samoyeds {

const char* op_name(Op op) {
  switch (op) {
    case Op::Ssmm: return "ssmm";
    case Op::GatedUp: return "gated_up";
    case Op::Down: return "down";
  }
  return "?";
}

Op parse_op(const std::string& name) {
  if (name == "ssmm") return Op::Ssmm;
  if (name == "gated_up" || name == "up") return Op::GatedUp;
  if (name == "down") return Op::Down;
  throw Error(ErrorCode::InvalidArgument, "unknown op '" + name + "' (expected ssmm, gated_up or down)");
}

const char* backend_name(Backend b) {
  switch (b) {
#define SAMOYEDS_BACKEND_NAME(name, text, family) \
  case Backend::name: return text;
    SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_NAME)
#undef SAMOYEDS_BACKEND_NAME
  }
  return "?";
}

const std::vector<Backend>& all_backends() {
  static const std::vector<Backend> all = {
#define SAMOYEDS_BACKEND_ALL(name, text, family) Backend::name,
      SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_ALL)
#undef SAMOYEDS_BACKEND_ALL
  };
  return all;
}

Backend parse_backend(const std::string& name) {
  std::string known;
#define SAMOYEDS_BACKEND_PARSE(value, text, family)  \
  if (name == text) return Backend::value;           \
  known += known.empty() ? text : std::string(", ") + text;
  SAMOYEDS_BACKENDS(SAMOYEDS_BACKEND_PARSE)
#undef SAMOYEDS_BACKEND_PARSE
  throw Error(ErrorCode::InvalidArgument, "unknown backend '" + name + "' (" + known + ")");
}

int arch_number(const std::string& arch) {
  // "sm_" + two digits + optional 'a'; parsed by hand (it runs per launch).
  const size_t n = arch.size();
  const bool ok = (n == 5 || (n == 6 && arch[5] == 'a')) && arch.compare(0, 3, "sm_") == 0 &&
                  arch[3] >= '1' && arch[3] <= '9' && arch[4] >= '0' && arch[4] <= '9';
  if (!ok) throw Error(ErrorCode::InvalidArgument, "bad architecture '" + arch + "' (expected e.g. sm_80, sm_90a)");
  return (arch[3] - '0') * 10 + (arch[4] - '0');
}

int max_smem_per_block(const std::string& arch) {
  const int n = arch_number(arch);
  if (n == 80 || n == 87) return 163 * 1024;
  if (n >= 90) return 227 * 1024;
  return 99 * 1024;  // sm_86, sm_89
}

void KernelSpec::validate() const {
  sparsity.validate();
  const int n = arch_number(arch);
  if (n < 80) throw Error(ErrorCode::Unsupported, "sparse tensor cores need sm_80 or newer, got " + arch);
  if (m <= 0 || k <= 0) throw Error(ErrorCode::InvalidArgument, fmt::format("shape m={} k={} is empty", m, k));
  if (k % 8 != 0)
    throw Error(ErrorCode::Unsupported,
                fmt::format("k={} must be a multiple of 8 (token rows are read in 16-byte pieces)", k));
  if (experts < 1) throw Error(ErrorCode::InvalidArgument, "experts must be >= 1");
  if ((op == Op::GatedUp) != gated_epilogue(epilogue))
    throw Error(ErrorCode::InvalidArgument, fmt::format("the {} epilogue: the gated epilogues (gated_silu, "
                                                        "clamped_swiglu) belong to the gated_up op and only to it",
                                                        epilogue_name(epilogue)));
  if (op == Op::Down && epilogue != Epilogue::None && epilogue != Epilogue::Bias)
    throw Error(ErrorCode::InvalidArgument, "the down op has no activation (a bias at most)");
}

std::string KernelSpec::to_string() const {
  return fmt::format("{}/{}/{}/{} m{} k{} {} E{}{} {}", op_name(op), backend_name(backend), arch, dtype_name(dtype), m,
                     k, sparsity.to_string(), experts, grouped ? " grouped" : "", epilogue_name(epilogue));
}

namespace {

// Boost's mixing step: order-dependent, cheap enough for warm dispatch.
void mix(size_t& h, int64_t v) { h ^= std::hash<int64_t>()(v) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); }

}  // namespace

bool KernelSpec::operator==(const KernelSpec& o) const {
#define SAMOYEDS_SPEC_EQ(field) &&field == o.field
  return arch == o.arch SAMOYEDS_SPEC_FIELDS(SAMOYEDS_SPEC_EQ);
}

bool KernelSpec::same_source(const KernelSpec& o) const {
  return arch == o.arch SAMOYEDS_SPEC_SOURCE_FIELDS(SAMOYEDS_SPEC_EQ);
#undef SAMOYEDS_SPEC_EQ
}

size_t KernelSpec::hash() const {
  size_t h = source_hash();
#define SAMOYEDS_SPEC_MIX(field) mix(h, int64_t(field));
  mix(h, m);
  mix(h, k);
  mix(h, experts);
  return h;
}

size_t KernelSpec::source_hash() const {
  size_t h = std::hash<std::string>()(arch);
  SAMOYEDS_SPEC_SOURCE_FIELDS(SAMOYEDS_SPEC_MIX)
#undef SAMOYEDS_SPEC_MIX
  return h;
}

bool TileConfig::default_schedule() const {
  for (int32_t v : schedule)
    if (v != 0) return false;
  return true;
}

bool TileConfig::operator==(const TileConfig& o) const {
#define SAMOYEDS_TILE_EQ(name, prefix, init) &&name == o.name
  return schedule == o.schedule SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_EQ);
#undef SAMOYEDS_TILE_EQ
}

size_t TileConfig::hash() const {
  size_t h = 0;
#define SAMOYEDS_TILE_MIX(name, prefix, init) mix(h, name);
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_MIX)
#undef SAMOYEDS_TILE_MIX
  for (int32_t v : schedule) mix(h, v);
  return h;
}

std::string TileConfig::to_string() const {
  std::string out;
#define SAMOYEDS_TILE_TEXT(name, prefix, init) out += fmt::format("{}{}", prefix, name);
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_TEXT)
#undef SAMOYEDS_TILE_TEXT
  for (int i = 0; i < kMaxScheduleFields; ++i) {
    if (schedule[size_t(i)] == 0) continue;
    if (!schedule_fields || i >= schedule_fields->count) {  // values no field list names: never silently dropped
      out += fmt::format("_f{}={}", i, schedule[size_t(i)]);
      continue;
    }
    const ScheduleField& f = schedule_fields->fields[i];
    out += f.flag ? std::string(f.suffix) : fmt::format("{}{}", f.suffix, schedule[size_t(i)]);
  }
  return out;
}

TileConfig TileConfig::parse(const std::string& text, const ScheduleFields* fields) {
  TileConfig c;
  c.schedule_fields = fields;
  std::string suffixes;
  for (int i = 0; fields && i < fields->count; ++i)
    suffixes += fmt::format(", {}{}", fields->fields[i].suffix, fields->fields[i].flag ? "" : "N");
  const auto bad = [&] {
    std::string form;
#define SAMOYEDS_TILE_FORM(name, prefix, init) form += fmt::format("{}{}", prefix, init);
    SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_FORM)
#undef SAMOYEDS_TILE_FORM
    return Error(ErrorCode::InvalidArgument, fmt::format("bad tile config '{}' (expected e.g. {}{}{})", text, form,
                                                         suffixes.empty() ? "" : ", optionally ", suffixes.empty() ? "" : suffixes.substr(2)));
  };
  std::string rest = text;
  // "<prefix><digits>" for each tile field in turn.
  const auto number = [&](const std::string& prefix, int& value) {
    if (rest.compare(0, prefix.size(), prefix) != 0) return false;
    size_t used = prefix.size(), digits = 0;
    while (used + digits < rest.size() && std::isdigit(static_cast<unsigned char>(rest[used + digits]))) ++digits;
    if (digits == 0 || digits > 6) return false;
    value = std::stoi(rest.substr(used, digits));
    rest = rest.substr(used + digits);
    return true;
  };
#define SAMOYEDS_TILE_PARSE(name, prefix, init) \
  if (!number(prefix, c.name)) throw bad();
  SAMOYEDS_TILE_FIELDS(SAMOYEDS_TILE_PARSE)
#undef SAMOYEDS_TILE_PARSE
  // The schedule suffixes, each at most once, in the field list's order: a
  // number (at least 1) after it, or a flag on its own.
  for (int i = 0; fields && i < fields->count && !rest.empty(); ++i) {
    const ScheduleField& f = fields->fields[i];
    const std::string suffix = f.suffix;
    int value = 1;
    if (f.flag) {
      if (rest != suffix && rest.rfind(suffix + "_", 0) != 0) continue;
      rest = rest.substr(suffix.size());
    } else {
      if (!number(suffix, value)) continue;
      if (value < 1) throw bad();
    }
    c.schedule[size_t(i)] = value == f.default_value ? 0 : value;
  }
  if (!rest.empty()) throw bad();
  return c;
}

}  // namespace samoyeds
