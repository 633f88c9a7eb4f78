#pragma once
// CPU ops on f32 activations. Weights may be in any weight dtype (read block by block).
// Each op has a scalar reference (namespace ref) that optimized versions are tested against.
#include <cstdint>

#include "kernels/core/tensor.h"
#include "kernels/core/thread_pool.h"

namespace kvs::ops {

// y[t, n] = sum_k x[t, k] * W[n, k] (+ bias[n]).
// x: [T, K] f32 row-major; W: ne = {K, N} in any weight dtype; bias: [N] f32 or null;
// y: [T, N] f32.
void matmul(const float* x, int64_t T, const Tensor& W, const float* bias, float* y,
            ThreadPool& pool);

// Rows of an embedding matrix, dequantized: out[i, :] = E[ids[i], :]. E: ne = {D, V}.
void get_rows(const Tensor& E, const int32_t* ids, int64_t n, float* out /*[n, D]*/);

// y = x / rms(x) * w over rows of length n (x and y may alias). w null means 1.
void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps);

struct RopeParams {
  int n_rot = 0;  // rotated dimensions (the rest pass through)
  float base = 10000.0f;
  float freq_scale = 1.0f;              // 1/linear scaling factor
  bool neox = false;                    // rotate (i, i + n_rot/2) pairs instead of (2i, 2i+1)
  const float* freq_factors = nullptr;  // [n_rot/2] divisors (llama3 rope_freqs) or null
};

// Rotates x: [T, n_heads, head_dim] in place, token t at position pos[t].
void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos, const RopeParams& p);

void silu_mul(const float* gate, const float* up, float* out, int64_t n);       // silu(g) * u
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n);  // gelu(g) * u
void add_inplace(float* x, const float* y, int64_t n);
void scale_inplace(float* x, float s, int64_t n);
void softmax_inplace(float* x, int64_t n);
float dot_f32(const float* a, const float* b, int64_t n);

namespace ref {
// Exact float math on dequantized weights (what the model means).
void matmul(const float* x, int64_t T, const Tensor& W, const float* bias, float* y);
// The same arithmetic as ops::matmul (activations quantized to the weight's dot format),
// scalar and single-threaded: the twin the optimized matmul is tested against.
void matmul_quantized(const float* x, int64_t T, const Tensor& W, const float* bias, float* y);
float dot_f32(const float* a, const float* b, int64_t n);
}  // namespace ref

}  // namespace kvs::ops
