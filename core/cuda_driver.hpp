// The CUDA Driver API, loaded at run time with dlopen so that the library and
// every CPU-only tool run on machines without a GPU driver. Every call goes
// through check(), which turns failures into Error(CudaError) with the
// driver's error name and what was being done.
#pragma once
#include <cuda.h>

#include <string>

namespace samoyeds {

struct DriverApi {
#define SAMOYEDS_DRIVER_FN(name) decltype(&::name) name = nullptr;
#include "core/cuda_driver_functions.inc"
#include "core/cuda_driver_optional_functions.inc"
#undef SAMOYEDS_DRIVER_FN
};

// Loads libcuda.so.1 once. Throws Error(CudaError) when there is no driver.
const DriverApi& driver();
// gpu_available() is declared in samoyeds/device.hpp.

void check(CUresult rc, const char* what);

}  // namespace samoyeds
