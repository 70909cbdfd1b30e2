// One error type for the whole library: a category the C ABI can map to a code,
// plus a message that carries the context (spec, config, compiler log, CUDA error).
#pragma once
#include <stdexcept>
#include <string>

namespace samoyeds {

enum class ErrorCode {
  InvalidArgument = 1,   // bad shape, dtype, parameter, pointer
  PatternViolation = 2,  // strict packing found weights outside the sparsity pattern
  NonFiniteInput = 3,    // NaN or Inf in weights
  Unsupported = 4,       // valid request a backend or config cannot serve
  CompileError = 5,      // NVRTC rejected generated source
  CudaError = 6,         // a Driver API call failed
  CacheError = 7,        // SQLite store failed or holds something unusable
  IoError = 8,           // files: config, export, etc.
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message);
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace samoyeds
