#include "kernels/cpu/quant_dot.h"

#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "kernels/core/error.h"
#include "kernels/core/half.h"

// The reference twins follow ggml's generic C, which is compiled without FP contraction; a
// fused multiply-add would round the per-block terms differently.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kvs {

bool quant_dot_supported(DType weight_type) {
  switch (weight_type) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
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

namespace ref {
namespace {

// ggml's nearest_int: round half to even (the float magic-number trick under the default
// rounding mode), valid for |v| < 2^22.
int nearest_int(float v) {
  return static_cast<int>(std::nearbyint(v));
}

void quantize_q8_0(const float* x, BlockQ8_0* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void quantize_q8_1(const float* x, BlockQ8_1* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += y[i].qs[j];
    }
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

float dot_q4_0(int64_t nb, const BlockQ4_0* x, const BlockQ8_0* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += ((x[i].qs[j] & 0x0F) - 8) * y[i].qs[j];
      sumi1 += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + kQK / 2];
    }
    sumf += static_cast<float>(sumi0 + sumi1) * fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d);
  }
  return sumf;
}

float dot_q4_1(int64_t nb, const BlockQ4_1* x, const BlockQ8_1* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      sumi0 += (x[i].qs[j] & 0x0F) * y[i].qs[j];
      sumi1 += (x[i].qs[j] >> 4) * y[i].qs[j + kQK / 2];
    }
    sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi0 + sumi1) +
            fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sumf;
}

uint32_t load_qh(const uint8_t* qh) {
  uint32_t v;
  std::memcpy(&v, qh, sizeof(v));
  return v;
}

float dot_q5_0(int64_t nb, const BlockQ5_0* x, const BlockQ8_0* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const uint32_t qh = load_qh(x[i].qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) & 1) << 4;
      const int h1 = ((qh >> (j + 16)) & 1) << 4;
      sumi0 += (((x[i].qs[j] & 0x0F) | h0) - 16) * y[i].qs[j];
      sumi1 += (((x[i].qs[j] >> 4) | h1) - 16) * y[i].qs[j + kQK / 2];
    }
    sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi0 + sumi1);
  }
  return sumf;
}

float dot_q5_1(int64_t nb, const BlockQ5_1* x, const BlockQ8_1* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    const uint32_t qh = load_qh(x[i].qh);
    int sumi0 = 0, sumi1 = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = ((qh >> j) & 1) << 4;
      const int h1 = ((qh >> (j + 16)) & 1) << 4;
      sumi0 += ((x[i].qs[j] & 0x0F) | h0) * y[i].qs[j];
      sumi1 += ((x[i].qs[j] >> 4) | h1) * y[i].qs[j + kQK / 2];
    }
    sumf += (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d)) * static_cast<float>(sumi0 + sumi1) +
            fp16_to_fp32(x[i].m) * fp16_to_fp32(y[i].s);
  }
  return sumf;
}

float dot_q8_0(int64_t nb, const BlockQ8_0* x, const BlockQ8_0* y) {
  float sumf = 0.0f;
  for (int64_t i = 0; i < nb; ++i) {
    int sumi = 0;
    for (int j = 0; j < kQK; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sumf += static_cast<float>(sumi) * (fp16_to_fp32(x[i].d) * fp16_to_fp32(y[i].d));
  }
  return sumf;
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
// adding the lanes only at the end. Reproducing that keeps the float rounding identical.
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

float dot_q3_K(int64_t nb, const BlockQ3_K* x, const BlockQ8_K* y) {
  KLanes lanes;
  int8_t a[kQK_K];  // [256] quants in -4..3
  int scale[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      const int q2 = (x[i].qs[32 * h + l] >> (2 * j)) & 3;
      const bool hb = (x[i].hmask[l] >> (4 * h + j)) & 1;
      a[e] = static_cast<int8_t>(q2 - (hb ? 0 : 4));
    }
    q3_k_scales(x[i].scales, scale);
    lanes.add(a, scale, y[i].qs, fp16_to_fp32(x[i].d) * y[i].d);
  }
  return lanes.finish(0.0f);
}

// Q4_K and Q5_K share everything but the fifth bit.
template <typename Block>
float dot_q45_K(int64_t nb, const Block* x, const BlockQ8_K* y) {
  KLanes lanes;
  float sumf = 0.0f;
  int8_t a[kQK_K];  // [256] quants in 0..15 (0..31 for Q5_K)
  int sc[8], mn[8], scale[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK_K; ++e) {
      const int c = e / 64, l = e % 32, sub = e / 32;
      const uint8_t byte = x[i].qs[32 * c + l];
      int q = (sub % 2 == 0) ? (byte & 0xF) : (byte >> 4);
      if constexpr (std::is_same_v<Block, BlockQ5_K>) q += ((x[i].qh[l] >> sub) & 1) << 4;
      a[e] = static_cast<int8_t>(q);
    }
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

float dot_q6_K(int64_t nb, const BlockQ6_K* x, const BlockQ8_K* y) {
  KLanes lanes;
  int8_t a[kQK_K];  // [256] quants in -32..31
  int scale[16];
  for (int64_t i = 0; i < nb; ++i) {
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const int low4 = (x[i].ql[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 15;
      const int hi2 = (x[i].qh[32 * h + l] >> (2 * g)) & 3;
      a[e] = static_cast<int8_t>((low4 | (hi2 << 4)) - 32);
    }
    for (int g = 0; g < 16; ++g) scale[g] = x[i].scales[g];
    lanes.add(a, scale, y[i].qs, fp16_to_fp32(x[i].d) * y[i].d);
  }
  return lanes.finish(0.0f);
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
      return dot_q45_K(nb, static_cast<const BlockQ4_K*>(w_row), ak);
    case DType::Q5_K:
      return dot_q45_K(nb, static_cast<const BlockQ5_K*>(w_row), ak);
    case DType::Q6_K:
      return dot_q6_K(nb, static_cast<const BlockQ6_K*>(w_row), ak);
    default:
      KVS_CHECK(false, "unreachable");
  }
}

}  // namespace ref
}  // namespace kvs
