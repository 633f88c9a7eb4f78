#pragma once
// SIMD helpers shared by the AVX2 quant dot kernels (quant_dot_avx2.cpp,
// quant_dot_tokens_avx2.cpp).
// Only included where KVS_QUANT_DOT_AVX2 is defined.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>

namespace kvs::avx2 {

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

// {hsum(v[0]), hsum(v[1]), hsum(v[2]), hsum(v[3])}.
inline __m128i hsum4_i32(const __m256i v[4]) {
  // hadd twice leaves each vector's sum of 4 in one lane of each 128-bit half.
  const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
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

// acc += a * b summed over adjacent int16 pairs per int32 lane (one VNNI op, or madd + add:
// the same wrapping int32 sums either way).
inline __m256i dpwssd(__m256i acc, __m256i a, __m256i b) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpwssd_epi32(acc, a, b);
#elif defined(__AVXVNNI__)
  return _mm256_dpwssd_avx_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

// Whether dpbusd is a true u8 x s8 dot product for any operands (no int16 pair saturation):
// only then may an unsigned operand exceed 128, as the biased activations below do.
#if (defined(__AVX512VNNI__) && defined(__AVX512VL__)) || defined(__AVXVNNI__)
constexpr bool kExactDpbusd = true;
#else
constexpr bool kExactDpbusd = false;
#endif

// Signed x signed via |x| and sign(x)*y. Exact while y != -128, which ggml-style activation
// quantizers never produce (their quants lie in -127..127); x may be any int8.
inline __m256i dot_s8(__m256i x, __m256i y) {
  return dpbusd(_mm256_setzero_si256(), _mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// Decode streams its weight rows from memory once per token, faster than the hardware
// prefetcher alone fetches them (Gemma 3 decode: 38 -> 47 t/s, docs/benchmarks.md): rows
// [r + ahead, r + ahead + count) are requested now, ahead being kPrefetchBytes of rows.
inline constexpr size_t kPrefetchBytes = 4096;
inline void prefetch_rows(const uint8_t* w, size_t stride, int64_t rows, int64_t r, int64_t count) {
  const int64_t ahead = static_cast<int64_t>((kPrefetchBytes + stride - 1) / stride);
  const int64_t r1 = std::min(rows, r + ahead + count);
  for (int64_t q = r + ahead; q < r1; ++q)
    for (size_t o = 0; o < stride; o += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w + q * stride + o), _MM_HINT_T0);
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

}  // namespace kvs::avx2
