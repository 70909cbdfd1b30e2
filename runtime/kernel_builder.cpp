#include "runtime/kernel_builder.hpp"

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
    if (auto hit = cache->get(key)) {
      *from_cache = true;
      return std::move(*hit);
    }
  }
  CompiledBinary c = nvrtc_compile(kernel, arch);
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
  if (cache) cache->put(r);
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
