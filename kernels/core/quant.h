#pragma once
// ggml block formats: reference (scalar) dequantization and quantization.
// These scalar routines are the reference twins that every optimized kernel is tested against.
#include <cstdint>

#include "kernels/core/dtype.h"

namespace kvs {

// Dequantizes n elements (a multiple of the type's block size) of type t from src into dst.
// Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);

// Quantizes n floats into type t (round-to-nearest reference quantizers, same math as
// ggml's quantize_row_*_ref). Supports F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_K;
// throws kvs::Error for a type it cannot produce.
void quantize_row(DType t, const float* src, void* dst, int64_t n);

}  // namespace kvs
