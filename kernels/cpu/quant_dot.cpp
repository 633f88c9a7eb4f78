#include "kernels/cpu/quant_dot.h"

#include <cmath>
#include <cstddef>
#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/core/error.h"
#include "kernels/core/half.h"

#if defined(KVS_QUANT_DOT_AVX2)
#include "kernels/cpu/avx2_simd.h"  // kExactDpbusd
#endif

// The reference twins follow ggml's generic C, which is compiled without FP contraction; a
// fused multiply-add would round the per-block terms differently.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kvs {

// Every weight type has a dot product: the two lists must not drift apart.
bool quant_dot_supported(DType weight_type) {
  return dtype_is_weight_type(weight_type);
}

DType vec_dot_type(DType weight_type) {
  switch (weight_type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return weight_type;
    case DType::Q4_0:
    case DType::Q5_0:
    case DType::Q8_0:
      return DType::Q8_0;
    case DType::Q4_1:
    case DType::Q5_1:
      return DType::Q8_1;
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return DType::Q8_K;
    default:
      KVS_CHECK(false,
                "vec_dot_type: unsupported weight type " + std::string(dtype_name(weight_type)));
  }
}

size_t activation_row_bytes(DType weight_type, int64_t n) {
  const DType a = vec_dot_type(weight_type);
  KVS_CHECK(n >= 0 && n % dtype_traits(a).block_size == 0,
            "activation_row_bytes: n=" + std::to_string(n) + " not a multiple of the block size");
  return row_bytes(a, n);
}

void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n) {
#if defined(KVS_QUANT_DOT_AVX2)
  avx2::quantize_activation(weight_type, x, dst, n);
#else
  ref::quantize_activation(weight_type, x, dst, n);
#endif
}

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row) {
#if defined(KVS_QUANT_DOT_AVX2)
  return avx2::vec_dot(weight_type, n, w_row, act_row);
#else
  return ref::vec_dot(weight_type, n, w_row, act_row);
#endif
}

DotKernel dot_kernel(DType weight_type, int64_t rows, int64_t tokens, int64_t t) {
  if (weight_type == DType::Q4_K && rows % 8 == 0)
    return t < tokens - tokens % 4 ? DotKernel::kRepackGemm : DotKernel::kRepackGemv;
  if (detail::is_k_quant(weight_type) && tokens >= 8) return DotKernel::kTiled;
  return DotKernel::kVecDot;
}

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel) {
#if defined(KVS_QUANT_DOT_AVX2)
  return avx2::vec_dot(weight_type, n, w_row, act_row, kernel);
#else
  return ref::vec_dot(weight_type, n, w_row, act_row, kernel);
#endif
}

void activation_scales(DType weight_type, const uint8_t* act, int64_t tokens, size_t stride,
                       int64_t n, std::vector<float>& d, std::vector<float>& s) {
  const DType at = vec_dot_type(weight_type);
  d.clear();
  s.clear();
  if (at != DType::Q8_0 && at != DType::Q8_1) return;
  const int64_t nb = n / kQK;
  d.resize(static_cast<size_t>(nb * tokens));  // [nb][tokens]
  if (at == DType::Q8_1) s.resize(d.size());   // [nb][tokens]
  for (int64_t j = 0; j < tokens; ++j)
    activation_row_scales(weight_type, act + j * stride, n, j, tokens, d.data(),
                          s.empty() ? nullptr : s.data());
}

void activation_row_scales(DType weight_type, const uint8_t* act_row, int64_t n, int64_t j,
                           int64_t tokens, float* d, float* s) {
  const DType at = vec_dot_type(weight_type);
  const int64_t nb = n / kQK;
  if (at == DType::Q8_0) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(act_row);
    for (int64_t i = 0; i < nb; ++i) d[i * tokens + j] = fp16_to_fp32(b[i].d);
  } else if (at == DType::Q8_1) {
    const auto* b = reinterpret_cast<const BlockQ8_1*>(act_row);
    for (int64_t i = 0; i < nb; ++i) {
      d[i * tokens + j] = fp16_to_fp32(b[i].d);
      s[i * tokens + j] = fp16_to_fp32(b[i].s);
    }
  }
}

bool interleaved_quants_used(DType weight_type) {
#if defined(KVS_QUANT_DOT_AVX2)
  if (weight_type == DType::Q4_1 || weight_type == DType::Q5_1) return true;
#if defined(KVS_QUANT_PAIRS_AVX512)
  if (weight_type == DType::Q4_K || weight_type == DType::Q6_K) return true;
#endif
  return avx2::kExactDpbusd &&
         (weight_type == DType::Q4_0 || weight_type == DType::Q5_0 || weight_type == DType::Q8_0);
#else
  (void)weight_type;
  return false;
#endif
}

void interleave_activation_row(DType weight_type, const uint8_t* act_row, int64_t n, int64_t j,
                               int64_t tokens, uint8_t* q) {
  const DType at = vec_dot_type(weight_type);
  KVS_CHECK(at == DType::Q8_0 || at == DType::Q8_1 || at == DType::Q8_K,
            "interleave_activation_row: no interleaved quants for " +
                std::string(dtype_name(weight_type)));
  // Where the quants of 32-element block i start in the row.
  const auto block_quants = [&](int64_t i) -> const int8_t* {
    const uint8_t* p =
        at == DType::Q8_0 ? act_row + i * sizeof(BlockQ8_0) + offsetof(BlockQ8_0, qs)
        : at == DType::Q8_1
            ? act_row + i * sizeof(BlockQ8_1) + offsetof(BlockQ8_1, qs)
            : act_row + i / 8 * sizeof(BlockQ8_K) + offsetof(BlockQ8_K, qs) + i % 8 * kQK;
    return reinterpret_cast<const int8_t*>(p);
  };
  const int bias = at == DType::Q8_0 ? 128 : 0;
#if defined(KVS_QUANT_PAIRS_AVX512)
  // A token without its pair partner would spill into the next block's row.
  KVS_CHECK(j >= 0 && (j | 1) < tokens, "interleave_activation_row: token " + std::to_string(j) +
                                            " has no pair partner among " + std::to_string(tokens));
#endif
  for (int64_t i = 0; i < n / kQK; ++i) {
    uint8_t b[kQK];  // the block's quants, +128 as bytes for Q8_0 activations
    std::memcpy(b, block_quants(i), kQK);
    if (bias != 0)
      for (uint8_t& v : b) v ^= 0x80;  // int8 + 128 as uint8
#if defined(KVS_QUANT_PAIRS_AVX512)
    uint8_t* dst = q + (i * tokens + (j & ~int64_t{1})) * kQK + (j & 1) * 4;  // see ActBatch::q
    for (int g = 0; g < kQK / 4; ++g) std::memcpy(dst + 8 * g, b + 4 * g, 4);
#else
    std::memcpy(q + (i * tokens + j) * kQK, b, kQK);
#endif
  }
}

void vec_dot_x4(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out) {
#if defined(KVS_QUANT_DOT_AVX2)
  avx2::vec_dot_x4(weight_type, n, w_row, a, kernel, out);
#else
  for (int j = 0; j < 4; ++j)
    out[j] = ref::vec_dot(weight_type, n, w_row, a.rows + j * a.stride, kernel);
#endif
}

void vec_dot_x8(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out) {
#if defined(KVS_QUANT_DOT_AVX2)
  avx2::vec_dot_x8(weight_type, n, w_row, a, kernel, out);
#else
  for (int j = 0; j < 8; ++j)
    out[j] = ref::vec_dot(weight_type, n, w_row, a.rows + j * a.stride, kernel);
#endif
}

void vec_dot_x16(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                 DotKernel kernel, float* out) {
#if defined(KVS_QUANT_DOT_AVX2)
  avx2::vec_dot_x16(weight_type, n, w_row, a, kernel, out);
#else
  for (int j = 0; j < 16; ++j)
    out[j] = ref::vec_dot(weight_type, n, w_row, a.rows + j * a.stride, kernel);
#endif
}

void vec_dot_rows(DType weight_type, int64_t n, const void* w_rows, size_t w_stride, int64_t rows,
                  const void* act_row, DotKernel kernel, float* out) {
#if defined(KVS_QUANT_DOT_AVX2)
  avx2::vec_dot_rows(weight_type, n, w_rows, w_stride, rows, act_row, kernel, out);
#else
  for (int64_t r = 0; r < rows; ++r)
    out[r] = ref::vec_dot(weight_type, n, static_cast<const uint8_t*>(w_rows) + r * w_stride,
                          act_row, kernel);
#endif
}

namespace ref {
namespace {

// ggml's nearest_int: round half to even (the float magic-number trick under the default
// rounding mode), valid for |v| < 2^22.
int nearest_int(float v) {
  return static_cast<int>(std::nearbyint(v));
}

// quantize_row_q8_0 / q8_1 of ggml's x86 backend (not the *_ref formulas): d = amax / 127 but
// the multiplier is 127 / amax (not 1 / d), and _mm256_round_ps rounds halves to even. Q8_1's
// s is the f16 of the f32 d times the integer sum of the quants.
int quantize_block32(const float* x, uint16_t* d_out, int8_t* qs, float* d_f32) {
  float amax = 0.0f;
  for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  *d_out = fp32_to_fp16(d);
  *d_f32 = d;
  int sum = 0;
  for (int j = 0; j < kQK; ++j) {
    qs[j] = static_cast<int8_t>(nearest_int(x[j] * id));
    sum += qs[j];
  }
  return sum;
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  float d;
  for (int64_t i = 0; i < nb; ++i) quantize_block32(x + i * kQK, &y[i].d, y[i].qs, &d);
}

void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    float d;
    const int sum = quantize_block32(x + i * kQK, &y[i].d, y[i].qs, &d);
    y[i].s = fp32_to_fp16(static_cast<float>(sum) * d);
  }
}

void quantize_q8_K(const float* x, BlockQ8_K* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    // The scale comes from the signed element of largest magnitude (the first one on ties), so
    // that element maps to exactly -127 and d may be negative.
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      // ggml leaves bsums unwritten here; zero is the value they would have.
      std::memset(&y[i], 0, sizeof(BlockQ8_K));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += y[i].qs[16 * g + l];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1.0f / iscale;
  }
}

// ggml_vec_dot_{f32,f16,bf16} without SIMD: float products summed in double.
template <typename T, typename ToF>
float dot_float(const T* x, const T* y, int64_t n, ToF to_f) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(to_f(x[i]) * to_f(y[i]));
  return static_cast<float>(sum);
}

// ggml's x86 kernels keep per-block float partials in 8 lanes, lane l holding the integer sum
// of elements 4l..4l+3 of each 32-element chunk (what dpbusd / maddubs+madd produce), and
// reduce the lanes with hsum_float_8. Lanes8 replays that rounding exactly.
struct Lanes8 {
  float v[8] = {};
  void fma_all(float d, const int* lane) {
    for (int l = 0; l < 8; ++l) v[l] = std::fma(d, static_cast<float>(lane[l]), v[l]);
  }
  float hsum() const {  // hsum_float_8: (hi + lo), then movehl, then movehdup
    const float r0 = v[4] + v[0], r1 = v[5] + v[1], r2 = v[6] + v[2], r3 = v[7] + v[3];
    return (r0 + r2) + (r1 + r3);
  }
};

// Lane sums of one 32-element block: lane[l] = sum over e in 4l..4l+3 of wq[e] * aq[e].
void block_lanes(const int* wq, const int8_t* aq, int* lane) {
  for (int l = 0; l < 8; ++l) {
    lane[l] = 0;
    for (int e = 4 * l; e < 4 * l + 4; ++e) lane[l] += wq[e] * aq[e];
  }
}

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

// Decoded values of one legacy block, element j at index j: low nibbles are elements 0..15,
// high nibbles 16..31; `offset` is subtracted (8 for Q4_0, 16 for Q5_0, 0 with a min).
void nibbles(const uint8_t* qs, int offset, int* out) {
  for (int j = 0; j < kQK / 2; ++j) {
    out[j] = (qs[j] & 0x0F) - offset;
    out[j + kQK / 2] = (qs[j] >> 4) - offset;
  }
}
void add_fifth_bit(const uint8_t* qh, int* out) {
  const uint32_t h = load_qh(qh);
  for (int j = 0; j < kQK; ++j) out[j] += static_cast<int>((h >> j) & 1) << 4;
}

// ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0 (x86): acc = fma(d_w * d_a, lanes, acc), one accumulator.
template <typename Block, typename Decode>
float dot_legacy(int64_t nb, const Block* x, const BlockQ8_0* y, Decode decode) {
  Lanes8 acc;
  int wq[kQK], lane[8];
  for (int64_t i = 0; i < nb; ++i) {
    decode(x[i], wq);
    block_lanes(wq, y[i].qs, lane);
    acc.fma_all(fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d), lane);
  }
  return acc.hsum();
}

// ggml_vec_dot_{q4_1,q5_1}_q8_1 (x86): as above, plus summs = fma(m, s, summs) in block order
// (GCC contracts that scalar line), added after the lane reduction.
template <typename Block, typename Decode>
float dot_legacy_min(int64_t nb, const Block* x, const BlockQ8_1* y, Decode decode) {
  Lanes8 acc;
  float summs = 0.0f;
  int wq[kQK], lane[8];
  for (int64_t i = 0; i < nb; ++i) {
    summs = std::fma(fp16_to_fp32(x[i].m), fp16_to_fp32(y[i].s), summs);
    decode(x[i], wq);
    block_lanes(wq, y[i].qs, lane);
    acc.fma_all(fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d), lane);
  }
  return acc.hsum() + summs;
}

float dot_q2_K(int64_t nb, const BlockQ2_K* x, const BlockQ8_K* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int summs = 0;
    for (int g = 0; g < 16; ++g) summs += y[i].bsums[g] * (x[i].scales[g] >> 4);
    const float dall = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = y[i].d * fp16_to_fp32(x[i].dmin);
    int isum = 0;
    for (int e = 0; e < kQK_K; e += 16) {  // one 16-element group per scale, in element order
      const int h = e / 128, j = (e % 128) / 32, l0 = e % 32;
      int isuml = 0;
      for (int l = l0; l < l0 + 16; ++l)
        isuml += y[i].qs[128 * h + 32 * j + l] * ((x[i].qs[32 * h + l] >> (2 * j)) & 3);
      isum += (x[i].scales[e / 16] & 0xF) * isuml;
    }
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}

// The K-quant generic kernels in ggml split each super-block's integer sum into 8 lanes
// (element index mod 8) and accumulate d * lane in 8 float partial sums across super-blocks,
// adding the lanes only at the end. Q3_K and Q5_K keep that generic rounding here.
struct KLanes {
  float sums[8] = {};
  // a[256]: decoded weight quants; scale[16]: per 16-element group; q8: activation quants.
  void add(const int8_t* a, const int* scale, const int8_t* q8, float d) {
    int32_t aux32[8] = {};
    for (int g = 0; g < kQK_K / 16; ++g)
      for (int e = 16 * g; e < 16 * g + 16; ++e) aux32[e % 8] += scale[g] * (q8[e] * a[e]);
    for (int l = 0; l < 8; ++l) sums[l] += d * static_cast<float>(aux32[l]);
  }
  float finish(float sumf) const {
    for (int l = 0; l < 8; ++l) sumf += sums[l];
    return sumf;
  }
};

// 16 six-bit Q3_K scales, minus their bias of 32.
void q3_k_scales(const uint8_t* s, int* out) {
  for (int g = 0; g < 16; ++g) {
    const int low4 = g < 8 ? (s[g] & 15) : (s[g - 8] >> 4);
    const int high2 = (s[8 + g % 4] >> (2 * (g / 4))) & 3;
    out[g] = (low4 | (high2 << 4)) - 32;
  }
}

// get_scale_min_k4 for the 8 sub-blocks of a Q4_K/Q5_K super-block.
void k4_scales_mins(const uint8_t* s, int* sc, int* mn) {
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      sc[j] = s[j] & 63;
      mn[j] = s[j + 4] & 63;
    } else {
      sc[j] = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
      mn[j] = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
  }
}

void decode_q3_K(const BlockQ3_K& x, int8_t* a) {
  for (int e = 0; e < kQK_K; ++e) {
    const int h = e / 128, j = (e % 128) / 32, l = e % 32;
    const int q2 = (x.qs[32 * h + l] >> (2 * j)) & 3;
    const bool hb = (x.hmask[l] >> (4 * h + j)) & 1;
    a[e] = static_cast<int8_t>(q2 - (hb ? 0 : 4));
  }
}

template <typename Block>
void decode_q45_K(const Block& x, int8_t* a) {
  for (int e = 0; e < kQK_K; ++e) {
    const int c = e / 64, l = e % 32, sub = e / 32;
    const uint8_t byte = x.qs[32 * c + l];
    int q = (sub % 2 == 0) ? (byte & 0xF) : (byte >> 4);
    if constexpr (std::is_same_v<Block, BlockQ5_K>) q += ((x.qh[l] >> sub) & 1) << 4;
    a[e] = static_cast<int8_t>(q);
  }
}

void decode_q6_K(const BlockQ6_K& x, int8_t* a) {  // quants in -32..31
  for (int e = 0; e < kQK_K; ++e) {
    const int h = e / 128, g = (e % 128) / 32, l = e % 32;
    const int low4 = (x.ql[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 15;
    const int hi2 = (x.qh[32 * h + l] >> (2 * g)) & 3;
    a[e] = static_cast<int8_t>((low4 | (hi2 << 4)) - 32);
  }
}

float dot_q3_K(int64_t nb, const BlockQ3_K* x, const BlockQ8_K* y) {
  KLanes lanes;
  int8_t a[kQK_K];  // [256] quants in -4..3
  int scale[16];
  for (int64_t i = 0; i < nb; ++i) {
    decode_q3_K(x[i], a);
    q3_k_scales(x[i].scales, scale);
    lanes.add(a, scale, y[i].qs, fp16_to_fp32(x[i].d) * y[i].d);
  }
  return lanes.finish(0.0f);
}

float dot_q5_K(int64_t nb, const BlockQ5_K* x, const BlockQ8_K* y) {
  KLanes lanes;
  float sumf = 0.0f;
  int8_t a[kQK_K];  // [256] quants in 0..31
  int sc[8], mn[8], scale[16];
  for (int64_t i = 0; i < nb; ++i) {
    decode_q45_K(x[i], a);
    k4_scales_mins(x[i].scales, sc, mn);
    int sumi = 0;
    for (int g = 0; g < 16; ++g) {
      sumi += y[i].bsums[g] * mn[g / 2];
      scale[g] = sc[g / 2];
    }
    lanes.add(a, scale, y[i].qs, fp16_to_fp32(x[i].d) * y[i].d);
    const float dmin = fp16_to_fp32(x[i].dmin) * y[i].d;
    sumf -= dmin * static_cast<float>(sumi);
  }
  return lanes.finish(sumf);
}

// ggml_vec_dot_q4_K_q8_K (x86 AVX2): lane l = sum over the 4 64-element chunks j of
// sc[2j] * (elements 64j+4l..+3) + sc[2j+1] * (elements 64j+32+4l..+3); acc = fma(d, lane,
// acc). The mins go to a separate 4-lane accumulator, lane k = mn[2k]*S[2k] + mn[2k+1]*S[2k+1]
// with S the 32-element activation sums, acc_m = fma(-d_a*dmin_w, lane, acc_m); the result is
// hsum_float_8(acc) + ((m0 + m2) + (m1 + m3)).
float dot_q4_K(int64_t nb, const BlockQ4_K* x, const BlockQ8_K* y) {
  Lanes8 acc;
  float acc_m[4] = {};
  int8_t a[kQK_K];
  int sc[8], mn[8];
  for (int64_t i = 0; i < nb; ++i) {
    const float d = y[i].d * fp16_to_fp32(x[i].d);
    const float dmin = -y[i].d * fp16_to_fp32(x[i].dmin);
    decode_q45_K(x[i], a);
    k4_scales_mins(x[i].scales, sc, mn);
    for (int k = 0; k < 4; ++k) {
      int prod = 0;
      for (int u = 2 * k; u < 2 * k + 2; ++u)
        prod += mn[u] * (y[i].bsums[2 * u] + y[i].bsums[2 * u + 1]);
      acc_m[k] = std::fma(dmin, static_cast<float>(prod), acc_m[k]);
    }
    int lane[8] = {};
    for (int j = 0; j < 4; ++j)
      for (int l = 0; l < 8; ++l)
        for (int half = 0; half < 2; ++half) {
          int s = 0;
          for (int e = 64 * j + 32 * half + 4 * l; e < 64 * j + 32 * half + 4 * l + 4; ++e)
            s += a[e] * y[i].qs[e];
          lane[l] += sc[2 * j + half] * s;
        }
    acc.fma_all(d, lane);
  }
  return acc.hsum() + ((acc_m[0] + acc_m[2]) + (acc_m[1] + acc_m[3]));
}

// ggml_vec_dot_q6_K_q8_K (x86 AVX2): per 32-element chunk (h, g) of the 128-element half h,
// lanes 0..3 take scale[8h+2g] and lanes 4..7 scale[8h+2g+1]; the -32 bias enters lane l as
// -32 * (scale[2l]*bsums[2l] + scale[2l+1]*bsums[2l+1]). acc = fma(d, lane, acc).
float dot_q6_K(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
  Lanes8 acc;
  int8_t a[kQK_K];
  for (int64_t i = 0; i < nb; ++i) {
    decode_q6_K(x[i], a);
    int lane[8];
    for (int l = 0; l < 8; ++l) {
      lane[l] = 0;
      for (int h = 0; h < 2; ++h)
        for (int g = 0; g < 4; ++g) {
          int s = 0;
          for (int e = 128 * h + 32 * g + 4 * l; e < 128 * h + 32 * g + 4 * l + 4; ++e)
            s += (a[e] + 32) * y[i].qs[e];
          lane[l] += x[i].scales[8 * h + 2 * g + (l >= 4 ? 1 : 0)] * s;
        }
      lane[l] -= 32 * (x[i].scales[2 * l] * y[i].bsums[2 * l] +
                       x[i].scales[2 * l + 1] * y[i].bsums[2 * l + 1]);
    }
    acc.fma_all(fp16_to_fp32(x[i].d) * y[i].d, lane);
  }
  return acc.hsum();
}

// Exact integer parts of one K-quant super-block against its Q8_K activation block, split per
// 64 elements (two 32-element sub-blocks, or four 16-element groups): isum = sum of scale *
// (quant . activation) with every quant offset applied, imin = sum of min * activation sum.
void k_block_ints(DType t, const void* w, const BlockQ8_K& y, detail::KBlockInts& out) {
  int8_t a[kQK_K];
  int scale[16] = {}, mins[16] = {};  // per 16-element group
  switch (t) {
    case DType::Q2_K: {
      const auto& x = *static_cast<const BlockQ2_K*>(w);
      for (int e = 0; e < kQK_K; ++e) {
        const int h = e / 128, j = (e % 128) / 32, l = e % 32;
        a[e] = static_cast<int8_t>((x.qs[32 * h + l] >> (2 * j)) & 3);
      }
      for (int g = 0; g < 16; ++g) {
        scale[g] = x.scales[g] & 0xF;
        mins[g] = x.scales[g] >> 4;
      }
      out.d = fp16_to_fp32(x.d);
      out.dmin = fp16_to_fp32(x.dmin);
      break;
    }
    case DType::Q3_K: {
      const auto& x = *static_cast<const BlockQ3_K*>(w);
      decode_q3_K(x, a);
      q3_k_scales(x.scales, scale);
      out.d = fp16_to_fp32(x.d);
      out.dmin = 0.0f;
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      int sc[8], mn[8];
      uint16_t d, dmin;
      if (t == DType::Q4_K) {
        const auto& x = *static_cast<const BlockQ4_K*>(w);
        decode_q45_K(x, a);
        k4_scales_mins(x.scales, sc, mn);
        d = x.d;
        dmin = x.dmin;
      } else {
        const auto& x = *static_cast<const BlockQ5_K*>(w);
        decode_q45_K(x, a);
        k4_scales_mins(x.scales, sc, mn);
        d = x.d;
        dmin = x.dmin;
      }
      for (int g = 0; g < 16; ++g) {
        scale[g] = sc[g / 2];
        mins[g] = mn[g / 2];
      }
      out.d = fp16_to_fp32(d);
      out.dmin = fp16_to_fp32(dmin);
      break;
    }
    case DType::Q6_K: {
      const auto& x = *static_cast<const BlockQ6_K*>(w);
      decode_q6_K(x, a);
      for (int g = 0; g < 16; ++g) scale[g] = x.scales[g];
      out.d = fp16_to_fp32(x.d);
      out.dmin = 0.0f;
      break;
    }
    default:
      KVS_CHECK(false, "k_block_ints: not a K-quant");
  }
  for (int c = 0; c < 4; ++c) {
    out.isum64[c] = 0;
    out.imin64[c] = 0;
    for (int g = 4 * c; g < 4 * c + 4; ++g) {
      int s = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) s += a[e] * y.qs[e];
      out.isum64[c] += scale[g] * s;
      out.imin64[c] += mins[g] * y.bsums[g];
    }
  }
}

void check_row(DType weight_type, int64_t n) {
  KVS_CHECK(quant_dot_supported(weight_type),
            "quant_dot: unsupported weight type " + std::string(dtype_name(weight_type)));
  const int64_t bs = dtype_traits(weight_type).block_size;
  KVS_CHECK(n >= 0 && n % bs == 0, "quant_dot: n=" + std::to_string(n) + " is not a multiple of " +
                                       std::to_string(bs) + " for " +
                                       std::string(dtype_name(weight_type)));
}

}  // namespace

void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n) {
  check_row(weight_type, n);
  switch (vec_dot_type(weight_type)) {
    case DType::F32:
      std::memcpy(dst, x, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_fp16(x[i]);
      return;
    }
    case DType::BF16: {
      auto* y = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) y[i] = fp32_to_bf16(x[i]);
      return;
    }
    case DType::Q8_0:
      return quantize_q8_0(x, static_cast<BlockQ8_0*>(dst), n / kQK);
    case DType::Q8_1:
      return quantize_q8_1(x, static_cast<BlockQ8_1*>(dst), n / kQK);
    case DType::Q8_K:
      return quantize_q8_K(x, static_cast<BlockQ8_K*>(dst), n / kQK_K);
    default:
      KVS_CHECK(false, "unreachable");
  }
}

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row) {
  check_row(weight_type, n);
  const int64_t nb = n / dtype_traits(weight_type).block_size;
  const auto* a8 = static_cast<const BlockQ8_0*>(act_row);
  const auto* a81 = static_cast<const BlockQ8_1*>(act_row);
  const auto* ak = static_cast<const BlockQ8_K*>(act_row);
  switch (weight_type) {
    case DType::F32:
      return dot_float(static_cast<const float*>(w_row), static_cast<const float*>(act_row), n,
                       [](float v) { return v; });
    case DType::F16:
      return dot_float(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act_row),
                       n, fp16_to_fp32);
    case DType::BF16:
      return dot_float(static_cast<const uint16_t*>(w_row), static_cast<const uint16_t*>(act_row),
                       n, bf16_to_fp32);
    case DType::Q4_0:
      return dot_legacy(nb, static_cast<const BlockQ4_0*>(w_row), a8,
                        [](const BlockQ4_0& b, int* q) { nibbles(b.qs, 8, q); });
    case DType::Q4_1:
      return dot_legacy_min(nb, static_cast<const BlockQ4_1*>(w_row), a81,
                            [](const BlockQ4_1& b, int* q) { nibbles(b.qs, 0, q); });
    case DType::Q5_0:
      return dot_legacy(nb, static_cast<const BlockQ5_0*>(w_row), a8,
                        [](const BlockQ5_0& b, int* q) {
                          nibbles(b.qs, 16, q);
                          add_fifth_bit(b.qh, q);
                        });
    case DType::Q5_1:
      return dot_legacy_min(nb, static_cast<const BlockQ5_1*>(w_row), a81,
                            [](const BlockQ5_1& b, int* q) {
                              nibbles(b.qs, 0, q);
                              add_fifth_bit(b.qh, q);
                            });
    case DType::Q8_0:
      return dot_legacy(nb, static_cast<const BlockQ8_0*>(w_row), a8,
                        [](const BlockQ8_0& b, int* q) {
                          for (int j = 0; j < kQK; ++j) q[j] = b.qs[j];
                        });
    case DType::Q2_K:
      return dot_q2_K(nb, static_cast<const BlockQ2_K*>(w_row), ak);
    case DType::Q3_K:
      return dot_q3_K(nb, static_cast<const BlockQ3_K*>(w_row), ak);
    case DType::Q4_K:
      return dot_q4_K(nb, static_cast<const BlockQ4_K*>(w_row), ak);
    case DType::Q5_K:
      return dot_q5_K(nb, static_cast<const BlockQ5_K*>(w_row), ak);
    case DType::Q6_K:
      return dot_q6_K(nb, static_cast<const BlockQ6_K*>(w_row), ak);
    default:
      KVS_CHECK(false, "unreachable");
  }
}

float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel) {
  if (kernel == DotKernel::kVecDot || !detail::is_k_quant(weight_type))
    return ref::vec_dot(weight_type, n, w_row, act_row);
  check_row(weight_type, n);
  const size_t wbytes = dtype_traits(weight_type).block_bytes;
  const auto* w = static_cast<const uint8_t*>(w_row);
  const auto* y = static_cast<const BlockQ8_K*>(act_row);
  detail::KAccum acc;
  detail::KBlockInts b;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    k_block_ints(weight_type, w + i * wbytes, y[i], b);
    acc.add(kernel, b, y[i].d);
  }
  return acc.result(kernel);
}

}  // namespace ref

namespace detail {
void k_block_ints_scalar(DType weight_type, const void* w_block, const BlockQ8_K& a,
                         KBlockInts& out) {
  ref::k_block_ints(weight_type, w_block, a, out);
}
}  // namespace detail

}  // namespace kvs
