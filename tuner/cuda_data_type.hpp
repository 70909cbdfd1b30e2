// The CUDA library type of an element type, for the cuBLAS and cuSPARSELt
// baselines; a dtype they cannot take is an error, never another type.
#pragma once
#include <library_types.h>

#include "samoyeds/dtype.hpp"
#include "samoyeds/error.hpp"

namespace samoyeds::tuning {

inline cudaDataType cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
  }
  throw Error(ErrorCode::Unsupported, std::string("no CUDA library type for ") + dtype_name(dtype));
}

}  // namespace samoyeds::tuning
