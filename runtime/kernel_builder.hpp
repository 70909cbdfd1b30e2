// spec + config -> loadable binary: generate, look the content key up in the
// binary cache, compile with NVRTC on a miss and store the result. The one
// path by which the CLI, the tuner and the runtime obtain kernels.
#pragma once
#include <string>

#include "cache/binary_cache.hpp"
#include "backends/backend.hpp"
#include "generator/template_library.hpp"
#include "runtime/nvrtc_compiler.hpp"

namespace samoyeds {

struct BuiltKernel {
  KernelSpec spec;
  TileConfig config;
  GeneratedKernel generated;
  BinaryRecord binary;
  bool from_cache = false;
};

// sha256 over the source, the templates it includes (directly or not), the
// NVRTC version, the arch and the compile options. No paths, no shapes unless
// the source holds them; a template the kernel does not include leaves its key
// alone. Throws Error(CompileError) for an include the library lacks.
std::string binary_key(const GeneratedKernel& kernel, const std::string& arch);
// The same over another template library (tests edit one template's text).
std::string binary_key(const GeneratedKernel& kernel, const std::string& arch, const TemplateLibrary& templates);

// Looks the generated kernel's key up in the cache, compiles on a miss and
// stores the result. cache may be null (compile only).
BinaryRecord build_binary(const GeneratedKernel& kernel, const std::string& arch, const std::string& description,
                          BinaryCache* cache, bool* from_cache);

// A family kernel: generate, then build_binary.
BuiltKernel build_kernel(const KernelSpec& spec, const TileConfig& config, BinaryCache* cache);

}  // namespace samoyeds
