#pragma once
// One K-quant super-block in AVX2 registers, split into the weight-side unpacking (done once
// per block) and the integer lanes against one Q8_K activation block (done per token), so the
// single-row and four-token kernels share the exact lane layout ggml uses.
#include "kernels/core/quant_blocks.h"
#include "kernels/cpu/avx2_simd.h"
#include "kernels/cpu/quant_dot.h"

namespace kvs::avx2 {

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

// The 4-bit (Q4_K) or 5-bit (Q5_K) quants of one super-block: lo[j] holds elements 64j..+31,
// hi[j] elements 64j+32..+63, one byte each.
struct Q45Unpacked {
  __m256i lo[4], hi[4];
  __m256i sc[8];  // scale k of sm broadcast to int16 lanes, made once per block
};

template <bool kFive, typename Block>
inline void q45_K_unpack(const Block& x, const uint8_t* sm, Q45Unpacked& u) {
  for (int k = 0; k < 8; ++k) u.sc[k] = _mm256_set1_epi16(sm[k]);
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m1 = _mm256_set1_epi8(1);
  __m256i hbits = _mm256_setzero_si256();
  if constexpr (kFive) hbits = loadu(x.qh);
  for (int j = 0; j < 4; ++j) {
    const __m256i q4bits = loadu(x.qs + 32 * j);
    u.lo[j] = _mm256_and_si256(q4bits, m4);
    u.hi[j] = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
    if constexpr (kFive) {
      u.lo[j] = _mm256_or_si256(
          u.lo[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j), m1), 4));
      u.hi[j] = _mm256_or_si256(
          u.hi[j], _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * j + 1), m1), 4));
    }
  }
}

// Integer lanes of one Q4_K/Q5_K super-block: sum64[j] gets the 8 lanes of 64-element chunk j
// (lane l = sc[2j] * elements 64j+4l..+3 + sc[2j+1] * elements 64j+32+4l..+3).
inline void q45_K_lanes(const Q45Unpacked& u, const BlockQ8_K& y, __m256i* sum64) {
  for (int j = 0; j < 4; ++j) {
    const __m256i pl = _mm256_maddubs_epi16(u.lo[j], loadu(y.qs + 64 * j));
    const __m256i ph = _mm256_maddubs_epi16(u.hi[j], loadu(y.qs + 64 * j + 32));
    sum64[j] = dpwssd(_mm256_madd_epi16(pl, u.sc[2 * j]), ph, u.sc[2 * j + 1]);
  }
}

// The 6-bit quants of one Q6_K super-block (q[h][g]: elements 128h + 32g .. +31) and its 16
// int16 scales, broadcast per 128-element half as the maddubs pair sums need them.
struct Q6Unpacked {
  __m256i q[2][4];
  __m256i scales;    // [16] int16
  __m256i sc[2][4];  // the scales of chunk (h, g) lined up with its maddubs pair sums
};

inline void q6_K_unpack(const BlockQ6_K& x, Q6Unpacked& u) {
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m256i m3 = _mm256_set1_epi8(3);
  u.scales = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x.scales)));
  const __m256i sc_half[2] = {_mm256_permute2x128_si256(u.scales, u.scales, 0x00),
                              _mm256_permute2x128_si256(u.scales, u.scales, 0x11)};
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 4; ++g) u.sc[h][g] = _mm256_shuffle_epi8(sc_half[h], pair_shuffle(g));
  for (int h = 0; h < 2; ++h) {
    const __m256i ql0 = loadu(x.ql + 64 * h);
    const __m256i ql1 = loadu(x.ql + 64 * h + 32);
    const __m256i qh = loadu(x.qh + 32 * h);
    u.q[h][0] =
        _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
    u.q[h][1] =
        _mm256_or_si256(_mm256_and_si256(ql1, m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
    u.q[h][2] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
    u.q[h][3] =
        _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                        _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
  }
}

// Integer lanes of one Q6_K super-block, laid out as ggml_vec_dot_q6_K_q8_K's. The -32 bias
// is folded out of the inner loop: sum(s*(q-32)*q8) = sum(s*q*q8) - 32*sum(s*bsum).
inline __m256i q6_K_lanes(const Q6Unpacked& u, const BlockQ8_K& y) {
  const __m256i bias = _mm256_slli_epi32(_mm256_madd_epi16(u.scales, loadu(y.bsums)), 5);
  __m256i sumi = _mm256_sub_epi32(_mm256_setzero_si256(), bias);
  for (int h = 0; h < 2; ++h)
    for (int g = 0; g < 4; ++g) {
      const __m256i p = _mm256_maddubs_epi16(u.q[h][g], loadu(y.qs + 128 * h + 32 * g));
      sumi = dpwssd(sumi, p, u.sc[h][g]);
    }
  return sumi;
}

// One Q4_K super-block ready for its dot products with any number of activation blocks.
struct Q4KPrepared {
  alignas(16) uint8_t sm[16];  // [8] scales, [8] mins
  __m128i mins;                // the mins as int16, for the per-64 min products
  Q45Unpacked u;
  float d, dmin;
};

inline void q4_K_prepare(const BlockQ4_K& x, Q4KPrepared& p) {
  k4_scales_mins(x.scales, p.sm);
  p.mins = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p.sm + 8)));
  q45_K_unpack<false>(x, p.sm, p.u);
  p.d = h2f(x.d);
  p.dmin = h2f(x.dmin);
}

// detail::KBlockInts of one Q4_K super-block (d and dmin set by the caller) from its unpacked
// quants and scales/mins sm[16]. Integer sums are exact in any order: only the GEMM needs the
// four per-64 parts, the other kernels take the total, so they pay one horizontal sum.
inline void q4_K_block_ints(const Q45Unpacked& u, const uint8_t* sm, const BlockQ8_K& y,
                            bool per_64, detail::KBlockInts& b) {
  __m256i sum64[4];
  q45_K_lanes(u, y, sum64);
  if (per_64) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(b.isum64), hsum4_i32(sum64));
  } else {
    b.isum64[0] = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(sum64[0], sum64[1]),
                                            _mm256_add_epi32(sum64[2], sum64[3])));
    b.isum64[1] = b.isum64[2] = b.isum64[3] = 0;
  }
  for (int c = 0; c < 4; ++c)
    b.imin64[c] = sm[8 + 2 * c] * (y.bsums[4 * c] + y.bsums[4 * c + 1]) +
                  sm[9 + 2 * c] * (y.bsums[4 * c + 2] + y.bsums[4 * c + 3]);
}

// The same for Q6_K, total only (llama.cpp runs no GEMM on Q6_K), d set by the caller.
inline void q6_K_block_ints(const Q6Unpacked& u, const BlockQ8_K& y, detail::KBlockInts& b) {
  b.isum64[0] = hsum_i32(q6_K_lanes(u, y));
  b.isum64[1] = b.isum64[2] = b.isum64[3] = 0;
  b.imin64[0] = b.imin64[1] = b.imin64[2] = b.imin64[3] = 0;
  b.dmin = 0.0f;
}

}  // namespace kvs::avx2
