#include "kernels/cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "kernels/cpu/ggml_math.h"
#include "kernels/cpu/quant_dot.h"

namespace kvs::ops {

float ref::dot_f32(const float* a, const float* b, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * b[i];
  return static_cast<float>(s);
}

float dot_f32(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
  float s = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8)
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  const __m256 acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 h2 = _mm_add_ps(h, _mm_movehl_ps(h, h));
  s = _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 1)));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void ref::matmul(const float* x, int64_t T, const Tensor& W, const float* bias, float* y) {
  const int64_t K = W.ne[0], N = W.rows();
  std::vector<float> row(static_cast<size_t>(K));  // [K] one dequantized weight row
  for (int64_t n = 0; n < N; ++n) {
    dequantize_row(W.dtype, W.row(n), row.data(), K);
    for (int64_t t = 0; t < T; ++t)
      y[t * N + n] = ref::dot_f32(x + t * K, row.data(), K) + (bias != nullptr ? bias[n] : 0.0f);
  }
}

void ref::matmul_quantized(const float* x, int64_t T, const Tensor& W, const float* bias,
                           float* y) {
  const int64_t K = W.ne[0], N = W.rows();
  if (W.dtype == DType::F32) {
    ref::matmul(x, T, W, bias, y);
    return;
  }
  const size_t act_bytes = activation_row_bytes(W.dtype, K);
  std::vector<uint8_t> act(act_bytes * T);  // [T][act_bytes]
  for (int64_t t = 0; t < T; ++t)
    kvs::ref::quantize_activation(W.dtype, x + t * K, act.data() + t * act_bytes, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t t = 0; t < T; ++t)
      y[t * N + n] = kvs::ref::vec_dot(W.dtype, K, W.row(n), act.data() + t * act_bytes,
                                       dot_kernel(W.dtype, N, T, t)) +
                     (bias != nullptr ? bias[n] : 0.0f);
}

void matmul(const float* x, int64_t T, const Tensor& W, const float* bias, float* y,
            ThreadPool& pool) {
  const int64_t K = W.ne[0], N = W.rows();
  if (W.dtype == DType::F32) {
    pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
      for (int64_t n = n0; n < n1; ++n) {
        const float* w = reinterpret_cast<const float*>(W.row(n));
        const float b = bias != nullptr ? bias[n] : 0.0f;
        for (int64_t t = 0; t < T; ++t) y[t * N + n] = dot_f32(x + t * K, w, K) + b;
      }
    });
    return;
  }
  KVS_CHECK(quant_dot_supported(W.dtype), "no dot product for " + std::string(dtype_name(W.dtype)));
  // Activations are quantized once per call to the weight type's dot format (as llama.cpp
  // does), then every weight row is dotted with every token's row in integer arithmetic.
  const size_t act_bytes = activation_row_bytes(W.dtype, K);
  const DType wt = W.dtype;
  // Tokens go 16, 8 or 4 per call where they share a kernel (llama.cpp's choice varies
  // only at a batch's last T % 4 tokens), so a weight block is unpacked once for them all;
  // the rest (a decode step's single token) run over each thread's rows in one call.
  struct Group {
    int64_t t, size;
    DotKernel kernel;
  };
  std::vector<Group> groups;
  // Groups of 16, then 8, then 4 tokens; t_end[s] = where the groups of size 16 >> s end.
  int64_t t_rest = 0, t_end[3] = {0, 0, 0};
  for (int s = 0; s < 3; ++s) {
    const int64_t size = int64_t{16} >> s;
    for (; t_rest + size <= T; t_rest += size) {
      const DotKernel k = dot_kernel(wt, N, T, t_rest);
      if (k != dot_kernel(wt, N, T, t_rest + size - 1)) break;
      groups.push_back({t_rest, size, k});
    }
    t_end[s] = t_rest;
  }
  // Only the token groups read f32 scales and interleaved quants; a decode step skips them.
  // The workers see their own thread_local vectors: they get this thread's pointers.
  thread_local std::vector<uint8_t> act;  // [T][act_bytes] quantized activation rows
  // The groups' scales and quants are group-major (group g's at g.t * K / 32 and g.t * K, in
  // ActBatch's layout with ld = g.size): a block-major layout over all T tokens puts a
  // group's consecutive blocks T * 32 bytes apart, a multiple of 4 KiB that maps every block
  // of a row onto one L1 set.
  thread_local std::vector<float> act_d;    // [groups][K / 32][size] f32 block scales (Q8_0/Q8_1)
  thread_local std::vector<float> act_s;    // [groups][K / 32][size] f32 block sums (Q8_1)
  thread_local std::vector<uint8_t> act_q;  // [groups][K / 32][size][32] quants
  act.resize(act_bytes * T);
  const DType at = vec_dot_type(wt);
  const bool scales = !groups.empty() && (at == DType::Q8_0 || at == DType::Q8_1);
  const bool interleaved = !groups.empty() && interleaved_quants_used(wt);
  act_d.resize(scales ? static_cast<size_t>(K / 32 * T) : 0);
  act_s.resize(scales && at == DType::Q8_1 ? act_d.size() : 0);
  act_q.resize(interleaved ? static_cast<size_t>(K * T + 63) : 0);
  uint8_t* act_data = act.data();
  float* act_d_data = scales ? act_d.data() : nullptr;
  float* act_s_data = act_s.empty() ? nullptr : act_s.data();
  // 64-byte aligned: the paired kernels load one cache line per block and token pair.
  uint8_t* act_q_data =
      interleaved ? act_q.data() + (-reinterpret_cast<uintptr_t>(act_q.data()) & 63) : nullptr;
  pool.parallel_for(T, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      uint8_t* row = act_data + t * act_bytes;
      quantize_activation(wt, x + t * K, row, K);
      if (t >= t_rest) continue;
      const int s = t < t_end[0] ? 0 : t < t_end[1] ? 1 : 2;  // t's group size 16 >> s
      const int64_t size = int64_t{16} >> s, start = s == 0 ? 0 : t_end[s - 1];
      const int64_t g0 = start + (t - start) / size * size;
      if (scales)
        activation_row_scales(wt, row, K, t - g0, size, act_d_data + g0 * (K / 32),
                              act_s_data != nullptr ? act_s_data + g0 * (K / 32) : nullptr);
      if (interleaved) interleave_activation_row(wt, row, K, t - g0, size, act_q_data + g0 * K);
    }
  });
  const size_t w_stride = W.row_nbytes();
  // Rows go in tiles of kRowTile per token group, so that a group's activations (16 x K
  // quants, 9-32 KiB) are read from L1 or L2 by every row of the tile instead of being
  // streamed from L2 once per row (K x T bytes per row: 295 KiB for SmolLM2's pp512).
  // 8, 16 and 32 rows measured: 32 best by a few percent (docs/benchmarks.md).
  constexpr int64_t kRowTile = 32;
  pool.parallel_for(N, [&](int64_t n0, int64_t n1) {
    for (int64_t r0 = n0; r0 < n1 && !groups.empty(); r0 += kRowTile) {
      const int64_t r1 = std::min(r0 + kRowTile, n1);
      for (const Group& g : groups) {
        ActBatch a;
        a.rows = act_data + g.t * act_bytes;
        a.stride = act_bytes;
        a.d = act_d_data != nullptr ? act_d_data + g.t * (K / 32) : nullptr;
        a.s = act_s_data != nullptr ? act_s_data + g.t * (K / 32) : nullptr;
        a.ld = g.size;
        a.q = act_q_data != nullptr ? act_q_data + g.t * K : nullptr;
        for (int64_t n = r0; n < r1; ++n) {
          const uint8_t* w = W.row(n);
          const float b = bias != nullptr ? bias[n] : 0.0f;
          float out[16];
          if (g.size == 16)
            vec_dot_x16(wt, K, w, a, g.kernel, out);
          else if (g.size == 8)
            vec_dot_x8(wt, K, w, a, g.kernel, out);
          else
            vec_dot_x4(wt, K, w, a, g.kernel, out);
          for (int64_t j = 0; j < g.size; ++j) y[(g.t + j) * N + n] = out[j] + b;
        }
      }
    }
    for (int64_t t = t_rest; t < T; ++t) {
      float* yt = y + t * N;  // [N] outputs of token t
      vec_dot_rows(wt, K, W.row(n0), w_stride, n1 - n0, act_data + t * act_bytes,
                   dot_kernel(wt, N, T, t), yt + n0);
      if (bias != nullptr)
        for (int64_t n = n0; n < n1; ++n) yt[n] += bias[n];
    }
  });
}

void get_rows(const Tensor& E, const int32_t* ids, int64_t n, float* out) {
  const int64_t D = E.ne[0], V = E.rows();
  for (int64_t i = 0; i < n; ++i) {
    KVS_CHECK(ids[i] >= 0 && ids[i] < V, "token id out of range");
    dequantize_row(E.dtype, E.row(ids[i]), out + i * D, D);
  }
}

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double ss = 0.0;
    // Square in float, sum in double: ggml's order, so results match llama.cpp bit for bit.
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(xr[i] * xr[i]);
    const float scale = 1.0f / std::sqrt(static_cast<float>(ss / n) + eps);
    for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] * scale * (w != nullptr ? w[i] : 1.0f);
  }
}

void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos, const RopeParams& p) {
  const int half = p.n_rot / 2;
  // ggml's order (ggml_rope_cache_init): the angle of pair i is pos * theta_scale^i built by
  // repeated float multiplication, divided by the frequency factor, then scaled; the rotation
  // is fma(a, c, -b*s), fma(a, s, b*c), as llama.cpp's x86 build computes it. Bit-identical
  // angles matter once activations are quantized (kernels/cpu/ggml_math.h).
  const float theta_scale = std::pow(p.base, -2.0f / static_cast<float>(p.n_rot));
  std::vector<float> cs(static_cast<size_t>(p.n_rot));  // [n_rot/2][cos, sin] of one position
  for (int64_t t = 0; t < T; ++t) {
    float theta = static_cast<float>(pos[t]);
    for (int i = 0; i < half; ++i) {
      const float ff = p.freq_factors != nullptr ? p.freq_factors[i] : 1.0f;
      const float th = p.freq_scale * (theta / ff);
      cs[2 * i] = std::cos(th);
      cs[2 * i + 1] = std::sin(th);
      theta *= theta_scale;
    }
    for (int h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int i = 0; i < half; ++i) {
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const int i0 = p.neox ? i : 2 * i;
        const int i1 = p.neox ? i + half : 2 * i + 1;
        const float a = v[i0], b = v[i1];
        v[i0] = std::fma(a, c, -(b * s));
        v[i1] = std::fma(a, s, b * c);
      }
    }
  }
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  // ggml_vec_swiglu_f32: ggml's vector exp on whole 8-lane groups, libm's expf on the tail.
  const int64_t n8 = n & ~int64_t{7};
  for (int64_t i = 0; i < n8; ++i) out[i] = ggml::v_silu(gate[i]) * up[i];
  for (int64_t i = n8; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n) {
  // ggml_vec_geglu_f32 (llama.cpp's default GGML_GELU_FP16): the f16 table, so Gemma's
  // activations match llama.cpp bit for bit; the table's error (f16 rounding, ~5e-4
  // relative) is well below the Q8 rounding of the next matmul's input.
  ggml::geglu_f16_table(gate, up, out, n);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void scale_inplace(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void softmax_inplace(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace kvs::ops
