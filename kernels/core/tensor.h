#pragma once
// Tensor: a typed, shaped view of contiguous memory; it never owns what it points to.
// ne[0] is the contiguous (fastest) dimension, as in ggml/GGUF: a weight matrix with
// `rows` outputs of `cols` inputs has ne = {cols, rows}.
#include <array>
#include <cstddef>
#include <cstdint>

#include "kernels/core/dtype.h"

namespace kvs {

struct Tensor {
  const void* data = nullptr;
  DType dtype = DType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};
  int n_dims = 1;

  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t rows() const { return ne[1] * ne[2] * ne[3]; }
  int64_t cols() const { return ne[0]; }
  size_t row_nbytes() const { return row_bytes(dtype, ne[0]); }
  size_t nbytes() const { return row_nbytes() * static_cast<size_t>(rows()); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + row_nbytes() * r;
  }
  const float* f32() const { return static_cast<const float*>(data); }
};

}  // namespace kvs
