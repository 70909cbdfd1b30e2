// First-call compile time of single kernels: a model's default kernels (what
// `samoyeds compile` builds), each compiled by NVRTC with the binary cache
// and NVRTC's own cache bypassed, a few times, one compile at a time. Per
// kernel: median wall and CPU time and NVRTC's own phase split (front end,
// NVVM optimizer, ptxas), from its --time report. Needs no GPU; timing never
// decides pass/fail (the test suite checks only that kernels compile).
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "backends/backend.hpp"
#include "runtime/nvrtc_compiler.hpp"
#include "samoyeds/error.hpp"
#include "samoyeds/model_preset.hpp"
#include "tuner/model_kernels.hpp"

using namespace samoyeds;

namespace {

// "a,b,c" -> {"a", "b", "c"} (NVRTC's --time CSV rows; --extra-options).
std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(item);
  return out;
}

// NVRTC's compile phases as its --time report names them.
struct Phases {
  double front_ms = 0, nvvm_ms = 0, ptxas_ms = 0;
};

Phases read_phases(const std::string& csv_path) {
  Phases p;
  std::ifstream in(csv_path);
  std::string line;
  std::getline(in, line);  // headings
  while (std::getline(in, line)) {
    std::vector<std::string> cells = split_commas(line);
    if (cells.size() < 3) continue;
    const double ms = std::stod(cells[2]);
    if (cells[1].find("Frontend") != std::string::npos) p.front_ms += ms;
    else if (cells[1].find("NVVM") != std::string::npos) p.nvvm_ms += ms;
    else if (cells[1].find("PTX") != std::string::npos) p.ptxas_ms += ms;
  }
  return p;
}

double process_cpu_ms() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Compile {
  double wall_ms, cpu_ms;
  Phases phases;
  CompiledBinary binary;
};

Compile timed_compile(const GeneratedKernel& g, const std::string& arch, const std::vector<std::string>& extra,
                      const std::string& time_csv) {
  std::filesystem::remove(time_csv);
  std::vector<std::string> options = extra;
  options.push_back("--time=" + time_csv);
  options.push_back("--no-cache");  // the driver's cache, where a driver exists
  const double cpu0 = process_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  Compile c{0, 0, {}, nvrtc_compile(g, arch, options)};
  c.wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  c.cpu_ms = process_cpu_ms() - cpu0;
  c.phases = read_phases(time_csv);
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    CLI::App app("First-call compile time of a model's default kernels (NVRTC, no cache), by phase.",
                 "samoyeds_compile_bench");
    std::string model_arg = "mixtral-8x7b", arch = "sm_90a", dtype_arg = "bf16", rows = "1:2", extra_arg;
    int segment = 128, repeat = 3;
    app.add_option("--model", model_arg, "a preset name, a preset .yaml or a Hugging Face config.json")->capture_default_str();
    app.add_option("--arch", arch, "sm_80, sm_86, sm_89, sm_90 or sm_90a")->capture_default_str();
    app.add_option("--dtype", dtype_arg, "f16, bf16 or all")->capture_default_str();
    app.add_option("--rows", rows, "row pattern N:M")->capture_default_str();
    app.add_option("--segment", segment, "segment length V")->check(CLI::IsMember({32, 64, 128, 256}))->capture_default_str();
    app.add_option("--repeat", repeat, "compiles per kernel")->check(CLI::Range(1, 1000))->capture_default_str();
    app.add_option("--extra-options", extra_arg,
                   "NVRTC options appended to the library's, comma-separated, to try a lever (the binaries are not "
                   "the ones the library builds)");
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e) == 0 ? 0 : 2;  // help on stdout, usage errors on stderr
    }
    const ModelPreset model = load_model(model_arg);
    const SparsityParams sp = SparsityParams::from_rows(rows, segment);
    const std::vector<DType> dtypes = dtype_arg == "all" ? all_dtypes() : std::vector<DType>{parse_dtype(dtype_arg)};
    std::vector<std::string> extra;
    if (!extra_arg.empty()) extra = split_commas(extra_arg);
    const std::string time_csv =
        (std::filesystem::temp_directory_path() / fmt::format("samoyeds_compile_bench_{}.csv", getpid())).string();

    const std::vector<KernelJob> jobs = model_kernel_jobs(model, arch, dtypes, sp, false);
    std::string options;
    for (const auto& o : nvrtc_options(arch)) options += o + " ";
    for (const auto& o : extra) options += o + " ";
    fmt::print("samoyeds_compile_bench: {} ({}), {} default kernels for {}, {} compiles each, NVRTC {}, no cache\n",
               model.display_name, model.name, jobs.size(), arch, repeat, nvrtc_version());
    fmt::print("options: {}(+ --time, --no-cache)\n", options);
    fmt::print("{:<42} {:<38} {:>7} {:>7} {:>6} {:>6} {:>6} {:>5} {:>6} {:>9}\n", "kernel (medians, ms)", "config",
               "wall", "cpu", "front", "nvvm", "ptxas", "regs", "spills", "cubin KB");

    std::vector<double> wall_medians, cpu_medians, front, nvvm, ptxas;
    double first_wall_ms = -1;
    for (const KernelJob& job : jobs) {
      const GeneratedKernel g = kernel_family(job.spec.backend).generate(job.spec, job.config);
      std::vector<double> wall, cpu, fr, nv, px;
      CompiledBinary last;
      for (int r = 0; r < repeat; ++r) {
        Compile c = timed_compile(g, arch, extra, time_csv);
        if (first_wall_ms < 0) first_wall_ms = c.wall_ms;
        wall.push_back(c.wall_ms);
        cpu.push_back(c.cpu_ms);
        fr.push_back(c.phases.front_ms);
        nv.push_back(c.phases.nvvm_ms);
        px.push_back(c.phases.ptxas_ms);
        last = std::move(c.binary);
      }
      const std::string name = fmt::format("{}{} {} {} {}x{}", job.spec.grouped ? "grouped " : "",
                                           op_name(job.spec.op), backend_name(job.spec.backend),
                                           dtype_name(job.spec.dtype), job.spec.m, job.spec.k);
      fmt::print("{:<42} {:<38} {:>7.0f} {:>7.0f} {:>6.0f} {:>6.0f} {:>6.0f} {:>5} {:>6} {:>9.0f}\n", name,
                 job.config.to_string(), median(wall), median(cpu), median(fr), median(nv), median(px),
                 last.registers, last.spill_bytes, last.cubin.size() / 1024.0);
      std::fflush(stdout);
      wall_medians.push_back(median(wall));
      cpu_medians.push_back(median(cpu));
      front.push_back(median(fr));
      nvvm.push_back(median(nv));
      ptxas.push_back(median(px));
    }
    std::filesystem::remove(time_csv);
    if (jobs.empty()) return 0;
    fmt::print(
        "summary: {} kernels; per kernel wall median {:.0f} ms, max {:.0f} ms; cpu median {:.0f} ms, max {:.0f} ms; "
        "phases (median) front {:.0f}, nvvm {:.0f}, ptxas {:.0f} ms; the process's first compile {:.0f} ms\n",
        jobs.size(), median(wall_medians), *std::max_element(wall_medians.begin(), wall_medians.end()),
        median(cpu_medians), *std::max_element(cpu_medians.begin(), cpu_medians.end()), median(front), median(nvvm),
        median(ptxas), first_wall_ms);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "samoyeds_compile_bench: %s\n", e.what());
    return 1;
  }
}
