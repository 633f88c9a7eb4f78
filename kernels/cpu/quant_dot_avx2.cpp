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

namespace kvs::avx2 {
namespace {

inline float h2f(uint16_t h) {
  return _cvtsh_ss(h);
}

inline float hsum(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

inline int hsum_i32(__m256i v) {
  __m128i r = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  r = _mm_add_epi32(r, _mm_unpackhi_epi64(r, r));
  r = _mm_add_epi32(r, _mm_shuffle_epi32(r, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(r);
}

inline __m256i loadu(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// acc += sums of 4 adjacent u8*s8 products per int32 lane. Callers keep u <= 128 and
// |s| <= 127, so the int16 pair sums of the maddubs fallback (<= 32512) never saturate and all
// three paths give the same exact result.
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
  return _mm256_dpbusd_avx_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// Signed x signed via |x| and sign(x)*y. Exact while y != -128, which ggml-style activation
// quantizers never produce (their quants lie in -127..127); x may be any int8.
inline __m256i dot_s8(__m256i x, __m256i y) {
  return dpbusd(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// 16 packed bytes -> 32 nibbles: byte j holds element j (low nibbles first, then high).
inline __m256i nibbles32(const uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(t, 4), t), _mm256_set1_epi8(0x0F));
}

// 32 bits (little-endian) -> 32 bytes, byte j = 0xFF where bit j is set.
inline __m256i bits32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(v)),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
}

// _mm256_shuffle_epi8 controls that broadcast int16 element 2k of each 128-bit half to the
// low half and element 2k+1 to the high half: the scales of two consecutive 16-element groups,
// lined up with the int16 pair sums of one 32-byte maddubs.
constexpr std::array<std::array<int8_t, 32>, 4> make_pair_shuffles() {
  std::array<std::array<int8_t, 32>, 4> t{};
  for (int k = 0; k < 4; ++k)
    for (int b = 0; b < 32; ++b) t[k][b] = static_cast<int8_t>(4 * k + (b >= 16 ? 2 : 0) + (b & 1));
  return t;
}
alignas(32) constexpr auto kPairShuffle = make_pair_shuffles();

inline __m256i pair_shuffle(int k) {
  return loadu(kPairShuffle[k].data());
}

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

// Q4_K/Q5_K: 8 six-bit scales (bytes 0..7 of the result) and mins (bytes 8..15).
inline void k4_scales_mins(const uint8_t* s, uint8_t* out /*[16]*/) {
  uint32_t u[4];
  std::memcpy(u, s, 12);
  constexpr uint32_t k1 = 0x3f3f3f3f, k2 = 0x0f0f0f0f, k3 = 0x03030303;
  u[3] = ((u[2] >> 4) & k2) | (((u[1] >> 6) & k3) << 4);
  const uint32_t mins_lo = u[1] & k1;
  u[1] = (u[2] & k2) | (((u[0] >> 6) & k3) << 4);
  u[2] = mins_lo;
  u[0] &= k1;
  std::memcpy(out, u, 16);
}

// Integer lanes of one Q4_K/Q5_K super-block: sum64[j] gets the 8 lanes of 64-element chunk j
// (lane l = sc[2j] * elements 64j+4l..+3 + sc[2j+1] * elements 64j+32+4l..+3).
template <bool kFive, typename Block>
inline void q45_K_lanes(const Block& x, const BlockQ8_K& y, const uint8_t* sm, __m256i* sum64) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m1 = _mm256_set1_epi8(1);
  __m256i hbits = _mm256_setzero_si256();
  if constexpr (kFive) hbits = loadu(x.qh);
  for (int j = 0; j < 4; ++j) {
    const __m256i q4bits = loadu(x.qs + 32 * j);
    __m256i ql = _mm256_and_si256(q4bits, m4);
    __m256i qh = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
    if constexpr (kFive) {
      ql = _mm256_or_si256(
          ql, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), m1), 4));
      qh = _mm256_or_si256(
          qh, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), m1), 4));
    }
    const __m256i pl = _mm256_maddubs_epi16(ql, loadu(y.qs + 64 * j));
    const __m256i ph = _mm256_maddubs_epi16(qh, loadu(y.qs + 64 * j + 32));
    sum64[j] = _mm256_add_epi32(_mm256_madd_epi16(pl, _mm256_set1_epi16(sm[2 * j])),
                                _mm256_madd_epi16(ph, _mm256_set1_epi16(sm[2 * j + 1])));
  }
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
    q45_K_lanes<kFive>(x[i], y[i], sm, sum64);
    const __m256i sumi = _mm256_add_epi32(_mm256_add_epi32(sum64[0], sum64[1]),
                                          _mm256_add_epi32(sum64[2], sum64[3]));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
  }
  acc_m = _mm_add_ps(acc_m, _mm_movehl_ps(acc_m, acc_m));
  acc_m = _mm_add_ss(acc_m, _mm_movehdup_ps(acc_m));
  return hsum(acc) + _mm_cvtss_f32(acc_m);
}

// Integer lanes of one Q6_K super-block, laid out as ggml_vec_dot_q6_K_q8_K's.
inline __m256i q6_K_lanes(const BlockQ6_K& x, const BlockQ8_K& y) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i scales =
      _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));  // [16]
  // The -32 bias is folded out of the inner loop: sum(s*(q-32)*q8) = sum(s*q*q8) -
  // 32*sum(s*bsum).
  const __m256i bias = _mm256_slli_epi32(_mm256_madd_epi16(scales, loadu(y.bsums)), 5);
  __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), bias);
  const __m256i sc_half[2] = {_mm256_permute2x128_si256(scales, scales, 0x00),
                              _mm256_permute2x128_si256(scales, scales, 0x11)};
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = loadu(x.ql + 64 * h);
    const __m256i ql1 = loadu(x.ql + 64 * h + 32);
    const __m256i qh = loadu(x.qh + 32 * h);
    const __m256i q6[4] = {
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4)),
        _mm256_or_si256(_mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4)),
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4)),
    };
    for (int g = 0; g < 4; ++g) {
      const __m256i p = _mm256_maddubs_epi16(q6[g], loadu(y.qs + 128 * h + 32 * g));
      sumi = _mm256_add_epi32(
          sumi, _mm256_madd_epi16(p, _mm256_shuffle_epi8(sc_half[h], pair_shuffle(g))));
    }
  }
  return sumi;
}

float dot_q6_K(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
  __m256 acc = _mm256_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const float d = h2f(x[i].d) * y[i].d;
    acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(q6_K_lanes(x[i], y[i])), acc);
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
    __m256i sum64[4];
    q45_K_lanes<false>(x, y, sm, sum64);
    for (int c = 0; c < 4; ++c) {
      b.isum64[c] = hsum_i32(sum64[c]);
      b.imin64[c] = sm[8 + 2 * c] * (y.bsums[4 * c] + y.bsums[4 * c + 1]) +
                    sm[9 + 2 * c] * (y.bsums[4 * c + 2] + y.bsums[4 * c + 3]);
    }
    b.d = h2f(x.d);
    b.dmin = h2f(x.dmin);
  } else if (t == DType::Q6_K && k != DotKernel::kRepackGemm) {
    const auto& x = *reinterpret_cast<const BlockQ6_K*>(w);
    b.isum64[0] = hsum_i32(q6_K_lanes(x, y));  // only the total is used (no GEMM for Q6_K)
    b.isum64[1] = b.isum64[2] = b.isum64[3] = 0;
    b.imin64[0] = b.imin64[1] = b.imin64[2] = b.imin64[3] = 0;
    b.d = h2f(x.d);
    b.dmin = 0.0f;
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

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row) {
  KVS_CHECK(quant_dot_supported(weight_type),
            "quant_dot: unsupported weight type " + std::string(dtype_name(weight_type)));
  const int64_t bs = dtype_traits(weight_type).block_size;
  KVS_CHECK(n >= 0 && n % bs == 0,
            "vec_dot: n=" + std::to_string(n) + " not a multiple of " + std::to_string(bs));
  const int64_t nb = n / bs;
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

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel) {
  if (kernel == DotKernel::kVecDot || !detail::is_k_quant(weight_type))
    return avx2::vec_dot(weight_type, n, w_row, act_row);
  KVS_CHECK(n >= 0 && n % kQK_K == 0,
            "vec_dot: n=" + std::to_string(n) + " not a multiple of " + std::to_string(kQK_K));
  const size_t wbytes = dtype_traits(weight_type).block_bytes;
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* y = static_cast<const BlockQ8_K*>(act_row);
  detail::KAccum acc;
  detail::KBlockInts b;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    k_block_ints(weight_type, kernel, w + i * wbytes, y[i], b);
    acc.add(kernel, b, y[i].d);
  }
  return acc.result(kernel);
}

}  // namespace kvs::avx2

#endif  // KVS_QUANT_DOT_AVX2
