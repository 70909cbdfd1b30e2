#include "runtime/nvrtc_compiler.hpp"

#include <chrono>
#include <regex>

#include <fmt/format.h>
#include <nvrtc.h>

#include "generator/template_library.hpp"
#include "samoyeds/environment.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/kernel_spec.hpp"

namespace samoyeds {

std::string nvrtc_version() {
  int major = 0, minor = 0;
  if (nvrtcVersion(&major, &minor) != NVRTC_SUCCESS) return "unknown";
  return fmt::format("{}.{}", major, minor);
}

std::vector<std::string> nvrtc_options(const std::string& arch) {
  arch_number(arch);  // validates
  // -minimal: no texture, device-runtime or driver-type declarations, which
  // the templates never use: a smaller built-in header to parse.
  std::vector<std::string> options = {"--gpu-architecture=" + arch, "--std=c++17", "-minimal", "--ptxas-options=-v"};
  // Line tables only for profiling: the SASS is the same without them, and
  // they cost ~2% of a compile (docs/perf-log.md, 2026-12-07).
  if (kernel_line_info()) options.push_back("-lineinfo");
  return options;
}

namespace {
void parse_resources(const std::string& log, CompiledBinary& out) {
  std::smatch m;
  if (std::regex_search(log, m, std::regex(R"(Used (\d+) registers)"))) out.registers = std::stoi(m[1]);
  if (std::regex_search(log, m, std::regex(R"((\d+) bytes spill stores, (\d+) bytes spill loads)")))
    out.spill_bytes = std::stoi(m[1]) + std::stoi(m[2]);
}
}  // namespace

CompiledBinary nvrtc_compile(const GeneratedKernel& kernel, const std::string& arch) {
  return nvrtc_compile(kernel, arch, {});
}

CompiledBinary nvrtc_compile(const GeneratedKernel& kernel, const std::string& arch,
                             const std::vector<std::string>& extra_options) {
  const auto start = std::chrono::steady_clock::now();
  // Only the templates the source reaches: what its binary key hashes.
  const TemplateLibrary& library = TemplateLibrary::embedded();
  const std::vector<std::string> included = library.included_by(kernel.source);
  std::vector<const char*> texts, names;
  for (const auto& name : included) {
    texts.push_back(library.texts().at(name).c_str());
    names.push_back(name.c_str());
  }
  nvrtcProgram prog;
  nvrtcResult rc = nvrtcCreateProgram(&prog, kernel.source.c_str(), "samoyeds_kernel.cu", int(texts.size()),
                                      texts.data(), names.data());
  if (rc != NVRTC_SUCCESS)
    throw Error(ErrorCode::CompileError, std::string("nvrtcCreateProgram: ") + nvrtcGetErrorString(rc));
  struct Guard {
    nvrtcProgram* p;
    ~Guard() { nvrtcDestroyProgram(p); }
  } guard{&prog};

  auto opts = nvrtc_options(arch);
  opts.insert(opts.end(), extra_options.begin(), extra_options.end());
  std::vector<const char*> copts;
  for (const auto& o : opts) copts.push_back(o.c_str());
  rc = nvrtcCompileProgram(prog, int(copts.size()), copts.data());

  CompiledBinary out;
  size_t log_size = 0;
  nvrtcGetProgramLogSize(prog, &log_size);
  out.log.resize(log_size);
  if (log_size) nvrtcGetProgramLog(prog, out.log.data());
  while (!out.log.empty() && (out.log.back() == '\0' || out.log.back() == '\n')) out.log.pop_back();
  if (rc != NVRTC_SUCCESS)
    throw Error(ErrorCode::CompileError,
                fmt::format("NVRTC failed for {} ({}):\n{}\n--- generated source ---\n{}", arch,
                            nvrtcGetErrorString(rc), out.log.substr(0, 8000), kernel.source));
  size_t cubin_size = 0;
  if (nvrtcGetCUBINSize(prog, &cubin_size) != NVRTC_SUCCESS || cubin_size == 0)
    throw Error(ErrorCode::CompileError, "NVRTC produced no CUBIN for " + arch);
  out.cubin.resize(cubin_size);
  nvrtcGetCUBIN(prog, out.cubin.data());
  parse_resources(out.log, out);
  out.compile_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return out;
}

}  // namespace samoyeds
