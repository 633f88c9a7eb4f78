// One weight row against 4, 8 or 16 tokens' activation rows (the prefill matmul's inner
// step). Each weight block is unpacked once and dotted with every token's activation block;
// every output keeps its own accumulator, updated in block order with the same FMAs as the
// single-row kernel in quant_dot_avx2.cpp, so out[j] is bit-identical to vec_dot(..., act_j,
// kernel).
#include "kernels/cpu/quant_dot.h"

#if defined(KVS_QUANT_DOT_AVX2)

// clang-format off: before anything that includes <immintrin.h> (see there)
#include "kernels/cpu/avx512_intrinsics.h"
// clang-format on

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "kernels/core/error.h"
#include "kernels/cpu/avx2_simd.h"
#include "kernels/cpu/k_quant_avx2.h"

namespace kvs::avx2 {
namespace {

constexpr int kN = 4;  // tokens per call

// The tokens' activation rows, read as blocks of type B.
template <typename B>
struct Rows {
  const uint8_t* base;
  size_t stride;
  const B& at(int j, int64_t i) const { return reinterpret_cast<const B*>(base + j * stride)[i]; }
};

// d[j] = d_w * d_a(token j) for NT tokens, the same IEEE products as the scalar kernel's.
template <int NT>
inline void block_products(float dw, const float* da, float* d) {
  const __m128 w = _mm_set1_ps(dw);
  for (int q = 0; q < NT / 4; ++q) _mm_store_ps(d + 4 * q, _mm_mul_ps(w, _mm_loadu_ps(da + 4 * q)));
}

// The same products in one register ({d[0..NT)}, upper lanes unused for NT = 4), read back
// per token by a lane broadcast: a permute instead of a store and eight reloads.
template <int NT>
inline __m256 block_products_v(float dw, const float* da) {
  if constexpr (NT == 8) {
    return _mm256_mul_ps(_mm256_set1_ps(dw), _mm256_loadu_ps(da));
  } else {
    return _mm256_castps128_ps256(_mm_mul_ps(_mm_set1_ps(dw), _mm_loadu_ps(da)));
  }
}

inline __m256 lane(__m256 v, int j) {
  return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(j));
}

#if defined(KVS_QUANT_PAIRS_AVX512)
// Two tokens per 512-bit register. ActBatch::q alternates tokens 2m and 2m+1 every 4 bytes,
// and the weight block's 4-byte groups are doubled ({w0, w0, w1, w1, ...}), so lane 2k of a
// dpbusd is token 2m's int32 lane k and lane 2k+1 token 2m+1's: per token the same lanes,
// FMAs and final sum as the 256-bit kernels below, with half the instructions.
inline __m512i doubled_groups(__m256i w) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
  return _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(w));
}

// The weight blocks unpacked straight into doubled_groups' layout: doubled(b) equals
// doubled_groups(unpack(b)) for vec_dot_tokens' unpack lambdas, in fewer shuffle-port ops.
// 16 bytes of nibbles: low nibbles (elements 0..15) in the lower 256 bits, high in the upper.
inline __m512i doubled_nibbles(const uint8_t* qs) {
  const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 1, 1, 2, 2, 3, 3);
  const __m512i v = _mm512_permutexvar_epi32(
      idx, _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs))));
  return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFFFF0000u, v, 4), _mm512_set1_epi8(0xF));
}

// The fifth bits qh (bit e for element e) as a byte mask over the doubled layout, where byte
// 8k + 4p + r holds element 4k + r.
inline __mmask64 doubled_bits(const uint8_t* qh) {
  uint32_t h;
  std::memcpy(&h, qh, sizeof h);
  return _pdep_u64(h, 0x0F0F0F0F0F0F0F0Full) | _pdep_u64(h, 0xF0F0F0F0F0F0F0F0ull);
}

inline __m512i doubled(const BlockQ4_0& b) {
  return _mm512_sub_epi8(doubled_nibbles(b.qs), _mm512_set1_epi8(8));
}
inline __m512i doubled(const BlockQ5_0& b) {  // -16 where the fifth bit is clear
  const __m512i v = doubled_nibbles(b.qs);
  return _mm512_mask_sub_epi8(v, _knot_mask64(doubled_bits(b.qh)), v, _mm512_set1_epi8(16));
}
inline __m512i doubled(const BlockQ8_0& b) {
  return doubled_groups(loadu(b.qs));
}
inline __m512i doubled(const BlockQ4_1& b) {
  return doubled_nibbles(b.qs);
}
inline __m512i doubled(const BlockQ5_1& b) {  // +16 where the fifth bit is set
  const __m512i v = doubled_nibbles(b.qs);
  return _mm512_mask_add_epi8(v, doubled_bits(b.qh), v, _mm512_set1_epi8(16));
}

// {d[0], d[1]} in every lane pair, by a broadcast load (no shuffle port).
inline __m512 pair_scales(const float* d) {
  double v;
  std::memcpy(&v, d, sizeof v);
  return _mm512_castpd_ps(_mm512_set1_pd(v));
}

// out[0], out[1] = the sums of the even and the odd lanes, each in hsum's order.
inline void pair_sums(__m512 acc, float* out) {
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m512 s = _mm512_permutexvar_ps(idx, acc);
  out[0] = hsum(_mm512_castps512_ps256(s));
  out[1] = hsum(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
}

// The block products d_w * d_a of blocks [i0, i0 + count) for NT tokens, into d[count][NT]: made
// ahead so that the dot loop reads each token pair's two by a broadcast load.
template <int NT, typename Block>
inline void chunk_products(const Block* x, const ActBatch& a, int64_t i0, int count, float* d) {
  for (int c = 0; c < count; ++c)
    block_products<NT>(h2f(x[i0 + c].d), a.d + (i0 + c) * a.ld, d + c * NT);
}

constexpr int kChunk = 32;  // blocks per chunk_products call

// The batch kernels are noinline: one call per weight row and token group costs nothing, and
// profiles then name the kernel that runs instead of vec_dot_tokens.

// legacy_signed's biased path (below) on token pairs.
template <int NT, typename Block>
__attribute__((noinline)) void legacy_signed_pairs(int64_t nb, const Block* x, const ActBatch& a,
                                                   float* out) {
  __m512 acc[NT / 2];
#pragma GCC unroll 8
  for (int m = 0; m < NT / 2; ++m) acc[m] = _mm512_setzero_ps();
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));  // 128 as u8
  alignas(32) float dc[kChunk * NT];                               // [kChunk][NT] block products
  for (int64_t i0 = 0; i0 < nb; i0 += kChunk) {
    const int count = static_cast<int>(std::min<int64_t>(kChunk, nb - i0));
    chunk_products<NT>(x, a, i0, count, dc);
    for (int c = 0; c < count; ++c) {
      const int64_t i = i0 + c;
      const __m512i qx = doubled(x[i]);
      const __m512i corr = _mm512_sub_epi32(_mm512_setzero_si512(),
                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), bias, qx));
      const uint8_t* u = a.q + i * a.ld * kQK;  // [NT / 2][64] this block's paired quants
      const float* d = dc + c * NT;
#pragma GCC unroll 8
      for (int m = 0; m < NT / 2; ++m) {
        const __m512i p = _mm512_dpbusd_epi32(corr, _mm512_loadu_si512(u + m * 2 * kQK), qx);
        acc[m] = _mm512_fmadd_ps(pair_scales(d + 2 * m), _mm512_cvtepi32_ps(p), acc[m]);
      }
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < NT / 2; ++m) pair_sums(acc[m], out + 2 * m);
}

// legacy_min's interleaved path (below) on token pairs.
template <int NT, typename Block>
__attribute__((noinline)) void legacy_min_pairs(int64_t nb, const Block* x, const ActBatch& a,
                                                float* out) {
  __m512 acc[NT / 2];
  __m128 summs[NT / 4];
#pragma GCC unroll 8
  for (int m = 0; m < NT / 2; ++m) acc[m] = _mm512_setzero_ps();
  for (int q = 0; q < NT / 4; ++q) summs[q] = _mm_setzero_ps();
  alignas(32) float dc[kChunk * NT];  // [kChunk][NT] block products
  for (int64_t i0 = 0; i0 < nb; i0 += kChunk) {
    const int count = static_cast<int>(std::min<int64_t>(kChunk, nb - i0));
    chunk_products<NT>(x, a, i0, count, dc);
    for (int c = 0; c < count; ++c) {
      const int64_t i = i0 + c;
      const __m128 mw = _mm_set1_ps(h2f(x[i].m));
      for (int q = 0; q < NT / 4; ++q)
        summs[q] = _mm_fmadd_ps(mw, _mm_loadu_ps(a.s + i * a.ld + 4 * q), summs[q]);
      const __m512i qx = doubled(x[i]);
      const uint8_t* u = a.q + i * a.ld * kQK;  // [NT / 2][64] this block's paired quants
      const float* d = dc + c * NT;
#pragma GCC unroll 8
      for (int m = 0; m < NT / 2; ++m) {
        const __m512i p =
            _mm512_dpbusd_epi32(_mm512_setzero_si512(), qx, _mm512_loadu_si512(u + m * 2 * kQK));
        acc[m] = _mm512_fmadd_ps(pair_scales(d + 2 * m), _mm512_cvtepi32_ps(p), acc[m]);
      }
    }
  }
  alignas(16) float sm[NT];
  for (int q = 0; q < NT / 4; ++q) _mm_store_ps(sm + 4 * q, summs[q]);
#pragma GCC unroll 8
  for (int m = 0; m < NT / 2; ++m) {
    pair_sums(acc[m], out + 2 * m);
    out[2 * m] += sm[2 * m];
    out[2 * m + 1] += sm[2 * m + 1];
  }
}
#endif  // KVS_QUANT_PAIRS_AVX512

// Signed weights (Q4_0, Q5_0, Q8_0): the block is unpacked and dot_s8's |x| taken once for NT
// tokens, each with its own accumulator.
// With interleaved biased quants (a.q, exact dpbusd only): sum(x*y) = sum((y+128)*x) -
// 128*sum(x), the same exact int32 lanes as dot_s8's, the correction made once per weight
// block.
template <int NT, typename Block, typename Unpack>
void legacy_signed(int64_t nb, const Block* x, const ActBatch& a, Unpack&& unpack, float* out) {
  const Rows<BlockQ8_0> y{a.rows, a.stride};
  __m256 acc[NT];
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
#if defined(KVS_QUANT_PAIRS_AVX512)
  if (a.q != nullptr) return legacy_signed_pairs<NT>(nb, x, a, out);
#else
  if (kExactDpbusd && a.q != nullptr) {
    const __m256i bias = _mm256_set1_epi8(static_cast<char>(0x80));  // 128 as u8
    for (int64_t i = 0; i < nb; ++i) {
      const __m256 d = block_products_v<NT>(h2f(x[i].d), a.d + i * a.ld);
      const __m256i qx = unpack(x[i]);
      const __m256i corr =
          _mm256_sub_epi32(_mm256_setzero_si256(), dpbusd(_mm256_setzero_si256(), bias, qx));
      const uint8_t* u = a.q + i * a.ld * kQK;  // [NT][32] this block's biased quants
#pragma GCC unroll 8
      for (int j = 0; j < NT; ++j) {
        const __m256i p = dpbusd(corr, loadu(u + j * kQK), qx);
        acc[j] = _mm256_fmadd_ps(lane(d, j), _mm256_cvtepi32_ps(p), acc[j]);
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) out[j] = hsum(acc[j]);
    return;
  }
#endif
  for (int64_t i = 0; i < nb; ++i) {
    alignas(16) float d[NT];
    block_products<NT>(h2f(x[i].d), a.d + i * a.ld, d);
    const __m256i qx = unpack(x[i]);
    const __m256i ax = _mm256_sign_epi8(qx, qx);
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m256i p =
          dpbusd(_mm256_setzero_si256(), ax, _mm256_sign_epi8(loadu(y.at(j, i).qs), qx));
      acc[j] = _mm256_fmadd_ps(_mm256_broadcast_ss(d + j), _mm256_cvtepi32_ps(p), acc[j]);
    }
  }
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) out[j] = hsum(acc[j]);
}

// Unsigned weights with a min (Q4_1, Q5_1): the min terms summs = fma(m_w, s_a, summs) per
// output in block order (lanes of one fma per 4 tokens), added after the lane reduction.
template <int NT, bool kInterleaved, typename Block, typename Unpack>
void legacy_min(int64_t nb, const Block* x, const ActBatch& a, Unpack&& unpack, float* out) {
#if defined(KVS_QUANT_PAIRS_AVX512)
  if constexpr (kInterleaved) return legacy_min_pairs<NT>(nb, x, a, out);
#endif
  const Rows<BlockQ8_1> y{a.rows, a.stride};
  __m256 acc[NT];
  __m128 summs[NT / 4];
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) acc[j] = _mm256_setzero_ps();
  for (int q = 0; q < NT / 4; ++q) summs[q] = _mm_setzero_ps();
  for (int64_t i = 0; i < nb; ++i) {
    const __m128 mw = _mm_set1_ps(h2f(x[i].m));
    for (int q = 0; q < NT / 4; ++q)
      summs[q] = _mm_fmadd_ps(mw, _mm_loadu_ps(a.s + i * a.ld + 4 * q), summs[q]);
    const __m256 d = block_products_v<NT>(h2f(x[i].d), a.d + i * a.ld);
    const __m256i qx = unpack(x[i]);
    const uint8_t* q = kInterleaved ? a.q + i * a.ld * kQK : nullptr;  // [NT][32] quants
#pragma GCC unroll 8
    for (int j = 0; j < NT; ++j) {
      const __m256i y8 = kInterleaved ? loadu(q + j * kQK) : loadu(y.at(j, i).qs);
      const __m256i p = dpbusd(_mm256_setzero_si256(), qx, y8);
      acc[j] = _mm256_fmadd_ps(lane(d, j), _mm256_cvtepi32_ps(p), acc[j]);
    }
  }
  alignas(16) float sm[NT];
  for (int q = 0; q < NT / 4; ++q) _mm_store_ps(sm + 4 * q, summs[q]);
#pragma GCC unroll 8
  for (int j = 0; j < NT; ++j) out[j] = hsum(acc[j]) + sm[j];
}

// ggml_vec_dot_q4_K_q8_K's arithmetic (see dot_q45_K in quant_dot_avx2.cpp) for Q4_K.
void q4_K_vec_dot(int64_t nb, const BlockQ4_K* x, const ActBatch& a, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  __m256 acc[kN] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  __m128 acc_m[kN] = {_mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps(), _mm_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    Q4KPrepared p;
    q4_K_prepare(x[i], p);
    const float dw = p.d, dminw = p.dmin;
    const __m128i mins = p.mins;
    const Q45Unpacked& u = p.u;
#pragma GCC unroll 4
    for (int j = 0; j < kN; ++j) {
      const BlockQ8_K& b8 = y.at(j, i);
      const float d = b8.d * dw;
      const float dmin = -b8.d * dminw;
      const __m256i bs = loadu(b8.bsums);
      const __m128i q8s =
          _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));  // [8]
      acc_m[j] =
          _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(_mm_madd_epi16(mins, q8s)), acc_m[j]);
      __m256i sum64[4];
      q45_K_lanes(u, b8, sum64);
      const __m256i sumi = _mm256_add_epi32(_mm256_add_epi32(sum64[0], sum64[1]),
                                            _mm256_add_epi32(sum64[2], sum64[3]));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < kN; ++j) {
    __m128 m = _mm_add_ps(acc_m[j], _mm_movehl_ps(acc_m[j], acc_m[j]));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    out[j] = hsum(acc[j]) + _mm_cvtss_f32(m);
  }
}

void q6_K_vec_dot(int64_t nb, const BlockQ6_K* x, const ActBatch& a, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  __m256 acc[kN] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                    _mm256_setzero_ps()};
  for (int64_t i = 0; i < nb; ++i) {
    const float dw = h2f(x[i].d);
    Q6Unpacked u;
    q6_K_unpack(x[i], u);
#pragma GCC unroll 4
    for (int j = 0; j < kN; ++j) {
      const BlockQ8_K& b8 = y.at(j, i);
      acc[j] =
          _mm256_fmadd_ps(_mm256_set1_ps(dw * b8.d), _mm256_cvtepi32_ps(q6_K_lanes(u, b8)), acc[j]);
    }
  }
#pragma GCC unroll 4
  for (int j = 0; j < kN; ++j) out[j] = hsum(acc[j]);
}

// detail::KAccum for four outputs, one per __m128 lane: every lane sees the same IEEE
// multiplies and FMAs, in the same order, as KAccum's scalar ones.
struct KAccum4 {
  __m128 acc = _mm_setzero_ps(), accm = _mm_setzero_ps();
  // kTiled / kRepackGemv from per-token block totals isum, imin (int32 lanes).
  void add_total(DotKernel k, __m128i isum, __m128i imin, float dw, float dminw, __m128 da) {
    const __m128 fi = _mm_cvtepi32_ps(isum), fm = _mm_cvtepi32_ps(imin);
    if (k == DotKernel::kTiled) {
      __m128 r = _mm_mul_ps(fi, _mm_set1_ps(dw));
      r = _mm_fmadd_ps(_mm_set1_ps(-dminw), fm, r);
      acc = _mm_fmadd_ps(r, da, acc);
    } else {
      acc = _mm_fmadd_ps(fi, _mm_mul_ps(_mm_set1_ps(dw), da), acc);
      accm = _mm_fmadd_ps(fm, _mm_mul_ps(_mm_set1_ps(dminw), da), accm);
    }
  }
  // kRepackGemm from per-64 parts: isum64[c], imin64[c] hold chunk c of the four tokens.
  void add_gemm(const __m128i* isum64, const __m128i* imin64, float dw, float dminw, __m128 da) {
    const __m128 dd = _mm_mul_ps(_mm_set1_ps(dw), da), dm = _mm_mul_ps(_mm_set1_ps(dminw), da);
    for (int c = 0; c < 4; ++c) {
      acc = _mm_fmadd_ps(_mm_cvtepi32_ps(isum64[c]), dd, acc);
      accm = _mm_fmadd_ps(_mm_cvtepi32_ps(imin64[c]), dm, accm);
    }
  }
  void result(DotKernel k, float* out) const {
    _mm_storeu_ps(out, k == DotKernel::kTiled ? acc : _mm_sub_ps(acc, accm));
  }
};

// {sum of a, sum of b, sum of c, sum of d} over int32 lanes.
inline __m128i hsum4_i32x4(__m128i a, __m128i b, __m128i c, __m128i d) {
  return _mm_hadd_epi32(_mm_hadd_epi32(a, b), _mm_hadd_epi32(c, d));
}

// Rows become columns: v[j] = {v_j0..v_j3} -> v[c] = {v_0c..v_3c}.
inline void transpose4(__m128i* v) {
  __m128 r0 = _mm_castsi128_ps(v[0]), r1 = _mm_castsi128_ps(v[1]), r2 = _mm_castsi128_ps(v[2]),
         r3 = _mm_castsi128_ps(v[3]);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  v[0] = _mm_castps_si128(r0);
  v[1] = _mm_castps_si128(r1);
  v[2] = _mm_castps_si128(r2);
  v[3] = _mm_castps_si128(r3);
}

inline __m128 block_scales(const Rows<BlockQ8_K>& y, int64_t i) {
  return _mm_setr_ps(y.at(0, i).d, y.at(1, i).d, y.at(2, i).d, y.at(3, i).d);
}

// Q4_K under the batch kernels: the integer block sums of detail::KBlockInts (scales, mins
// and the min products per 64 elements as in q4_K_block_ints), gathered across the tokens.
template <int NT>
__attribute__((noinline)) void q4_K_batch(int64_t nb, const BlockQ4_K* x, const ActBatch& a,
                                          DotKernel k, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  KAccum4 acc[NT / 4];  // tokens 4q..4q+3 in acc[q]'s lanes
  for (int64_t i = 0; i < nb; ++i) {
    Q4KPrepared p;
    q4_K_prepare(x[i], p);
    const float dw = p.d, dminw = p.dmin;
    const __m128i mins = p.mins;
    const Q45Unpacked& u = p.u;
    for (int q = 0; q < NT / 4; ++q) {
      const Rows<BlockQ8_K> yq{y.base + 4 * q * y.stride, y.stride};
      __m128i isum[4], imin[4];  // per token: 4 parts (GEMM) or the total in a vector sum
      __m256i total[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const BlockQ8_K& b8 = yq.at(j, i);
        __m256i sum64[4];
        q45_K_lanes(u, b8, sum64);
        const __m256i bs = loadu(b8.bsums);
        const __m128i q8s =
            _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));  // [8]
        imin[j] = _mm_madd_epi16(mins, q8s);  // the 4 per-64 min products
        if (k == DotKernel::kRepackGemm)
          isum[j] = hsum4_i32(sum64);
        else
          total[j] = _mm256_add_epi32(_mm256_add_epi32(sum64[0], sum64[1]),
                                      _mm256_add_epi32(sum64[2], sum64[3]));
      }
      const __m128 da = block_scales(yq, i);
      if (k == DotKernel::kRepackGemm) {
        transpose4(isum);
        transpose4(imin);
        acc[q].add_gemm(isum, imin, dw, dminw, da);
      } else {
        acc[q].add_total(k, hsum4_i32(total), hsum4_i32x4(imin[0], imin[1], imin[2], imin[3]), dw,
                         dminw, da);
      }
    }
  }
  for (int q = 0; q < NT / 4; ++q) acc[q].result(k, out + 4 * q);
}

// Q6_K under kTiled / kRepackGemv (its KBlockInts have no mins: imin = 0, dmin = 0).
template <int NT>
__attribute__((noinline)) void q6_K_batch(int64_t nb, const BlockQ6_K* x, const ActBatch& a,
                                          DotKernel k, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  KAccum4 acc[NT / 4];  // tokens 4q..4q+3 in acc[q]'s lanes
  for (int64_t i = 0; i < nb; ++i) {
    Q6Unpacked u;
    q6_K_unpack(x[i], u);
    const float dw = h2f(x[i].d);
    for (int q = 0; q < NT / 4; ++q) {
      const Rows<BlockQ8_K> yq{y.base + 4 * q * y.stride, y.stride};
      __m256i lanes[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) lanes[j] = q6_K_lanes(u, yq.at(j, i));
      acc[q].add_total(k, hsum4_i32(lanes), _mm_setzero_si128(), dw, 0.0f, block_scales(yq, i));
    }
  }
  for (int q = 0; q < NT / 4; ++q) acc[q].result(k, out + 4 * q);
}

#if defined(KVS_QUANT_PAIRS_AVX512)
// K-quants on token pairs (ActBatch::q, 32-element blocks): the integer sums of a super-block
// are exact in any order, so only each token's per-64 (or total) sums must come out as in
// q4_K_batch / q6_K_batch; the float accumulation is theirs (KAccum4).

// Paired quants of 32-element block b for token pair m.
inline __m512i pair_quants(const ActBatch& a, int64_t b, int m) {
  return _mm512_loadu_si512(a.q + (b * a.ld + 2 * m) * kQK);
}

// Per-token sums of paired chunk sums S[4] (lane 2k + p: token p's lane k):
// x = {S0 token 0, S0 token 1, S1 token 0, S1 token 1}, y the same for S2, S3.
inline void pair_chunk_sums(const __m512i* S, __m128i& x, __m128i& y) {
  const __m512i a =
      _mm512_add_epi32(_mm512_unpacklo_epi64(S[0], S[1]), _mm512_unpackhi_epi64(S[0], S[1]));
  const __m512i b =
      _mm512_add_epi32(_mm512_unpacklo_epi64(S[2], S[3]), _mm512_unpackhi_epi64(S[2], S[3]));
  // 128-bit lanes {a0 + a2, a1 + a3, b0 + b2, b1 + b3}, then lane 0 = a's total, 2 = b's.
  const __m512i s = _mm512_add_epi32(_mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                     _mm512_shuffle_i64x2(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512i t = _mm512_add_epi32(s, _mm512_shuffle_i64x2(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  x = _mm512_castsi512_si128(t);
  y = _mm512_extracti32x4_epi32(t, 2);
}

// {total of pair 0 token 0, token 1, pair 1 token 0, token 1} of two paired sums.
inline __m128i pair_totals(__m512i s01, __m512i s23) {
  const __m512i a =
      _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
  return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

template <int NT>
__attribute__((noinline)) void q4_K_batch_pairs(int64_t nb, const BlockQ4_K* x, const ActBatch& a,
                                                DotKernel k, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  KAccum4 acc[NT / 4];  // tokens 4q..4q+3 in acc[q]'s lanes
  for (int64_t i = 0; i < nb; ++i) {
    Q4KPrepared p;
    q4_K_prepare(x[i], p);
    __m512i lo[4], hi[4], sc[8];  // doubled 4-byte groups (see doubled_groups)
    for (int c = 0; c < 4; ++c) {
      lo[c] = doubled_groups(p.u.lo[c]);
      hi[c] = doubled_groups(p.u.hi[c]);
    }
    for (int c = 0; c < 8; ++c) sc[c] = _mm512_set1_epi16(p.sm[c]);
    for (int q = 0; q < NT / 4; ++q) {
      const Rows<BlockQ8_K> yq{y.base + 4 * q * y.stride, y.stride};
      __m128i xs[2], ys[2];
      for (int r = 0; r < 2; ++r) {
        __m512i S[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; ++c) {
          const __m512i pl = _mm512_maddubs_epi16(lo[c], pair_quants(a, 8 * i + 2 * c, 2 * q + r));
          const __m512i ph =
              _mm512_maddubs_epi16(hi[c], pair_quants(a, 8 * i + 2 * c + 1, 2 * q + r));
          S[c] = _mm512_dpwssd_epi32(_mm512_madd_epi16(pl, sc[2 * c]), ph, sc[2 * c + 1]);
        }
        pair_chunk_sums(S, xs[r], ys[r]);
      }
      __m128i imin[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) {
        const __m256i bs = loadu(yq.at(j, i).bsums);
        const __m128i q8s =
            _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));  // [8]
        imin[j] = _mm_madd_epi16(p.mins, q8s);  // the 4 per-64 min products
      }
      const __m128 da = block_scales(yq, i);
      if (k == DotKernel::kRepackGemm) {
        const __m128i isum[4] = {_mm_unpacklo_epi64(xs[0], xs[1]), _mm_unpackhi_epi64(xs[0], xs[1]),
                                 _mm_unpacklo_epi64(ys[0], ys[1]),
                                 _mm_unpackhi_epi64(ys[0], ys[1])};  // per chunk
        transpose4(imin);
        acc[q].add_gemm(isum, imin, p.d, p.dmin, da);
      } else {
        const __m128i t01 = _mm_add_epi32(xs[0], ys[0]), t23 = _mm_add_epi32(xs[1], ys[1]);
        const __m128i total =
            _mm_add_epi32(_mm_unpacklo_epi64(t01, t23), _mm_unpackhi_epi64(t01, t23));
        acc[q].add_total(k, total, hsum4_i32x4(imin[0], imin[1], imin[2], imin[3]), p.d, p.dmin,
                         da);
      }
    }
  }
  for (int q = 0; q < NT / 4; ++q) acc[q].result(k, out + 4 * q);
}

template <int NT>
__attribute__((noinline)) void q6_K_batch_pairs(int64_t nb, const BlockQ6_K* x, const ActBatch& a,
                                                DotKernel k, float* out) {
  const Rows<BlockQ8_K> y{a.rows, a.stride};
  KAccum4 acc[NT / 4];  // tokens 4q..4q+3 in acc[q]'s lanes
  for (int64_t i = 0; i < nb; ++i) {
    Q6Unpacked u;
    q6_K_unpack(x[i], u);
    const float dw = h2f(x[i].d);
    __m512i q6[8], sc[8];  // chunk 4h + g, doubled 4-byte groups
    for (int h = 0; h < 2; ++h)
      for (int g = 0; g < 4; ++g) {
        q6[4 * h + g] = doubled_groups(u.q[h][g]);
        sc[4 * h + g] = doubled_groups(u.sc[h][g]);
      }
    for (int q = 0; q < NT / 4; ++q) {
      const Rows<BlockQ8_K> yq{y.base + 4 * q * y.stride, y.stride};
      __m512i S[2];
      for (int r = 0; r < 2; ++r) {
        __m512i s = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int c = 0; c < 8; ++c)
          s = _mm512_dpwssd_epi32(
              s, _mm512_maddubs_epi16(q6[c], pair_quants(a, 8 * i + c, 2 * q + r)), sc[c]);
        S[r] = s;
      }
      // q6_K_lanes' -32 bias, sum(s * bsum) * 32 per token
      __m256i bias[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) bias[j] = _mm256_madd_epi16(u.scales, loadu(yq.at(j, i).bsums));
      const __m128i total =
          _mm_sub_epi32(pair_totals(S[0], S[1]), _mm_slli_epi32(hsum4_i32(bias), 5));
      acc[q].add_total(k, total, _mm_setzero_si128(), dw, 0.0f, block_scales(yq, i));
    }
  }
  for (int q = 0; q < NT / 4; ++q) acc[q].result(k, out + 4 * q);
}
#endif  // KVS_QUANT_PAIRS_AVX512

}  // namespace

namespace {

template <int NT>
void vec_dot_tokens(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                    DotKernel kernel, float* out) {
  const int64_t bs = dtype_traits(weight_type).block_size;
  KVS_CHECK(n >= 0 && n % bs == 0, "vec_dot_x" + std::to_string(NT) + ": n=" + std::to_string(n) +
                                       " not a multiple of " + std::to_string(bs));
  const int64_t nb = n / bs;
  const bool batch = kernel != DotKernel::kVecDot;
  const bool scales = a.d != nullptr && a.ld >= NT;
  const auto q4_0 = [](const BlockQ4_0& b) {
    return _mm256_sub_epi8(nibbles32(b.qs), _mm256_set1_epi8(8));
  };
  const auto q5_0 = [](const BlockQ5_0& b) {
    // see dot_q5_0: OR-ing 0xF0 where the fifth bit is clear
    const __m256i hi = _mm256_andnot_si256(bits32(b.qh), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return _mm256_or_si256(nibbles32(b.qs), hi);
  };
  const auto q8_0 = [](const BlockQ8_0& b) { return loadu(b.qs); };
  const auto q4_1 = [](const BlockQ4_1& b) { return nibbles32(b.qs); };
  const auto q5_1 = [](const BlockQ5_1& b) {
    return _mm256_or_si256(nibbles32(b.qs), _mm256_and_si256(bits32(b.qh), _mm256_set1_epi8(0x10)));
  };
  switch (weight_type) {
    case DType::Q4_0:
      if (!scales) break;
      return legacy_signed<NT>(nb, static_cast<const BlockQ4_0*>(w_row), a, q4_0, out);
    case DType::Q5_0:
      if (!scales) break;
      return legacy_signed<NT>(nb, static_cast<const BlockQ5_0*>(w_row), a, q5_0, out);
    case DType::Q8_0:
      if (!scales) break;
      return legacy_signed<NT>(nb, static_cast<const BlockQ8_0*>(w_row), a, q8_0, out);
    case DType::Q4_1:
      if (!scales || a.s == nullptr) break;
      if (a.q != nullptr)
        return legacy_min<NT, true>(nb, static_cast<const BlockQ4_1*>(w_row), a, q4_1, out);
      return legacy_min<NT, false>(nb, static_cast<const BlockQ4_1*>(w_row), a, q4_1, out);
    case DType::Q5_1:
      if (!scales || a.s == nullptr) break;
      if (a.q != nullptr)
        return legacy_min<NT, true>(nb, static_cast<const BlockQ5_1*>(w_row), a, q5_1, out);
      return legacy_min<NT, false>(nb, static_cast<const BlockQ5_1*>(w_row), a, q5_1, out);
    case DType::Q4_K: {
      const auto* x = static_cast<const BlockQ4_K*>(w_row);
#if defined(KVS_QUANT_PAIRS_AVX512)
      if (batch && a.q != nullptr) return q4_K_batch_pairs<NT>(nb, x, a, kernel, out);
#endif
      if (batch) return q4_K_batch<NT>(nb, x, a, kernel, out);
      for (int q = 0; q < NT / 4; ++q) {  // plain vec_dot: 4 tokens per call
        ActBatch part = a;
        part.rows = a.rows + 4 * q * a.stride;
        q4_K_vec_dot(nb, x, part, out + 4 * q);
      }
      return;
    }
    case DType::Q6_K: {
      if (kernel == DotKernel::kRepackGemm) break;
      const auto* x = static_cast<const BlockQ6_K*>(w_row);
#if defined(KVS_QUANT_PAIRS_AVX512)
      if (batch && a.q != nullptr) return q6_K_batch_pairs<NT>(nb, x, a, kernel, out);
#endif
      if (batch) return q6_K_batch<NT>(nb, x, a, kernel, out);
      for (int q = 0; q < NT / 4; ++q) {
        ActBatch part = a;
        part.rows = a.rows + 4 * q * a.stride;
        q6_K_vec_dot(nb, x, part, out + 4 * q);
      }
      return;
    }
    default:
      break;
  }
  // Types without a multi-token kernel (float rows, Q2_K, Q3_K, Q5_K), or legacy rows passed
  // without their f32 scales: one row at a time.
  for (int j = 0; j < NT; ++j)
    out[j] = avx2::vec_dot(weight_type, n, w_row, a.rows + j * a.stride, kernel);
}

}  // namespace

void vec_dot_x4(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out) {
  vec_dot_tokens<4>(weight_type, n, w_row, a, kernel, out);
}

void vec_dot_x8(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out) {
  vec_dot_tokens<8>(weight_type, n, w_row, a, kernel, out);
}

void vec_dot_x16(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                 DotKernel kernel, float* out) {
#if defined(KVS_QUANT_PAIRS_AVX512)
  const int64_t bs = dtype_traits(weight_type).block_size;
  KVS_CHECK(n >= 0 && n % bs == 0,
            "vec_dot_x16: n=" + std::to_string(n) + " not a multiple of " + std::to_string(bs));
  const int64_t nb = n / bs;
  const bool scales = a.d != nullptr && a.ld >= 16;
  const bool batch = kernel != DotKernel::kVecDot;
  if (a.q != nullptr && a.ld >= 16) {
    switch (weight_type) {
      case DType::Q4_0:
        if (scales)
          return legacy_signed_pairs<16>(nb, static_cast<const BlockQ4_0*>(w_row), a, out);
        break;
      case DType::Q5_0:
        if (scales)
          return legacy_signed_pairs<16>(nb, static_cast<const BlockQ5_0*>(w_row), a, out);
        break;
      case DType::Q8_0:
        if (scales)
          return legacy_signed_pairs<16>(nb, static_cast<const BlockQ8_0*>(w_row), a, out);
        break;
      case DType::Q4_1:
        if (scales && a.s != nullptr)
          return legacy_min_pairs<16>(nb, static_cast<const BlockQ4_1*>(w_row), a, out);
        break;
      case DType::Q5_1:
        if (scales && a.s != nullptr)
          return legacy_min_pairs<16>(nb, static_cast<const BlockQ5_1*>(w_row), a, out);
        break;
      case DType::Q4_K:
        if (batch)
          return q4_K_batch_pairs<16>(nb, static_cast<const BlockQ4_K*>(w_row), a, kernel, out);
        break;
      case DType::Q6_K:
        if (batch && kernel != DotKernel::kRepackGemm)
          return q6_K_batch_pairs<16>(nb, static_cast<const BlockQ6_K*>(w_row), a, kernel, out);
        break;
      default:
        break;
    }
  }
#endif
  // Two halves of eight; the second's scales and quants start 8 tokens in, at the same ld.
  ActBatch hi = a;
  hi.rows = a.rows + 8 * a.stride;
  if (a.d != nullptr) hi.d = a.d + 8;
  if (a.s != nullptr) hi.s = a.s + 8;
  if (a.q != nullptr) hi.q = a.q + 8 * kQK;
  vec_dot_tokens<8>(weight_type, n, w_row, a, kernel, out);
  vec_dot_tokens<8>(weight_type, n, w_row, hi, kernel, out + 8);
}

}  // namespace kvs::avx2

#endif  // KVS_QUANT_DOT_AVX2
