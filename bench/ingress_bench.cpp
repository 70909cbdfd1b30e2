// Delivery probe: the rate at which TMA fills one SM's shared memory with
// nothing else running (templates/ingress_probe.cuh), one block per SM, for
// a few stage shapes and several sources (kSources: how many SMs read the
// same lines, and whether at the same time): the ceiling a projection's
// delivery is compared with (docs/perf-log.md). Reports bytes per SM cycle
// (clock64 on each SM, first copy to last stage landed) and the total rate
// (CUDA-event median), both from the same launches.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <vector>

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include "bench/ingress_probe_kernel.hpp"
#include "core/cuda_driver.hpp"
#include "runtime/kernel_builder.hpp"
#include "core/kernel_launch.hpp"
#include "backends/wgmma_sp/tma_weight_maps.hpp"
#include "samoyeds/device.hpp"
#include "samoyeds/error.hpp"
#include "templates/kernel_args.cuh"
#include "tuner/timing.hpp"

using namespace samoyeds;

namespace {

// Where each SM reads: `group` consecutive SMs share a region of
// `region_rows` 128-byte rows, read round and round; SM i of a group starts
// i * skew_rows into it (0: the group requests the same lines at about the
// same time).
struct Source {
  const char* name;
  int region_rows, group, skew_rows;
  bool interleaved = false;  // a group is every (grid / group)-th block, not consecutive ones
  // 128-byte columns per row (IngressProbeArgs::cols): 32 reads each region
  // as rows of 4 KB, a band of box rows at a time, as a block reads its
  // weight rows (Mixtral-8x7B's up projection: 4 KB of values a row).
  int cols = 1;
};
const Source kSources[] = {
    {"own-192K", 1536, 1, 0},     // 25 MB over 132 SMs, within the 60 MB L2
    {"own-16K", 128, 1, 0},       // 2 MB
    {"own-2M", 16384, 1, 0},      // 264 MB: DRAM
    {"own-2M-4K-rows", 16384, 1, 0, false, 32},  // the same bytes, read as weight rows
    {"pairs-192K", 1536, 2, 0},
    {"pairs-apart", 1536, 2, 0, true},  // blocks i and i + 66
    {"fours-192K", 1536, 4, 0},
    {"eights-192K", 1536, 8, 0},
    {"33s-192K", 1536, 33, 0},
    {"all-192K", 1536, 1 << 20, 0},
    {"all-skewed", 1536, 1 << 20, 256},  // the same 192 KB, each SM 32 KB after the previous
    {"all-24M", 196608, 1 << 20, 0},   // one 24 MB region, every SM in step
    {"all-24M-skewed", 196608, 1 << 20, 1536},  // the same, each SM 192 KB after the previous
    {"fours-768K", 6144, 4, 0},        // 25 MB, a region per 4 SMs
    {"fours-skewed", 6144, 4, 1536},   // the same, each SM of a group 192 KB after the previous
};

}  // namespace

int main(int argc, char** argv) try {
  CLI::App app("TMA delivery into each SM's shared memory, bytes per SM cycle.", "ingress_bench");
  std::string csv_path = "ingress_bench.csv";
  // What each SM receives per launch (at most 4 GB: the stage count is an int).
  int64_t mb_per_sm = 64;
  int blocks = 0;
  app.add_option("--csv", csv_path, "results file")->capture_default_str();
  app.add_option("--mb-per-sm", mb_per_sm, "MB each SM receives per launch")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--blocks", blocks, "run on N SMs only (default all), to tell a per-SM limit from the whole chip's")
      ->check(CLI::Range(2, 1 << 20));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // help on stdout, errors on stderr
  }
  std::string why;
  if (!gpu_available(&why)) {
    std::fprintf(stderr, "ingress_bench needs a GPU: %s\n", why.c_str());
    return 1;
  }
  Device& dev = Device::get();
  if (dev.info().cc_major < 9) {
    std::fprintf(stderr, "ingress_bench needs TMA (sm_90 or later); device is %s\n", dev.info().arch().c_str());
    return 1;
  }
  const DriverApi& d = driver();
  const int sms = dev.info().sm_count;
  if (blocks > sms) throw Error(ErrorCode::InvalidArgument, fmt::format("--blocks: 2 to {} (the SM count)", sms));
  const int used_sms = blocks > 0 ? blocks : sms;
  CUstream stream;
  check(d.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  // The map: every group's region, back to back.
  auto map_rows = [sms](const Source& src) { return int64_t(src.region_rows) * ((sms + src.group - 1) / src.group); };
  int64_t max_rows = 0;
  for (const Source& src : kSources) max_rows = std::max(max_rows, map_rows(src));
  DeviceBuffer buf(size_t(max_rows) * 128), cycles(size_t(sms) * 8), smids(size_t(sms) * 4);
  buf.fill_bytes(1);
  fmt::print("device {} ({} SMs), one block per SM on {} of them, {} MB into each SM per launch\n",
             dev.info().name, sms, used_sms, mb_per_sm);
  std::ofstream csv(csv_path);
  csv << "stages,boxes,box_rows,multicast,stage_kb,source,bytes_per_sm_cycle_mean,bytes_per_sm_cycle_min,"
         "bytes_per_sm_cycle_max,total_tb_s,sm_clock_ghz,ms\n";
  fmt::print("{:<52} {:<15} {:>13} {:>9} {:>9}\n", "stages", "source", "B/clk/SM mean", "(min)", "TB/s");
  for (const IngressStageShape& s : kIngressStageShapes) {
    const GeneratedKernel g = ingress_probe_kernel(s);
    bool from_cache = false;
    const BinaryRecord bin = build_binary(g, dev.info().arch(), "ingress probe", nullptr, &from_cache);
    dev.make_current();
    CUmodule module;
    check(d.cuModuleLoadData(&module, bin.blob.data()), "cuModuleLoadData(ingress probe)");
    CUfunction fn;
    check(d.cuModuleGetFunction(&fn, module, g.kernel_name.c_str()), "cuModuleGetFunction");
    check(d.cuFuncSetAttribute(fn, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, g.smem_bytes),
          "cuFuncSetAttribute");
    for (const Source& src : kSources) {
      const int region_rows = src.region_rows / src.cols;  // rows of the map, each cols x 128 bytes
      if (region_rows < s.box_rows || region_rows % s.box_rows || src.skew_rows % s.box_rows) continue;
      // A pair multicasts the same rows: only consecutive pairs, in step.
      if (s.multicast > 1 && (src.group != s.multicast || src.interleaved || src.skew_rows)) continue;
      const TensorMap map = encode_token_map(buf.data(), map_rows(src) / src.cols, 64 * src.cols, s.box_rows);
      IngressProbeArgs a{reinterpret_cast<long long*>(cycles.data()), static_cast<int*>(smids.data()),
                         int(std::max<int64_t>(1, (mb_per_sm << 20) / s.bytes())), region_rows,
                         std::min(src.group, used_sms), src.interleaved ? 1 : 0, src.skew_rows, src.cols};
      void* params[] = {&a, const_cast<TensorMap*>(&map)};
      // Whole clusters; with an odd SM count a pair's worth of SMs idles.
      const int blocks = used_sms / s.multicast * s.multicast;
      const LaunchShape shape{unsigned(blocks), 1, 1, unsigned(g.threads), unsigned(g.smem_bytes)};
      const double ms = tuning::median_ms(stream, [&](int) {
        check(launch_kernel(dev, fn, shape, stream, params), "launch ingress probe");
      }, 3);
      check(d.cuStreamSynchronize(stream), "cuStreamSynchronize");
      std::vector<long long> c(static_cast<size_t>(blocks));
      cycles.download(c.data(), c.size() * 8);
      const double per_sm = double(a.stages_total) * s.bytes();
      double sum = 0, lo = 1e30, hi = 0;
      for (long long v : c) {
        const double r = per_sm / double(v);
        sum += r;
        lo = std::min(lo, r);
        hi = std::max(hi, r);
      }
      const double mean = sum / blocks;
      const double tbs = per_sm * blocks / (ms * 1e-3) / 1e12;
      long long max_cycles = *std::max_element(c.begin(), c.end());
      const double ghz = double(max_cycles) / (ms * 1e-3) / 1e9;  // the slowest SM spans about the launch
      fmt::print("{:<52} {:<15} {:>13.1f} {:>9.1f} {:>9.2f}\n", s.like, src.name, mean, lo, tbs);
      csv << fmt::format("{},{},{},{},{},{},{:.2f},{:.2f},{:.2f},{:.3f},{:.3f},{:.4f}\n", s.stages, s.boxes,
                         s.box_rows, s.multicast, s.bytes() / 1024, src.name, mean, lo, hi, tbs, ghz, ms);
    }
    check(d.cuModuleUnload(module), "cuModuleUnload");
  }
  // Where the blocks ran (the last launch): which blocks were neighbours.
  std::vector<int> ids(static_cast<size_t>(sms));
  smids.download(ids.data(), ids.size() * 4);
  std::string where;
  for (int b = 0; b < std::min(used_sms, 24); ++b) where += fmt::format(" {}", ids[size_t(b)]);
  fmt::print("SM of blocks 0..23:{}\n", where);
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "ingress_bench: %s\n", e.what());
  return 1;
}
