#include "kernels/cpu/ggml_math.h"

#include <bit>
#include <cmath>

#if defined(__AVX2__) && defined(__F16C__)
#include <immintrin.h>
#endif

#include "kernels/core/half.h"

namespace kvs::ggml {

float v_expf(float x) {
  // The constants and the order of every rounding step are those of ggml_v_expf (AVX2).
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const uint32_t e = std::bit_cast<uint32_t>(z) << 23;
  const float k = std::bit_cast<float>(e + std::bit_cast<uint32_t>(1.0f));
  const bool c = std::fabs(n) > 126.0f;
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  if (!c) return std::fma(j, k, k);
  const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
  const float s1 = std::bit_cast<float>(g + 0x7f000000u);
  const float s2 = std::bit_cast<float>(e - g);
  if (std::fabs(n) > 192.0f) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

namespace {

// ggml_table_gelu_f16: f16(gelu(f16 value)) for every f16 bit pattern, with the inner
// 1 + a*x*x contracted to an fma as GCC compiles ggml's C.
struct GeluTable {
  uint16_t v[1 << 16];  // [f16 bits] -> f16 bits
  GeluTable() {
    constexpr float kA = 0.044715f, kSqrt2OverPi = 0.79788456080286535587989211986876f;
    for (uint32_t i = 0; i < (1u << 16); ++i) {
      const float x = fp16_to_fp32(static_cast<uint16_t>(i));
      const float y = 0.5f * x * (1.0f + std::tanh(kSqrt2OverPi * x * std::fma(kA * x, x, 1.0f)));
      v[i] = fp32_to_fp16(y);
    }
  }
};

}  // namespace

const GeluTable& gelu_table() {
  static const GeluTable table;
  return table;
}

float gelu_f16_table(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  return fp16_to_fp32(gelu_table().v[fp32_to_fp16(x)]);
}

void geglu_f16_table(const float* gate, const float* up, float* out, int64_t n) {
  const GeluTable& table = gelu_table();
  int64_t i = 0;
#if defined(__AVX2__) && defined(__F16C__)
  // F16C rounds to nearest even like fp32_to_fp16, so the lookups are the scalar ones.
  const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_loadu_ps(gate + i);
    alignas(16) uint16_t h[8];  // f16 bits of x, then of gelu(x)
    _mm_store_si128(reinterpret_cast<__m128i*>(h),
                    _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (uint16_t& v : h) v = table.v[v];
    __m256 g = _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
    g = _mm256_blendv_ps(g, x, _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
    __m256 y = _mm256_mul_ps(g, _mm256_loadu_ps(up + i));
    y = _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
    _mm256_storeu_ps(out + i, y);
  }
#endif
  for (; i < n; ++i) {
    const float g = gate[i];
    out[i] = g <= -10.0f ? 0.0f : gelu_f16_table(g) * up[i];
  }
}

float v_silu(float x) {
  return x / (1.0f + v_expf(0.0f - x));
}

float hsum8(const float* v) {
  const float a0 = v[4] + v[0], a1 = v[5] + v[1], a2 = v[6] + v[2], a3 = v[7] + v[3];
  return (a0 + a2) + (a1 + a3);
}

float vec_dot_f32(const float* x, const float* y, int64_t n) {
  float acc[4][8] = {};  // [accumulator][lane]
  const int64_t np = n & ~int64_t{31};
  for (int64_t i = 0; i < np; i += 32)
    for (int a = 0; a < 4; ++a)
      for (int l = 0; l < 8; ++l)
        acc[a][l] = std::fma(x[i + 8 * a + l], y[i + 8 * a + l], acc[a][l]);
  float s[8];
  for (int l = 0; l < 8; ++l) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  // _mm_hadd_ps twice over (lo4 + hi4): ((t0 + t1) + (t2 + t3)).
  const float t0 = s[0] + s[4], t1 = s[1] + s[5], t2 = s[2] + s[6], t3 = s[3] + s[7];
  float sum = (t0 + t1) + (t2 + t3);
  for (int64_t i = np; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

float tinyblas_dot_f32(const float* x, const float* y, int64_t n) {
  float acc[8] = {};
  for (int64_t i = 0; i < n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] = std::fma(x[i + l], y[i + l], acc[l]);
  return hsum8(acc);
}

}  // namespace kvs::ggml
