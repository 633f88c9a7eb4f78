// Decode (one token against many weight rows) on two rows per 512-bit register: row r's block
// in the lower 256 bits, row r + 1's in the upper, the activation block broadcast to both.
// Every lane sees the same integer sum and the same FMA, in block order, as the single-row
// kernels in quant_dot_avx2.cpp, so out[r] is bit-identical to vec_dot(..., kVecDot); what
// the pairing saves is half the multiply-adds, conversions and FMAs per block.
#include "kernels/cpu/quant_dot.h"

#if defined(KVS_QUANT_PAIRS_AVX512)

// clang-format off: before anything that includes <immintrin.h> (see there)
#include "kernels/cpu/avx512_intrinsics.h"
// clang-format on

#include <cmath>
#include <vector>

#include "kernels/cpu/avx2_simd.h"

namespace kvs::avx2 {
namespace {

inline float hsum_lo(__m512 v) {
  return hsum(_mm512_castps512_ps256(v));
}
inline float hsum_hi(__m512 v) {
  return hsum(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

inline __m512i two_rows(__m256i lo, __m256i hi) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Signed weights against Q8_0 activations. The weight bytes go in +128 (as u8), so that
// dpbusd multiplies any int8 exactly; the activation side's -128 * (sum of 4 quants) per lane
// is made once per call and starts each block's sum: sum(x*y) = sum((x+128)*y) - 128*sum(y),
// the same exact int32 lanes as dot_s8's.
template <typename Block, typename Unpack>
void rows_signed(DType t, int64_t nb, const uint8_t* w, size_t stride, int64_t rows,
                 const BlockQ8_0* y, Unpack&& unpack, float* out) {
  thread_local std::vector<float> da;      // [nb] activation scales
  thread_local std::vector<int32_t> corr;  // [nb][8] -128 * sums of 4 activation quants
  da.resize(static_cast<size_t>(nb));
  corr.resize(static_cast<size_t>(nb) * 8);
  const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < nb; ++i) {
    da[i] = h2f(y[i].d);
    const __m256i c = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       dpbusd(_mm256_setzero_si256(), bias, loadu(y[i].qs)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corr.data() + 8 * i), c);
  }
  const __m512i bias2 = _mm512_set1_epi8(static_cast<char>(0x80));
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const auto* x0 = reinterpret_cast<const Block*>(w + r * stride);
    const auto* x1 = reinterpret_cast<const Block*>(w + (r + 1) * stride);
    prefetch_rows(w, stride, rows, r, 2);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < nb; ++i) {
      const __m512i wq = _mm512_xor_si512(two_rows(unpack(x0[i]), unpack(x1[i])), bias2);
      const __m512i c = _mm512_broadcast_i64x4(loadu(corr.data() + 8 * i));
      const __m512i p = _mm512_dpbusd_epi32(c, wq, _mm512_broadcast_i64x4(loadu(y[i].qs)));
      const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(h2f(x0[i].d) * da[i]),
                                          _mm256_set1_ps(h2f(x1[i].d) * da[i]), 1);
      acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    out[r] = hsum_lo(acc);
    out[r + 1] = hsum_hi(acc);
  }
  if (r < rows) out[r] = avx2::vec_dot(t, nb * kQK, w + r * stride, y);
}

// Unsigned weights with a min (Q4_1, Q5_1) against Q8_1 activations; the min terms as in
// dot_q4_1: summs = fma(m_w, s_a, summs) in block order, added after the lane sum.
template <typename Block, typename Unpack>
void rows_min(DType t, int64_t nb, const uint8_t* w, size_t stride, int64_t rows,
              const BlockQ8_1* y, Unpack&& unpack, float* out) {
  thread_local std::vector<float> da, sa;  // [nb] activation scales and sums
  da.resize(static_cast<size_t>(nb));
  sa.resize(static_cast<size_t>(nb));
  for (int64_t i = 0; i < nb; ++i) {
    da[i] = h2f(y[i].d);
    sa[i] = h2f(y[i].s);
  }
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const auto* x0 = reinterpret_cast<const Block*>(w + r * stride);
    const auto* x1 = reinterpret_cast<const Block*>(w + (r + 1) * stride);
    prefetch_rows(w, stride, rows, r, 2);
    __m512 acc = _mm512_setzero_ps();
    float summs0 = 0.0f, summs1 = 0.0f;
    for (int64_t i = 0; i < nb; ++i) {
      summs0 = std::fma(h2f(x0[i].m), sa[i], summs0);
      summs1 = std::fma(h2f(x1[i].m), sa[i], summs1);
      const __m512i p =
          _mm512_dpbusd_epi32(_mm512_setzero_si512(), two_rows(unpack(x0[i]), unpack(x1[i])),
                              _mm512_broadcast_i64x4(loadu(y[i].qs)));
      const __m512 d = _mm512_insertf32x8(_mm512_set1_ps(h2f(x0[i].d) * da[i]),
                                          _mm256_set1_ps(h2f(x1[i].d) * da[i]), 1);
      acc = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(p), acc);
    }
    out[r] = hsum_lo(acc) + summs0;
    out[r + 1] = hsum_hi(acc) + summs1;
  }
  if (r < rows) out[r] = avx2::vec_dot(t, nb * kQK, w + r * stride, y);
}

}  // namespace

bool vec_dot_rows_paired(DType weight_type, int64_t nb, const uint8_t* w, size_t stride,
                         int64_t rows, const void* act_row, float* out) {
  const auto* a8 = static_cast<const BlockQ8_0*>(act_row);
  const auto* a81 = static_cast<const BlockQ8_1*>(act_row);
  switch (weight_type) {
    case DType::Q4_0:
      rows_signed<BlockQ4_0>(
          weight_type, nb, w, stride, rows, a8,
          [](const BlockQ4_0& b) { return _mm256_sub_epi8(nibbles32(b.qs), _mm256_set1_epi8(8)); },
          out);
      return true;
    case DType::Q5_0:
      rows_signed<BlockQ5_0>(
          weight_type, nb, w, stride, rows, a8,
          [](const BlockQ5_0& b) {  // see dot_q5_0
            const __m256i hi =
                _mm256_andnot_si256(bits32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
            return _mm256_or_si256(nibbles32(b.qs), hi);
          },
          out);
      return true;
    case DType::Q8_0:
      rows_signed<BlockQ8_0>(
          weight_type, nb, w, stride, rows, a8, [](const BlockQ8_0& b) { return loadu(b.qs); },
          out);
      return true;
    case DType::Q4_1:
      rows_min<BlockQ4_1>(
          weight_type, nb, w, stride, rows, a81, [](const BlockQ4_1& b) { return nibbles32(b.qs); },
          out);
      return true;
    case DType::Q5_1:
      rows_min<BlockQ5_1>(
          weight_type, nb, w, stride, rows, a81,
          [](const BlockQ5_1& b) {
            return _mm256_or_si256(nibbles32(b.qs),
                                   _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
          },
          out);
      return true;
    default:
      return false;
  }
}

}  // namespace kvs::avx2

#endif  // KVS_QUANT_PAIRS_AVX512
