#include "samoyeds/error.hpp"

namespace samoyeds {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidArgument: return "invalid argument";
    case ErrorCode::PatternViolation: return "sparsity pattern violation";
    case ErrorCode::NonFiniteInput: return "non-finite input";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::CompileError: return "compile error";
    case ErrorCode::CudaError: return "CUDA error";
    case ErrorCode::CacheError: return "cache error";
    case ErrorCode::IoError: return "I/O error";
  }
  return "unknown error";
}

Error::Error(ErrorCode code, const std::string& message)
    : std::runtime_error(std::string("samoyeds: ") + error_code_name(code) + ": " + message),
      code_(code) {}

}  // namespace samoyeds
