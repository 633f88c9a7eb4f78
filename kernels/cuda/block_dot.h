#pragma once
// The decode GEMV's block math, shared by the device (kernels/cuda/matmul.cu) and the host,
// so that tests/unit/kernels/test_cuda_block_dot.cpp checks it against the CPU kernels on a
// machine without a GPU.
//
// Activations are quantized to the weight type's vec_dot_type exactly as the CPU does
// (kernels/cpu/quant_dot.cpp: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the
// K-quants; same bytes), so each 32-element unit's integer sum equals the CPU's and only the
// float combination of the units differs in order. A unit is one block of a legacy type or
// one 32-element sub-block of a K-quant super-block, so a row of K elements has K / 32 units
// for every type and a warp's lanes can share even short rows.
//
// Blocks are read in 16-bit halves: every block size here is even and rows start at even
// addresses (matmul checks the weight pointer), but few blocks are 4-byte aligned.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/core/dtype.h"
#include "kernels/core/half.h"
#include "kernels/cuda/host_device.h"

namespace kvs::cuda::bd {

// Bytes per block of each format (the static_asserts in matmul.cu and the host test pin them
// to quant_blocks.h / quant_dot.h).
inline constexpr int kQ4_0 = 18, kQ4_1 = 20, kQ5_0 = 22, kQ5_1 = 24, kQ8_0 = 34;
inline constexpr int kQ2_K = 84, kQ3_K = 110, kQ4_K = 144, kQ5_K = 176, kQ6_K = 210;
inline constexpr int kA8_0 = 34, kA8_1 = 36, kA8_K = 292;  // activation blocks Q8_0/Q8_1/Q8_K

KVS_HD float f16_at(const uint8_t* p) {  // p: 2-byte aligned (every f16 field here is)
  const uint16_t h = *reinterpret_cast<const uint16_t*>(p);
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h));
#else
  return fp16_to_fp32(h);
#endif
}

KVS_HD uint16_t to_f16_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __half_as_ushort(__float2half_rn(f));
#else
  return fp32_to_fp16(f);
#endif
}

// Round half to even, as the CPU quantizers (std::nearbyint under the default mode).
KVS_HD int nearest(float v) {
#if defined(__CUDA_ARCH__)
  return __float2int_rn(v);
#else
  return static_cast<int>(std::nearbyint(v));
#endif
}

KVS_HD uint32_t ld32(const uint8_t* p) {  // p: 2-byte aligned
  const auto* h = reinterpret_cast<const uint16_t*>(p);
  return static_cast<uint32_t>(h[0]) | (static_cast<uint32_t>(h[1]) << 16);
}

KVS_HD int16_t ld_i16(const uint8_t* p) {  // p: 2-byte aligned
  return *reinterpret_cast<const int16_t*>(p);
}

KVS_HD float ld_f32(const uint8_t* p) {  // p: 4-byte aligned
  return *reinterpret_cast<const float*>(p);
}

// Sum of the four signed byte products of a and b, plus c (the dp4a instruction).
KVS_HD int dp4a(uint32_t a, uint32_t b, int c) {
#if defined(__CUDA_ARCH__)
  return __dp4a(static_cast<int>(a), static_cast<int>(b), c);
#else
  for (int i = 0; i < 4; ++i)
    c += static_cast<int8_t>(a >> (8 * i)) * static_cast<int8_t>(b >> (8 * i));
  return c;
#endif
}

// Bits 0..3 of b moved to bit 4 of bytes 0..3 (Q5's fifth bits for four elements).
KVS_HD uint32_t spread4(uint32_t b) {
  return ((b & 1u) << 4) | ((b & 2u) << 11) | ((b & 4u) << 18) | ((b & 8u) << 25);
}

// ---- activation quantizers: the CPU's (quant_dot.cpp ref::quantize_*) bit for bit. The
// device quantizes with a warp per block (matmul.cu's quantize_act_kernel); these serial forms
// are its twins, tested on the host here and against the device in tests/cuda ----

// One Q8_0 (with_sum = false) or Q8_1 block of 32 floats.
KVS_HD void quantize_block32(const float* x, uint8_t* out, bool with_sum) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  const uint16_t dh = to_f16_bits(d);
  out[0] = static_cast<uint8_t>(dh);
  out[1] = static_cast<uint8_t>(dh >> 8);
  uint8_t* qs = out + (with_sum ? 4 : 2);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    const int q = nearest(x[j] * id);
    qs[j] = static_cast<uint8_t>(static_cast<int8_t>(q));
    sum += q;
  }
  if (with_sum) {
    const uint16_t sh = to_f16_bits(static_cast<float>(sum) * d);
    out[2] = static_cast<uint8_t>(sh);
    out[3] = static_cast<uint8_t>(sh >> 8);
  }
}

// One Q8_K block of 256 floats: f32 d at 0, 256 quants at 4, 16 int16 sums at 260.
KVS_HD void quantize_block_q8_K(const float* x, uint8_t* out) {
  float max = 0.0f, amax = 0.0f;
  for (int j = 0; j < 256; ++j) {
    const float ax = fabsf(x[j]);
    if (ax > amax) {
      amax = ax;
      max = x[j];
    }
  }
  int8_t* qs = reinterpret_cast<int8_t*>(out + 4);
  int16_t* bsums = reinterpret_cast<int16_t*>(out + 260);
  if (amax == 0.0f) {
    for (int j = 0; j < kA8_K; ++j) out[j] = 0;
    return;
  }
  const float iscale = -127.0f / max;
  for (int j = 0; j < 256; ++j) {
    const int v = nearest(iscale * x[j]);
    qs[j] = static_cast<int8_t>(v < 127 ? v : 127);
  }
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += qs[16 * g + l];
    bsums[g] = static_cast<int16_t>(sum);
  }
  const float d = 1.0f / iscale;
  *reinterpret_cast<float*>(out) = d;
}

// ---- unit dots: unit u (32 elements) of a weight row times the same unit of an activation
// row in the weight type's vec_dot_type ----

template <DType kT>
KVS_HD float unit_dot(const uint8_t* w, const uint8_t* a, int u);

// Sum over the 32 quants of a legacy activation block at aq: the 4-byte groups 0..3 pair
// with the weight's low nibbles (elements 0..15), 4..7 with the high ones.
template <>
KVS_HD float unit_dot<DType::Q4_0>(const uint8_t* w, const uint8_t* a, int u) {
  const uint8_t* b = w + u * kQ4_0;
  const uint8_t* ab = a + u * kA8_0;
  int sumi = 0, suma = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = ld32(b + 2 + 4 * i);
    const uint32_t a_lo = ld32(ab + 2 + 4 * i), a_hi = ld32(ab + 18 + 4 * i);
    sumi = dp4a(v & 0x0F0F0F0Fu, a_lo, sumi);
    sumi = dp4a((v >> 4) & 0x0F0F0F0Fu, a_hi, sumi);
    suma = dp4a(0x01010101u, a_lo, suma);
    suma = dp4a(0x01010101u, a_hi, suma);
  }
  return f16_at(b) * f16_at(ab) * static_cast<float>(sumi - 8 * suma);
}

template <>
KVS_HD float unit_dot<DType::Q4_1>(const uint8_t* w, const uint8_t* a, int u) {
  const uint8_t* b = w + u * kQ4_1;
  const uint8_t* ab = a + u * kA8_1;
  int sumi = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = ld32(b + 4 + 4 * i);
    sumi = dp4a(v & 0x0F0F0F0Fu, ld32(ab + 4 + 4 * i), sumi);
    sumi = dp4a((v >> 4) & 0x0F0F0F0Fu, ld32(ab + 20 + 4 * i), sumi);
  }
  return f16_at(b) * f16_at(ab) * static_cast<float>(sumi) + f16_at(b + 2) * f16_at(ab + 2);
}

template <>
KVS_HD float unit_dot<DType::Q5_0>(const uint8_t* w, const uint8_t* a, int u) {
  const uint8_t* b = w + u * kQ5_0;
  const uint8_t* ab = a + u * kA8_0;
  const uint32_t qh = ld32(b + 2);
  int sumi = 0, suma = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = ld32(b + 6 + 4 * i);
    const uint32_t lo = (v & 0x0F0F0F0Fu) | spread4((qh >> (4 * i)) & 0xFu);
    const uint32_t hi = ((v >> 4) & 0x0F0F0F0Fu) | spread4((qh >> (16 + 4 * i)) & 0xFu);
    const uint32_t a_lo = ld32(ab + 2 + 4 * i), a_hi = ld32(ab + 18 + 4 * i);
    sumi = dp4a(lo, a_lo, sumi);
    sumi = dp4a(hi, a_hi, sumi);
    suma = dp4a(0x01010101u, a_lo, suma);
    suma = dp4a(0x01010101u, a_hi, suma);
  }
  return f16_at(b) * f16_at(ab) * static_cast<float>(sumi - 16 * suma);
}

template <>
KVS_HD float unit_dot<DType::Q5_1>(const uint8_t* w, const uint8_t* a, int u) {
  const uint8_t* b = w + u * kQ5_1;
  const uint8_t* ab = a + u * kA8_1;
  const uint32_t qh = ld32(b + 4);
  int sumi = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t v = ld32(b + 8 + 4 * i);
    const uint32_t lo = (v & 0x0F0F0F0Fu) | spread4((qh >> (4 * i)) & 0xFu);
    const uint32_t hi = ((v >> 4) & 0x0F0F0F0Fu) | spread4((qh >> (16 + 4 * i)) & 0xFu);
    sumi = dp4a(lo, ld32(ab + 4 + 4 * i), sumi);
    sumi = dp4a(hi, ld32(ab + 20 + 4 * i), sumi);
  }
  return f16_at(b) * f16_at(ab) * static_cast<float>(sumi) + f16_at(b + 2) * f16_at(ab + 2);
}

template <>
KVS_HD float unit_dot<DType::Q8_0>(const uint8_t* w, const uint8_t* a, int u) {
  const uint8_t* b = w + u * kQ8_0;
  const uint8_t* ab = a + u * kA8_0;
  int sumi = 0;
  for (int i = 0; i < 8; ++i) sumi = dp4a(ld32(b + 2 + 4 * i), ld32(ab + 2 + 4 * i), sumi);
  return f16_at(b) * f16_at(ab) * static_cast<float>(sumi);
}

// ggml's get_scale_min_k4: the 6-bit scale and min of sub-block j of a Q4_K/Q5_K block.
KVS_HD void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K / Q5_K sub-block j of super-block sb: d * sc * sum(q * a) - dmin * m * sum(a), times
// the activation's d (bsums hold the sums of its 16-element halves).
template <bool kFifthBit>
KVS_HD float unit_dot_q45_K(const uint8_t* w, const uint8_t* a, int u) {
  const int sb = u >> 3, j = u & 7;
  const uint8_t* b = w + sb * (kFifthBit ? kQ5_K : kQ4_K);
  const uint8_t* ab = a + sb * kA8_K;
  const uint8_t* qs = b + (kFifthBit ? 48 : 16) + 32 * (j / 2);
  const uint8_t* aq = ab + 4 + 32 * j;
  const int shift = 4 * (j & 1);
  int sumi = 0;
  for (int i = 0; i < 8; ++i) {
    uint32_t v = (ld32(qs + 4 * i) >> shift) & 0x0F0F0F0Fu;
    if constexpr (kFifthBit) v |= ((ld32(b + 16 + 4 * i) >> j) & 0x01010101u) << 4;
    sumi = dp4a(v, ld32(aq + 4 * i), sumi);
  }
  int sc, m;
  scale_min_k4(j, b + 4, sc, m);
  const int bsum = ld_i16(ab + 260 + 4 * j) + ld_i16(ab + 262 + 4 * j);
  const float da = ld_f32(ab);
  return da *
         (f16_at(b) * static_cast<float>(sc * sumi) - f16_at(b + 2) * static_cast<float>(m * bsum));
}

template <>
KVS_HD float unit_dot<DType::Q4_K>(const uint8_t* w, const uint8_t* a, int u) {
  return unit_dot_q45_K<false>(w, a, u);
}

template <>
KVS_HD float unit_dot<DType::Q5_K>(const uint8_t* w, const uint8_t* a, int u) {
  return unit_dot_q45_K<true>(w, a, u);
}

// Q6_K sub-block j: quants (low 4 bits | high 2 bits << 4) - 32, one int8 scale per 16.
template <>
KVS_HD float unit_dot<DType::Q6_K>(const uint8_t* w, const uint8_t* a, int u) {
  const int sb = u >> 3, j = u & 7;
  const uint8_t* b = w + sb * kQ6_K;
  const uint8_t* ab = a + sb * kA8_K;
  const int h = j / 4, g = j % 4;
  const uint8_t* ql = b + 64 * h + 32 * (g & 1);
  const uint8_t* qh = b + 128 + 32 * h;
  const uint8_t* aq = ab + 4 + 32 * j;
  const int shift_l = 4 * (g >> 1), shift_h = 2 * g;
  int s[2] = {0, 0};
  for (int i = 0; i < 8; ++i) {
    const uint32_t v = ((ld32(ql + 4 * i) >> shift_l) & 0x0F0F0F0Fu) |
                       (((ld32(qh + 4 * i) >> shift_h) & 0x03030303u) << 4);
    s[i / 4] = dp4a(v, ld32(aq + 4 * i), s[i / 4]);
  }
  const int bs0 = ld_i16(ab + 260 + 4 * j), bs1 = ld_i16(ab + 262 + 4 * j);
  const auto sc0 = static_cast<int8_t>(b[192 + 2 * j]), sc1 = static_cast<int8_t>(b[193 + 2 * j]);
  const int sumi = sc0 * (s[0] - 32 * bs0) + sc1 * (s[1] - 32 * bs1);
  return f16_at(b + 208) * ld_f32(ab) * static_cast<float>(sumi);
}

// Whether the GEMV reads this weight type through unit_dot (the others dequantize to f32).
KVS_HD bool has_unit_dot(DType t) {
  return t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 || t == DType::Q5_1 ||
         t == DType::Q8_0 || t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K;
}

// The activation format a weight type's units are dotted with, and its bytes per element
// block: {block elements, block bytes}.
KVS_HD void activation_block(DType t, int& elems, int& bytes) {
  switch (t) {
    case DType::Q4_1:
    case DType::Q5_1:
      elems = 32, bytes = kA8_1;
      return;
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      elems = 256, bytes = kA8_K;
      return;
    default:
      elems = 32, bytes = kA8_0;
      return;
  }
}

// Host-side dispatch (tests; the device kernels are instantiated per type).
inline float unit_dot_any(DType t, const uint8_t* w, const uint8_t* a, int u) {
  switch (t) {
    case DType::Q4_0:
      return unit_dot<DType::Q4_0>(w, a, u);
    case DType::Q4_1:
      return unit_dot<DType::Q4_1>(w, a, u);
    case DType::Q5_0:
      return unit_dot<DType::Q5_0>(w, a, u);
    case DType::Q5_1:
      return unit_dot<DType::Q5_1>(w, a, u);
    case DType::Q8_0:
      return unit_dot<DType::Q8_0>(w, a, u);
    case DType::Q4_K:
      return unit_dot<DType::Q4_K>(w, a, u);
    case DType::Q5_K:
      return unit_dot<DType::Q5_K>(w, a, u);
    case DType::Q6_K:
      return unit_dot<DType::Q6_K>(w, a, u);
    default:
      return NAN;
  }
}

// Activation row of n floats (n a multiple of the block) in the format t's units read.
inline void quantize_activation_row(DType t, const float* x, uint8_t* out, int64_t n) {
  int elems, bytes;
  activation_block(t, elems, bytes);
  for (int64_t i = 0; i < n / elems; ++i) {
    if (elems == 256)
      quantize_block_q8_K(x + i * 256, out + i * bytes);
    else
      quantize_block32(x + i * 32, out + i * bytes, bytes == kA8_1);
  }
}

}  // namespace kvs::cuda::bd
