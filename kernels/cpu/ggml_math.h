#pragma once
// Scalar replicas of the float math llama.cpp's x86 CPU backend (AVX2 + FMA) executes, lane
// by lane, so that kvsieve's activations are bit-identical to llama.cpp's. Quantizing
// activations (Q8 before every quantized matmul) makes a network discontinuous: a one-ulp
// difference in a softmax or SiLU flips a later rounding and grows from there, so "close" is
// not enough for the logits to agree (docs/correctness.md). Written with std::fma and no
// contraction (the build is ISO C++, -ffp-contract=off), these give the same bits as the
// vector code on every machine.
#include <cstdint>

namespace kvs::ggml {

// ggml_v_expf: ggml's vectorized exp (adapted from ARM's optimized routines, max error 1.45
// ulp + 0.5), one lane. exp(-inf) = 0.
float v_expf(float x);

// ggml_v_silu lane: x / (1 + v_expf(0 - x)).
float v_silu(float x);

// ggml_vec_geglu_f32 lane (GGML_GELU_FP16): GELU-tanh looked up by the f16 of x in a table
// of f16 values, 0 below -10 and x above 10.
float gelu_f16_table(float x);
// out[i] = gelu(gate[i]) * up[i] with gelu_f16_table (0 for gate <= -10), as
// ggml_vec_geglu_f32; out may alias gate or up.
void geglu_f16_table(const float* gate, const float* up, float* out, int64_t n);

// ggml_vec_dot_f32 (AVX: 4 accumulators of 8 lanes over 32-element steps, FMA, then the
// GGML_F32x8_REDUCE tree), for any n; the tail past a multiple of 32 is added in float.
float vec_dot_f32(const float* x, const float* y, int64_t n);

// llamafile tinyBLAS's f32 dot (one 8-lane FMA accumulator, then hsum), n a multiple of 8:
// what llama.cpp's mul_mat gives for contiguous f32 operands (the attention's P·V).
float tinyblas_dot_f32(const float* x, const float* y, int64_t n);

// The float sum of 8 lanes as ggml's soft_max chunk (and tinyBLAS hsum) adds them:
// (lo4 + hi4), then pairs 0+2 / 1+3, then the two.
float hsum8(const float* v);

}  // namespace kvs::ggml
