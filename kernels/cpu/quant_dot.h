#pragma once
// Integer dot products between a weight row kept in its ggml block format and an activation
// row quantized on the fly to the weight type's "vec_dot_type", with the numerics of ggml's
// CPU backend (so greedy outputs track llama.cpp):
//   Q4_0, Q5_0, Q8_0 -> Q8_0      Q4_1, Q5_1 -> Q8_1      Q2_K .. Q6_K -> Q8_K
//   F32 -> F32                    F16 -> F16              BF16 -> BF16
// namespace ref holds the scalar twins, written to follow ggml's generic (non-SIMD) code; the
// optimized versions (AVX2, with AVX-VNNI where the build enables it) compute the same exact
// int32 block sums and differ only in the float summation order of the per-block partials.
#include <cstddef>
#include <cstdint>

#include "kernels/core/dtype.h"
#include "kernels/core/quant_blocks.h"

namespace kvs {

// Activation-side block for Q4_1/Q5_1 weights; quant_blocks.h has no Q8_1 because no weight
// file stores it.
struct BlockQ8_1 {
  uint16_t d;  // fp16 scale
  uint16_t s;  // fp16 of d * sum(qs): lets the weight's min term skip the per-element work
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36 && offsetof(BlockQ8_1, qs) == 4);

// True for the weight types vec_dot handles (the dtype_is_weight_type set).
bool quant_dot_supported(DType weight_type);

// The activation format a weight type is dotted with. KVS_CHECKs on unsupported types.
DType vec_dot_type(DType weight_type);

// Bytes of one quantized activation row of n elements (n a multiple of the block size).
size_t activation_row_bytes(DType weight_type, int64_t n);

// Quantizes one activation row x[n] into dst (activation_row_bytes(weight_type, n) bytes)
// exactly as ggml's reference quantizers do (quantize_row_q8_0_ref / q8_1_ref / q8_K_ref;
// f16 and bf16 round to nearest even).
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);

// Dot product of one weight row (n elements in weight_type) with one activation row produced
// by quantize_activation(weight_type, ..., n). Rows are read as block structs, so they must be
// aligned like them: 2 bytes (GGUF's 32-byte tensor alignment gives that), 4 for Q8_K rows.
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);

namespace ref {
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);
}  // namespace ref

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define KVS_QUANT_DOT_AVX2 1
// The AVX2 kernels (quant_dot_avx2.cpp), exposed so tests can name them; vec_dot dispatches.
namespace avx2 {
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);
}  // namespace avx2
#endif

}  // namespace kvs
