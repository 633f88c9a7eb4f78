#pragma once
// Rewrites a GGUF file with its weight matrices in another type (all metadata kept).
// Used to derive F32/F16/Q8_0/Q4_0 variants of a model from the file a user has.
#include <functional>
#include <string>

#include "kernels/core/dtype.h"

namespace kvs {

struct RequantizeOptions {
  // 2-D weight matrices get `type`; 1-D tensors (norms, biases) stay F32.
  DType type = DType::F32;
  std::function<void(size_t done, size_t total)> progress;
};

// Throws kvs::Error for an unreadable input, a type kvsieve cannot quantize to, or a
// matrix whose row length is not a multiple of the type's block size. Written atomically.
void requantize_gguf(const std::string& in_path, const std::string& out_path,
                     const RequantizeOptions& opts);

}  // namespace kvs
