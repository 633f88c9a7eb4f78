// AVX2 (+FMA, F16C) quant dot kernels; AVX512-VNNI / AVX-VNNI replace the u8*s8 multiply-add
// where the build enables them. Every lane's integer sum is exact, and for the types ggml's x86
// code covers (see quant_dot.h) the lane layout and FMA order are ggml's, so the results are
// bit-identical to the reference twins and to llama.cpp.
#include "kernels/cpu/quant_dot.h"

#if defined(KVS_QUANT_DOT_AVX2)

#include <immintrin.h>

#include <array>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/cpu/avx2_simd.h"
#include "kernels/cpu/k_quant_avx2.h"

namespace kvs::avx2 {
namespace {

// ---------------------------------------------------------------- float rows

float dot_f32(const float* x, const float* y, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k)
      acc[k] =
          _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * k), _mm256_loadu_ps(y + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), acc[0]);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += x[i] * y[i];
  return sum;
}

inline __m256 load_f16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

float dot_f16(const uint16_t* x, const uint16_t* y, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; ++k)
      acc[k] = _mm256_fmadd_ps(load_f16(x + i + 8 * k), load_f16(y + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(load_f16(x + i), load_f16(y + i), acc[0]);
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += fp16_to_fp32(x[i]) * fp16_to_fp32(y[i]);
  return sum;
}

// bf16 is the top half of an f32, so a 32-bit lane holds two values that become floats by a
// shift (even element) or a mask (odd element). x and y are split the same way, so the pairing
// of products is unchanged and only the summation order differs; this avoids the port-5-bound
// widening loads.
float dot_bf16(const uint16_t* x, const uint16_t* y, int64_t n) {
  const __m256i hi_mask = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int k = 0; k < 2; ++k) {
      const __m256i xv = loadu(x + i + 16 * k), yv = loadu(y + i + 16 * k);
      acc[2 * k] = _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_slli_epi32(xv, 16)),
                                   _mm256_castsi256_ps(_mm256_slli_epi32(yv, 16)), acc[2 * k]);
      acc[2 * k + 1] =
          _mm256_fmadd_ps(_mm256_castsi256_ps(_mm256_and_si256(xv, hi_mask)),
                          _mm256_castsi256_ps(_mm256_and_si256(yv, hi_mask)), acc[2 * k + 1]);
    }
  }
  float sum = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; ++i) sum += bf16_to_fp32(x[i]) * bf16_to_fp32(y[i]);
  return sum;
}

// ---------------------------------------------------------------- 32-element blocks

// ggml's x86 legacy kernels: one 8-lane accumulator, acc = fma(d_w * d_a, lanes, acc) per block
// in order, then hsum_float_8.
template <typename F>
float legacy_loop(int64_t nb, F&& block) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) acc = block(i, acc);
  return hsum(acc);
}

float dot_q4_0(int64_t nb, const BlockQ4_0* x, const BlockQ8_0* y) {
  return legacy_loop(nb, [&](int64_t i, __m256 acc) {
    const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
    const __m256i qx = _mm256_sub_epi8(nibbles32(x[i].qs), _mm256_set1_epi8(8));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8(qx, loadu(y[i].qs))), acc);
  });
}

// The min terms: summs = fma(m, s, summs) in block order (GCC contracts ggml's scalar line),
// added after the lane reduction.
float dot_q4_1(int64_t nb, const BlockQ4_1* x, const BlockQ8_1* y) {
  float summs = 0.0f;
  const float s = legacy_loop(nb, [&](int64_t i, __m256 acc) {
    summs = std::fma(h2f(x[i].m), h2f(y[i].s), summs);
    const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
    const __m256i p = dpbusd(_mm256_setzero_si256(), nibbles32(x[i].qs), loadu(y[i].qs));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  });
  return s + summs;
}

float dot_q5_0(int64_t nb, const BlockQ5_0* x, const BlockQ8_0* y) {
  return legacy_loop(nb, [&](int64_t i, __m256 acc) {
    const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
    // Where the fifth bit is clear, OR-ing 0xF0 makes the byte read as nibble - 16; where it is
    // set the value (nibble + 16) - 16 is the nibble itself.
    const __m256i hi =
        _mm256_andnot_si256(bits32(x[i].qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    const __m256i qx = _mm256_or_si256(nibbles32(x[i].qs), hi);
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8(qx, loadu(y[i].qs))), acc);
  });
}

float dot_q5_1(int64_t nb, const BlockQ5_1* x, const BlockQ8_1* y) {
  float summs = 0.0f;
  const float s = legacy_loop(nb, [&](int64_t i, __m256 acc) {
    summs = std::fma(h2f(x[i].m), h2f(y[i].s), summs);
    const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
    const __m256i hi = _mm256_and_si256(bits32(x[i].qh), _mm256_set1_epi8(0x10));
    const __m256i qx = _mm256_or_si256(nibbles32(x[i].qs), hi);
    const __m256i p = dpbusd(_mm256_setzero_si256(), qx, loadu(y[i].qs));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc);
  });
  return s + summs;
}

float dot_q8_0(int64_t nb, const BlockQ8_0* x, const BlockQ8_0* y) {
  return legacy_loop(nb, [&](int64_t i, __m256 acc) {
    const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
    return _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(dot_s8(loadu(x[i].qs), loadu(y[i].qs))), acc);
  });
}

// ---------------------------------------------------------------- K-quants (256 elements)
// Layout shared by Q2_K/Q3_K/Q6_K: element 128h + 32j + l; one maddubs over the 32 bytes l of
// chunk (h, j) yields 16 int16 pair sums, the low 8 in group 8h+2j and the high 8 in 8h+2j+1.

float dot_q2_K(int64_t nb, const BlockQ2_K* x, const BlockQ8_K* y) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0xF);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = y[i].d * h2f(x[i].d);
    const float dmin = -y[i].d * h2f(x[i].dmin);
    const __m128i sc8 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x[i].scales));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), m4));  // [16]
    const __m256i msum = _mm256_madd_epi16(mins, loadu(y[i].bsums));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc);

    const __m256i scales = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, m4));  // [16] int16
    const __m256i sc_half[2] = {_mm256_permute2x128_si256(scales, scales, 0x00),
                                _mm256_permute2x128_si256(scales, scales, 0x11)};
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q2bits = loadu(x[i].qs + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(q2bits, 2 * j), m3);
        const __m256i p = _mm256_maddubs_epi16(q2, loadu(y[i].qs + 128 * h + 32 * j));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc_half[h], pair_shuffle(j))));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}

// The 16 six-bit Q3_K scales minus 32, as int8 (the kmask trick from ggml's generic code:
// low nibbles from bytes 0..7, high two bits from bytes 8..11).
inline __m128i q3_k_scales(const uint8_t* s) {
  uint32_t a[3];
  std::memcpy(a, s, 12);
  constexpr uint32_t k1 = 0x03030303, k2 = 0x0f0f0f0f;
  const uint32_t w0 = (a[0] & k2) | (((a[2] >> 0) & k1) << 4);
  const uint32_t w1 = (a[1] & k2) | (((a[2] >> 2) & k1) << 4);
  const uint32_t w2 = ((a[0] >> 4) & k2) | (((a[2] >> 4) & k1) << 4);
  const uint32_t w3 = ((a[1] >> 4) & k2) | (((a[2] >> 6) & k1) << 4);
  const __m128i v = _mm_set_epi32(static_cast<int>(w3), static_cast<int>(w2), static_cast<int>(w1),
                                  static_cast<int>(w0));
  return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

float dot_q3_K(int64_t nb, const BlockQ3_K* x, const BlockQ8_K* y) {
  const __m256i m3 = _mm256_set1_epi8(3);
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d) * y[i].d;
    const __m256i scales = _mm256_cvtepi8_epi16(q3_k_scales(x[i].scales));  // [16] int16
    const __m256i sc_half[2] = {_mm256_permute2x128_si256(scales, scales, 0x00),
                                _mm256_permute2x128_si256(scales, scales, 0x11)};
    const __m256i hbits = loadu(x[i].hmask);
    __m256i sumi = _mm256_setzero_si256();
    for (int h = 0; h < 2; ++h) {
      const __m256i q3bits = loadu(x[i].qs + 32 * h);
      for (int j = 0; j < 4; ++j) {
        const int bit = 4 * h + j;
        const __m256i q2 = _mm256_and_si256(_mm256_srli_epi16(q3bits, 2 * j), m3);
        // 4 where the high bit is clear: q = q2 - 4 becomes maddubs(q2) - maddubs(q3h).
        const __m256i clear =
            _mm256_andnot_si256(hbits, _mm256_set1_epi8(static_cast<char>(1 << bit)));
        const __m256i q3h = _mm256_slli_epi16(_mm256_srli_epi16(clear, bit), 2);
        const __m256i q8 = loadu(y[i].qs + 128 * h + 32 * j);
        const __m256i p =
            _mm256_sub_epi16(_mm256_maddubs_epi16(q2, q8), _mm256_maddubs_epi16(q3h, q8));
        sumi = _mm256_add_epi32(
            sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc_half[h], pair_shuffle(j))));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  return hsum(acc);
}
// ggml_vec_dot_q4_K_q8_K: acc = fma(d, lanes, acc) and a separate 4-lane min accumulator,
// lane k = mn[2k]*S[2k] + mn[2k+1]*S[2k+1] (S: 32-element activation sums), acc_m =
// fma(-d_a*dmin_w, lane, acc_m); result hsum_float_8(acc) + hsum of acc_m.
// Q5_K keeps kvsieve's earlier single-accumulator form (not ggml's; see quant_dot.h).
template <bool kFive, typename Block>
float dot_q45_K(int64_t nb, const Block* x, const BlockQ8_K* y) {
  __m256 acc = _mm256_setzero_ps();
  __m128 acc_m = _mm_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = y[i].d * h2f(x[i].d);
    const float dmin = -y[i].d * h2f(x[i].dmin);
    alignas(16) uint8_t sm[16];  // [8] scales, [8] mins
    k4_scales_mins(x[i].scales, sm);
    if constexpr (kFive) {
      // Each min covers 32 elements = two bsums groups: duplicate the bytes before widening.
      const __m128i m8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8));
      const __m256i mins = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m8, m8));  // [16]
      const __m256i msum = _mm256_madd_epi16(mins, loadu(y[i].bsums));
      acc = _mm256_fmadd_ps(_mm256_set1_ps(dmin), _mm256_cvtepi32_ps(msum), acc);
    } else {
      const __m256i bs = loadu(y[i].bsums);
      const __m128i q8s =
          _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));  // [8]
      const __m128i mins =
          _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(sm + 8)));
      const __m128i prod = _mm_madd_epi16(mins, q8s);
      acc_m = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m);
    }
    __m256i sum64[4];
    Q45Unpacked u;
    q45_K_unpack<kFive>(x[i], sm, u);
    q45_K_lanes(u, y[i], sum64);
    const __m256i sumi = _mm256_add_epi32(_mm256_add_epi32(sum64[0], sum64[1]),
                                          _mm256_add_epi32(sum64[2], sum64[3]));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
  acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
  return hsum(acc) + _mm_cvtss_f32(acc_m);
}

float dot_q6_K(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d) * y[i].d;
    Q6Unpacked u;
    q6_K_unpack(x[i], u);
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q6_K_lanes(u, y[i])), acc);
  }
  return hsum(acc);
}

// detail::KBlockInts of one super-block, SIMD for Q4_K and Q6_K, the scalar twin otherwise
// (also for Q6_K under the GEMM, which needs the per-64 split; llama.cpp never uses it there).
inline void k_block_ints(DType t, DotKernel k, const uint8_t* w, const BlockQ8_K& y,
                         detail::KBlockInts& b) {
  if (t == DType::Q4_K) {
    const auto& x = *reinterpret_cast<const BlockQ4_K*>(w);
    alignas(16) uint8_t sm[16];  // [8] scales, [8] mins
    k4_scales_mins(x.scales, sm);
    Q45Unpacked u;
    q45_K_unpack<false>(x, sm, u);
    q4_K_block_ints(u, sm, y, k == DotKernel::kRepackGemm, b);
    b.d = h2f(x.d);
    b.dmin = h2f(x.dmin);
  } else if (t == DType::Q6_K && k != DotKernel::kRepackGemm) {
    const auto& x = *reinterpret_cast<const BlockQ6_K*>(w);
    Q6Unpacked u;
    q6_K_unpack(x, u);
    q6_K_block_ints(u, y, b);
    b.d = h2f(x.d);
  } else {
    detail::k_block_ints_scalar(t, w, y, b);
  }
}

// ---------------------------------------------------------------- activation quantizers
// ggml's x86 quantize_row_q8_0/q8_1 and quantize_row_q8_K_ref, lane-parallel; bit-exact twins
// of ref::quantize_activation.

inline float hmax(__m256 v) {
  __m128 r = _mm_max_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_max_ps(r, _mm_movehl_ps(r, r));
  r = _mm_max_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// 4 x 8 int32 (each within int8 range) -> 32 int8 in element order.
inline void store_i8x32(int8_t* dst, __m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // 128-bit lanes interleave: fixed by the permute
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i all = _mm256_packs_epi16(ab, cd);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst),
                      _mm256_permutevar8x32_epi32(all, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

// Shared by Q8_0 and Q8_1; returns the sum of the quants and the f32 scale in *d_f32.
inline int quantize_block32(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_mask, v[k]));
  }
  const float max_scalar = hmax(amax);
  const float d = max_scalar / 127.0f;
  const float id = max_scalar != 0.0f ? 127.0f / max_scalar : 0.0f;
  *d_out = fp32_to_fp16(d);
  *d_f32 = d;
  __m256i q[4];
  for (int k = 0; k < 4; ++k)
    q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(id)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  store_i8x32(qs, q[0], q[1], q[2], q[3]);
  return hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

void quantize_q8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  const __m256 sign_mask = _mm256_set1_ps(-0.0f);
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    __m256 amax_v = _mm256_setzero_ps();
    for (int k = 0; k < kQK_K; k += 8)
      amax_v = _mm256_max_ps(amax_v, _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + k)));
    const float amax = hmax(amax_v);
    if (amax == 0.0f) {
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    // The first element whose magnitude is amax supplies the signed max, as in the reference.
    float max = 0.0f;
    for (int k = 0; k < kQK_K; k += 8) {
      const int m = _mm256_movemask_ps(_mm256_cmp_ps(
          _mm256_andnot_ps(sign_mask, _mm256_loadu_ps(x + k)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (m != 0) {
        max = x[k + __builtin_ctz(static_cast<unsigned>(m))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    const __m256i cap = _mm256_set1_epi32(127);
    for (int k = 0; k < kQK_K; k += 32) {
      __m256i q[4];
      for (int c = 0; c < 4; ++c) {
        const __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8 * c), vs),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        q[c] = _mm256_min_epi32(_mm256_cvtps_epi32(r), cap);
      }
      store_i8x32(y[i].qs + k, q[0], q[1], q[2], q[3]);
      y[i].bsums[k / 16] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      y[i].bsums[k / 16 + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
    }
    y[i].d = 1.0f / iscale;
  }
}

}  // namespace

void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n) {
  const DType t = vec_dot_type(weight_type);
  KVS_CHECK(n >= 0 && n % dtype_traits(weight_type).block_size == 0, "quantize_activation: bad n");
  switch (t) {
    case DType::Q8_0: {
      auto* y = static_cast<BlockQ8_0*>(dst);
      float d;
      for (int64_t i = 0; i < n / kQK; ++i) quantize_block32(x + i * kQK, &y[i].d, y[i].qs, &d);
      return;
    }
    case DType::Q8_1: {
      auto* y = static_cast<BlockQ8_1*>(dst);
      for (int64_t i = 0; i < n / kQK; ++i) {
        float d;
        const int sum = quantize_block32(x + i * kQK, &y[i].d, y[i].qs, &d);
        y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
      }
      return;
    }
    case DType::Q8_K:
      return quantize_q8_K(x, static_cast<BlockQ8_K*>(dst), n / kQK_K);
    case DType::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      int64_t i = 0;
      for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(
            reinterpret_cast<__m128i*>(y + i),
            _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      for (; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      return;
    }
    default:  // F32 copies, BF16 rounds with the scalar integer trick: no gain from SIMD here
      return ref::quantize_activation(weight_type, x, dst, n);
  }
}

namespace {

// The kernel switch without the argument checks (done once by the callers): nb blocks of
// block size bs, n = nb * bs elements.
float dot_unchecked(DType weight_type, int64_t n, int64_t nb, const void* w_row,
                    const void* act_row) {
  const auto* a8 = static_cast<const BlockQ8_0*>(act_row);
  const auto* a81 = static_cast<const BlockQ8_1*>(act_row);
  const auto* ak = static_cast<const BlockQ8_K*>(act_row);
  switch (weight_type) {
    case DType::F32:
      return dot_f32(static_cast<const float*>(w_row), static_cast<const float*>(act_row), n);
    case DType::F16:
      return dot_f16(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act_row), n);
    case DType::BF16:
      return dot_bf16(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act_row),
                      n);
    case DType::Q4_0:
      return dot_q4_0(nb, static_cast<const BlockQ4_0*>(w_row), a8);
    case DType::Q4_1:
      return dot_q4_1(nb, static_cast<const BlockQ4_1*>(w_row), a81);
    case DType::Q5_0:
      return dot_q5_0(nb, static_cast<const BlockQ5_0*>(w_row), a8);
    case DType::Q5_1:
      return dot_q5_1(nb, static_cast<const BlockQ5_1*>(w_row), a81);
    case DType::Q8_0:
      return dot_q8_0(nb, static_cast<const BlockQ8_0*>(w_row), a8);
    case DType::Q2_K:
      return dot_q2_K(nb, static_cast<const BlockQ2_K*>(w_row), ak);
    case DType::Q3_K:
      return dot_q3_K(nb, static_cast<const BlockQ3_K*>(w_row), ak);
    case DType::Q4_K:
      return dot_q45_K<false>(nb, static_cast<const BlockQ4_K*>(w_row), ak);
    case DType::Q5_K:
      return dot_q45_K<true>(nb, static_cast<const BlockQ5_K*>(w_row), ak);
    case DType::Q6_K:
      return dot_q6_K(nb, static_cast<const BlockQ6_K*>(w_row), ak);
    default:
      KVS_CHECK(false, "unreachable");
  }
}

// vec_dot(..., kernel) for a K-quant under a batch kernel, without the checks.
float dot_kernel_unchecked(DType weight_type, int64_t nb, size_t wbytes, const void* w_row,
                           const void* act_row, DotKernel kernel) {
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* y = static_cast<const BlockQ8_K*>(act_row);
  detail::KAccum acc;
  detail::KBlockInts b;
  for (int64_t i = 0; i < nb; ++i) {
    k_block_ints(weight_type, kernel, w + i * wbytes, y[i], b);
    acc.add(kernel, b, y[i].d);
  }
  return acc.result(kernel);
}

int64_t checked_blocks(DType weight_type, int64_t n) {
  KVS_CHECK(quant_dot_supported(weight_type),
            "quant_dot: unsupported weight type " + std::string(dtype_name(weight_type)));
  const int64_t bs = dtype_traits(weight_type).block_size;
  KVS_CHECK(n >= 0 && n % bs == 0,
            "vec_dot: n=" + std::to_string(n) + " not a multiple of " + std::to_string(bs));
  return n / bs;
}

}  // namespace

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row) {
  return dot_unchecked(weight_type, n, checked_blocks(weight_type, n), w_row, act_row);
}

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel) {
  const int64_t nb = checked_blocks(weight_type, n);
  if (kernel == DotKernel::kVecDot || !detail::is_k_quant(weight_type))
    return dot_unchecked(weight_type, n, nb, w_row, act_row);
  return dot_kernel_unchecked(weight_type, nb, dtype_traits(weight_type).block_bytes, w_row,
                              act_row, kernel);
}

// One row after another: interleaving rows was tried and is slower here (the decode matmul
// streams its weights from memory, and one sequential stream per thread prefetches best);
// what this saves is the per-row dispatch and checks.
void vec_dot_rows(DType weight_type, int64_t n, const void* w_rows, size_t w_stride, int64_t rows,
                  const void* act_row, DotKernel kernel, float* out) {
  const int64_t nb = checked_blocks(weight_type, n);
  const auto* w = static_cast<const uint8_t*>(w_rows);
  if (kernel == DotKernel::kVecDot || !detail::is_k_quant(weight_type)) {
#if defined(KVS_QUANT_PAIRS_AVX512)
    if (vec_dot_rows_paired(weight_type, nb, w, w_stride, rows, act_row, out)) return;
#endif
    for (int64_t r = 0; r < rows; ++r) {
      prefetch_rows(w, w_stride, rows, r, 1);
      out[r] = dot_unchecked(weight_type, n, nb, w + r * w_stride, act_row);
    }
    return;
  }
  const size_t wbytes = dtype_traits(weight_type).block_bytes;
  for (int64_t r = 0; r < rows; ++r) {
    prefetch_rows(w, w_stride, rows, r, 1);
    out[r] = dot_kernel_unchecked(weight_type, nb, wbytes, w + r * w_stride, act_row, kernel);
  }
}

}  // namespace kvs::avx2

#endif  // KVS_QUANT_DOT_AVX2
