// Reference (scalar) dequantization and quantization of ggml blocks. The arithmetic follows
// ggml-quants.c operation by operation so results are bit-exact with ggml and gguf-py.
#include "kernels/core/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/core/quant_blocks.h"

// ggml's C reference is compiled without FP contraction; a fused multiply-add here would
// round differently (e.g. q*d + m in Q4_1) and break bit-exactness with ggml and gguf-py.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace kvs {
namespace {

// Blocks are copied out of the source: weight data in a mapping is only as aligned as the
// file's tensor alignment, and memcpy keeps the reads free of alignment and aliasing UB.
template <class Block>
Block load_block(const void* src, int64_t i) {
  Block b;
  std::memcpy(&b, static_cast<const uint8_t*>(src) + i * static_cast<int64_t>(sizeof(Block)),
              sizeof(Block));
  return b;
}

template <class Block>
void store_block(void* dst, int64_t i, const Block& b) {
  std::memcpy(static_cast<uint8_t*>(dst) + i * static_cast<int64_t>(sizeof(Block)), &b,
              sizeof(Block));
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- legacy 32-element blocks ----

void dequant_q4_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ4_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>((b.qs[j] & 0x0F) - 8) * d;
      y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ4_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(b.qs[j] & 0x0F) * d + m;
      y[j + kQK / 2] = static_cast<float>(b.qs[j] >> 4) * d + m;
    }
  }
}

void dequant_q5_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ5_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = static_cast<float>(((b.qs[j] & 0x0F) | h0) - 16) * d;
      y[j + kQK / 2] = static_cast<float>(((b.qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

void dequant_q5_1(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ5_1>(src, i);
    const float d = fp16_to_fp32(b.d), m = fp16_to_fp32(b.m);
    const uint32_t qh = load_u32(b.qh);
    for (int j = 0; j < kQK / 2; ++j) {
      const int h0 = static_cast<int>((qh >> j) & 1u) << 4;
      const int h1 = static_cast<int>((qh >> (j + 16)) & 1u) << 4;
      y[j] = static_cast<float>((b.qs[j] & 0x0F) | h0) * d + m;
      y[j + kQK / 2] = static_cast<float>((b.qs[j] >> 4) | h1) * d + m;
    }
  }
}

void dequant_q8_0(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK) {
    const auto b = load_block<BlockQ8_0>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
  }
}

// ---- K-quants (256-element super-blocks) ----

void dequant_q2_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ2_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32, s = e / 16;
      const float dl = d * static_cast<float>(b.scales[s] & 0x0F);
      const float ml = dmin * static_cast<float>(b.scales[s] >> 4);
      const int q = (b.qs[32 * h + l] >> (2 * j)) & 3;
      y[e] = dl * static_cast<float>(q) - ml;
    }
  }
}

void dequant_q3_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ3_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    int scale[16];  // [sub-block] six-bit scale, biased by -32
    for (int s = 0; s < 16; ++s) {
      const int low4 = s < 8 ? (b.scales[s] & 0x0F) : (b.scales[s - 8] >> 4);
      const int high2 = (b.scales[8 + s % 4] >> (2 * (s / 4))) & 3;
      scale[s] = (low4 | (high2 << 4)) - 32;
    }
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, j = (e % 128) / 32, l = e % 32;
      const int q2 = (b.qs[32 * h + l] >> (2 * j)) & 3;
      const int hb = (b.hmask[l] >> (4 * h + j)) & 1;
      const float dl = d * static_cast<float>(scale[e / 16]);
      y[e] = dl * static_cast<float>(q2 - (hb ? 0 : 4));
    }
  }
}

// The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4).
void scale_min_k4(int j, const uint8_t* q, int& sc, int& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

void dequant_q4_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ4_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int sb = 0; sb < 8; ++sb) {
      int sc, m;
      scale_min_k4(sb, b.scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const int shift = 4 * (sb & 1);
      for (int l = 0; l < 32; ++l) {
        const int q = (b.qs[32 * (sb / 2) + l] >> shift) & 0x0F;
        y[32 * sb + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}

void dequant_q5_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ5_K>(src, i);
    const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
    for (int sb = 0; sb < 8; ++sb) {
      int sc, m;
      scale_min_k4(sb, b.scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
      const int shift = 4 * (sb & 1);
      for (int l = 0; l < 32; ++l) {
        const int q = ((b.qs[32 * (sb / 2) + l] >> shift) & 0x0F) | (((b.qh[l] >> sb) & 1) << 4);
        y[32 * sb + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}

void dequant_q6_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ6_K>(src, i);
    const float d = fp16_to_fp32(b.d);
    for (int e = 0; e < kQK_K; ++e) {
      const int h = e / 128, g = (e % 128) / 32, l = e % 32;
      const int low4 = (b.ql[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0x0F;
      const int hi2 = (b.qh[32 * h + l] >> (2 * g)) & 3;
      const int q = (low4 | (hi2 << 4)) - 32;
      y[e] = d * static_cast<float>(b.scales[e / 16]) * static_cast<float>(q);
    }
  }
}

void dequant_q8_k(const void* src, float* y, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, y += kQK_K) {
    const auto b = load_block<BlockQ8_K>(src, i);
    for (int j = 0; j < kQK_K; ++j) y[j] = b.d * static_cast<float>(b.qs[j]);
  }
}

// ---- reference quantizers (ggml's quantize_row_*_ref) ----

// Signed value of largest magnitude (the first on ties), as ggml picks it.
float signed_absmax(const float* x, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void quant_q4_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_0 b;
    b.d = fp32_to_fp16(d);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[j + kQK / 2] * id;
      const auto q0 =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 8.5f))));
      const auto q1 =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 8.5f))));
      b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
    store_block(dst, i, b);
  }
}

void min_max(const float* x, int n, float& mn, float& mx) {
  mn = std::numeric_limits<float>::max();
  mx = -std::numeric_limits<float>::max();
  for (int j = 0; j < n; ++j) {
    if (x[j] < mn) mn = x[j];
    if (x[j] > mx) mx = x[j];
  }
}

void quant_q4_1(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float mn, mx;
    min_max(x, kQK, mn, mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ4_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(mn);
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (x[j] - mn) * id, x1 = (x[j + kQK / 2] - mn) * id;
      const auto q0 =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x0 + 0.5f))));
      const auto q1 =
          static_cast<uint8_t>(std::min(15, static_cast<int>(static_cast<int8_t>(x1 + 0.5f))));
      b.qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
    store_block(dst, i, b);
  }
}

void quant_q5_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    const float d = signed_absmax(x, kQK) / -16;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_0 b;
    b.d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = x[j] * id, x1 = x[j + kQK / 2] * id;
      const int q0 = std::min(31, static_cast<int>(static_cast<int8_t>(x0 + 16.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<int8_t>(x1 + 16.5f)));
      b.qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
    store_block(dst, i, b);
  }
}

void quant_q5_1(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float mn, mx;
    min_max(x, kQK, mn, mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ5_1 b;
    b.d = fp32_to_fp16(d);
    b.m = fp32_to_fp16(mn);
    uint32_t qh = 0;
    for (int j = 0; j < kQK / 2; ++j) {
      const float x0 = (x[j] - mn) * id, x1 = (x[j + kQK / 2] - mn) * id;
      // (x-min)*id can exceed 31 by an ulp; ggml's uint8 cast then still yields 31.
      const int q0 = std::min(31, static_cast<int>(static_cast<uint8_t>(x0 + 0.5f)));
      const int q1 = std::min(31, static_cast<int>(static_cast<uint8_t>(x1 + 0.5f)));
      b.qs[j] = static_cast<uint8_t>((q0 & 0x0F) | ((q1 & 0x0F) << 4));
      qh |= static_cast<uint32_t>((q0 & 0x10) >> 4) << j;
      qh |= static_cast<uint32_t>((q1 & 0x10) >> 4) << (j + 16);
    }
    std::memcpy(b.qh, &qh, 4);
    store_block(dst, i, b);
  }
}

void quant_q8_0(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK) {
    float amax = 0.0f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    BlockQ8_0 b;
    b.d = fp32_to_fp16(d);
    // roundf: halves away from zero, as ggml.
    for (int j = 0; j < kQK; ++j) b.qs[j] = static_cast<int8_t>(std::round(x[j] * id));
    store_block(dst, i, b);
  }
}

void quant_q8_k(const float* x, void* dst, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i, x += kQK_K) {
    BlockQ8_K b{};  // all-zero input keeps zero bsums (ggml leaves them unset)
    const float max = signed_absmax(x, kQK_K);
    if (max != 0.0f) {
      const float iscale = -127.0f / max;
      // nearbyint rounds halves to even, like ggml's nearest_int in this range.
      for (int j = 0; j < kQK_K; ++j)
        b.qs[j] =
            static_cast<int8_t>(std::min(127, static_cast<int>(std::nearbyint(iscale * x[j]))));
      for (int g = 0; g < kQK_K / 16; ++g) {
        int sum = 0;
        for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
        b.bsums[g] = static_cast<int16_t>(sum);
      }
      b.d = 1 / iscale;
    }
    store_block(dst, i, b);
  }
}

}  // namespace

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  const DTypeTraits& tr = dtype_traits(t);
  KVS_CHECK(n >= 0 && n % tr.block_size == 0, "dequantize_row: n=" + std::to_string(n) +
                                                  " is not a multiple of the " +
                                                  std::string(tr.name) + " block size");
  const int64_t nb = n / tr.block_size;
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, static_cast<const uint8_t*>(src) + 2 * i, 2);
        dst[i] = fp16_to_fp32(h);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, static_cast<const uint8_t*>(src) + 2 * i, 2);
        dst[i] = bf16_to_fp32(h);
      }
      return;
    case DType::Q4_0:
      return dequant_q4_0(src, dst, nb);
    case DType::Q4_1:
      return dequant_q4_1(src, dst, nb);
    case DType::Q5_0:
      return dequant_q5_0(src, dst, nb);
    case DType::Q5_1:
      return dequant_q5_1(src, dst, nb);
    case DType::Q8_0:
      return dequant_q8_0(src, dst, nb);
    case DType::Q2_K:
      return dequant_q2_k(src, dst, nb);
    case DType::Q3_K:
      return dequant_q3_k(src, dst, nb);
    case DType::Q4_K:
      return dequant_q4_k(src, dst, nb);
    case DType::Q5_K:
      return dequant_q5_k(src, dst, nb);
    case DType::Q6_K:
      return dequant_q6_k(src, dst, nb);
    case DType::Q8_K:
      return dequant_q8_k(src, dst, nb);
    default:
      throw Error("cannot dequantize tensor type " + std::string(tr.name));
  }
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  const DTypeTraits& tr = dtype_traits(t);
  KVS_CHECK(n >= 0 && n % tr.block_size == 0, "quantize_row: n=" + std::to_string(n) +
                                                  " is not a multiple of the " +
                                                  std::string(tr.name) + " block size");
  const int64_t nb = n / tr.block_size;
  auto* out = static_cast<uint8_t*>(dst);
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_fp16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = fp32_to_bf16(src[i]);
        std::memcpy(out + 2 * i, &h, 2);
      }
      return;
    case DType::Q4_0:
      return quant_q4_0(src, dst, nb);
    case DType::Q4_1:
      return quant_q4_1(src, dst, nb);
    case DType::Q5_0:
      return quant_q5_0(src, dst, nb);
    case DType::Q5_1:
      return quant_q5_1(src, dst, nb);
    case DType::Q8_0:
      return quant_q8_0(src, dst, nb);
    case DType::Q8_K:
      return quant_q8_k(src, dst, nb);
    default:
      throw Error("quantizing to " + std::string(tr.name) +
                  " is not supported (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                  "Q8_K)");
  }
}

}  // namespace kvs
