#include "runtime/kernel_builder.hpp"

#include <chrono>
#include <thread>

#include <fmt/format.h>

#include "core/sha256.hpp"
#include "generator/template_library.hpp"

namespace samoyeds {

std::string binary_key(const GeneratedKernel& kernel, const std::string& arch) {
  return binary_key(kernel, arch, TemplateLibrary::embedded());
}

std::string binary_key(const GeneratedKernel& kernel, const std::string& arch, const TemplateLibrary& templates) {
  Sha256 h;
  auto field = [&](const std::string& s) {
    h.update(s);
    h.update(std::string(1, '\0'));
  };
  field(kernel.source);
  field(templates.digest_of_included(kernel.source));
  field(nvrtc_version());
  field(arch);
  for (const auto& o : nvrtc_options(arch)) field(o);
  return h.hex_digest();
}

BinaryRecord build_binary(const GeneratedKernel& kernel, const std::string& arch, const std::string& description,
                          BinaryCache* cache, bool* from_cache) {
  const std::string key = binary_key(kernel, arch);
  *from_cache = false;
  if (cache) {
    // Several processes (and threads) asking for one key: one compiles, the
    // others wait for its row. Bounded: past kMaxWait compile anyway.
    constexpr auto kPoll = std::chrono::milliseconds(50);
    constexpr auto kMaxWait = std::chrono::minutes(10);
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      if (auto hit = cache->get(key)) {
        *from_cache = true;
        return std::move(*hit);
      }
      const BinaryCache::Claim claim = cache->claim(key);
      if (claim == BinaryCache::Claim::Compile || std::chrono::steady_clock::now() - start > kMaxWait) break;
      // Present: stored since get() (a corrupt row get() deleted is claimed next round).
      if (claim == BinaryCache::Claim::Wait) std::this_thread::sleep_for(kPoll);
    }
  }
  CompiledBinary c;
  try {
    c = nvrtc_compile(kernel, arch);
  } catch (...) {
    if (cache) cache->release(key);  // the next asker compiles (and reports) it
    throw;
  }
  BinaryRecord r;
  r.key = key;
  r.arch = arch;
  r.nvrtc = nvrtc_version();
  r.library = SAMOYEDS_VERSION;
  r.kernel_name = kernel.kernel_name;
  r.description = description;
  r.registers = c.registers;
  r.spill_bytes = c.spill_bytes;
  r.compile_ms = c.compile_ms;
  r.blob = std::move(c.cubin);
  if (cache) {
    try {
      cache->put(r);
    } catch (...) {
      try {
        cache->release(key);
      } catch (...) {  // the disk may be full: the claim is taken over once this process is gone
      }
      throw;
    }
  }
  return r;
}

BuiltKernel build_kernel(const KernelSpec& spec, const TileConfig& config, BinaryCache* cache) {
  BuiltKernel out;
  out.spec = spec;
  out.config = config;
  out.generated = kernel_family(spec.backend).generate(spec, config);
  const std::string description = fmt::format("{} {} {} {} {}", backend_name(spec.backend), dtype_name(spec.dtype),
                                              spec.sparsity.to_string(), epilogue_name(spec.epilogue),
                                              config.to_string());
  out.binary = build_binary(out.generated, spec.arch, description, cache, &out.from_cache);
  return out;
}

}  // namespace samoyeds
