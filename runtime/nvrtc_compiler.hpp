// NVRTC: generated source + the embedded templates it includes -> CUBIN, with the compiler's
// resource report (registers, spills) parsed out of its log.
#pragma once
#include <string>
#include <vector>

#include "generator/generated_kernel.hpp"

namespace samoyeds {

struct CompiledBinary {
  std::vector<char> cubin;
  std::string log;          // NVRTC + ptxas output
  double compile_ms = 0.0;
  int registers = -1;       // per thread, from ptxas -v
  int spill_bytes = -1;     // spill stores + loads; 0 is what we want
};

std::string nvrtc_version();  // "13.0"
// Options that go into the binary's cache key, in order.
std::vector<std::string> nvrtc_options(const std::string& arch);

// Throws Error(CompileError) with the log and the source on failure.
CompiledBinary nvrtc_compile(const GeneratedKernel& kernel, const std::string& arch);
// The same with `extra_options` after nvrtc_options(arch): for measuring the
// compile (bench/compile_bench.cpp), never for binaries that enter the cache.
CompiledBinary nvrtc_compile(const GeneratedKernel& kernel, const std::string& arch,
                             const std::vector<std::string>& extra_options);

}  // namespace samoyeds
