#include "core/cuda_driver.hpp"

#include <dlfcn.h>

#include <fmt/format.h>

#include "samoyeds/error.hpp"

namespace samoyeds {

namespace {
struct Loaded {
  DriverApi api;
  std::string error;  // empty when loaded
};

const Loaded& load() {
  static const Loaded loaded = [] {
    Loaded l;
    void* lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      l.error = std::string("no CUDA driver (libcuda.so.1): ") + dlerror();
      return l;
    }
    using GetProc = CUresult (*)(const char*, void**, int, cuuint64_t, CUdriverProcAddressQueryResult*);
    auto get_proc = reinterpret_cast<GetProc>(dlsym(lib, "cuGetProcAddress_v2"));
    if (!get_proc) {
      l.error = "CUDA driver too old: no cuGetProcAddress_v2 (need a CUDA 12+ driver)";
      return l;
    }
#define SAMOYEDS_DRIVER_FN(name)                                                                      \
  {                                                                                                   \
    void* fn = nullptr;                                                                               \
    CUdriverProcAddressQueryResult status;                                                            \
    if (get_proc(#name, &fn, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status) != CUDA_SUCCESS || !fn) { \
      l.error = "CUDA driver lacks " #name;                                                           \
      return l;                                                                                       \
    }                                                                                                 \
    l.api.name = reinterpret_cast<decltype(l.api.name)>(fn);                                         \
  }
#include "core/cuda_driver_functions.inc"
#undef SAMOYEDS_DRIVER_FN
#define SAMOYEDS_DRIVER_FN(name)                                                                     \
  {                                                                                                  \
    void* fn = nullptr;                                                                              \
    CUdriverProcAddressQueryResult status;                                                           \
    if (get_proc(#name, &fn, CUDA_VERSION, CU_GET_PROC_ADDRESS_DEFAULT, &status) == CUDA_SUCCESS)   \
      l.api.name = reinterpret_cast<decltype(l.api.name)>(fn);                                      \
  }
#include "core/cuda_driver_optional_functions.inc"
#undef SAMOYEDS_DRIVER_FN
    const CUresult rc = l.api.cuInit(0);
    if (rc != CUDA_SUCCESS) {
      const char* name = nullptr;
      l.api.cuGetErrorName(rc, &name);
      l.error = fmt::format("cuInit failed: {}", name ? name : "unknown");
    }
    return l;
  }();
  return loaded;
}
}  // namespace

const DriverApi& driver() {
  const Loaded& l = load();
  if (!l.error.empty()) throw Error(ErrorCode::CudaError, l.error);
  return l.api;
}

bool gpu_available(std::string* why_not) {
  const Loaded& l = load();
  if (!l.error.empty()) {
    if (why_not) *why_not = l.error;
    return false;
  }
  int count = 0;
  if (l.api.cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0) {
    if (why_not) *why_not = "CUDA driver present but no device visible";
    return false;
  }
  return true;
}

void check(CUresult rc, const char* what) {
  if (rc == CUDA_SUCCESS) return;
  const char* name = nullptr;
  const char* text = nullptr;
  const Loaded& l = load();
  if (l.error.empty()) {
    l.api.cuGetErrorName(rc, &name);
    l.api.cuGetErrorString(rc, &text);
  }
  throw Error(ErrorCode::CudaError,
              fmt::format("{} failed: {} ({})", what, name ? name : "unknown", text ? text : "no description"));
}

}  // namespace samoyeds
