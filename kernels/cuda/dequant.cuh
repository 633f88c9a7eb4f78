#pragma once
// Element e of a row of GGUF blocks, dequantized on the device: the device twin of
// kernels/core/quant.cpp's dequantize_row (same formulas, byte offsets of quant_blocks.h,
// pinned by the static_asserts in matmul.cu). Bytes are read one by one, so blocks need no
// alignment.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "kernels/core/dtype.h"
#include "kernels/cuda/block_dot.h"

namespace kvs::cuda {

namespace blk = bd;

__device__ __forceinline__ float ld_f16(const uint8_t* p) {
  const unsigned short bits = static_cast<unsigned short>(p[0] | (p[1] << 8));
  return __half2float(__ushort_as_half(bits));
}

__device__ __forceinline__ float ld_bf16(const uint8_t* p) {
  const unsigned int bits = static_cast<unsigned int>(p[0] | (p[1] << 8));
  return __uint_as_float(bits << 16);
}

using bd::scale_min_k4;

__device__ __forceinline__ float dequant_elem(DType t, const uint8_t* row, int64_t e) {
  switch (t) {
    case DType::F32: {
      float f;
      memcpy(&f, row + 4 * e, 4);
      return f;
    }
    case DType::F16:
      return ld_f16(row + 2 * e);
    case DType::BF16:
      return ld_bf16(row + 2 * e);
    case DType::Q4_0: {
      const uint8_t* b = row + (e / 32) * blk::kQ4_0;
      const int j = static_cast<int>(e % 32);
      const int q = j < 16 ? (b[2 + j] & 0x0F) : (b[2 + j - 16] >> 4);
      return static_cast<float>(q - 8) * ld_f16(b);
    }
    case DType::Q4_1: {
      const uint8_t* b = row + (e / 32) * blk::kQ4_1;
      const int j = static_cast<int>(e % 32);
      const int q = j < 16 ? (b[4 + j] & 0x0F) : (b[4 + j - 16] >> 4);
      return static_cast<float>(q) * ld_f16(b) + ld_f16(b + 2);
    }
    case DType::Q5_0: {
      const uint8_t* b = row + (e / 32) * blk::kQ5_0;
      const int j = static_cast<int>(e % 32);
      const int hb = (b[2 + j / 8] >> (j % 8)) & 1;
      const int lo = j < 16 ? (b[6 + j] & 0x0F) : (b[6 + j - 16] >> 4);
      return static_cast<float>((lo | (hb << 4)) - 16) * ld_f16(b);
    }
    case DType::Q5_1: {
      const uint8_t* b = row + (e / 32) * blk::kQ5_1;
      const int j = static_cast<int>(e % 32);
      const int hb = (b[4 + j / 8] >> (j % 8)) & 1;
      const int lo = j < 16 ? (b[8 + j] & 0x0F) : (b[8 + j - 16] >> 4);
      return static_cast<float>(lo | (hb << 4)) * ld_f16(b) + ld_f16(b + 2);
    }
    case DType::Q8_0: {
      const uint8_t* b = row + (e / 32) * blk::kQ8_0;
      return static_cast<float>(static_cast<int8_t>(b[2 + e % 32])) * ld_f16(b);
    }
    case DType::Q2_K: {
      const uint8_t* b = row + (e / 256) * blk::kQ2_K;
      const int i = static_cast<int>(e % 256);
      const int h = i / 128, j = (i % 128) / 32, l = i % 32, s = i / 16;
      const uint8_t sc = b[s];
      const int q = (b[16 + 32 * h + l] >> (2 * j)) & 3;
      return ld_f16(b + 80) * static_cast<float>(sc & 0x0F) * static_cast<float>(q) -
             ld_f16(b + 82) * static_cast<float>(sc >> 4);
    }
    case DType::Q3_K: {
      const uint8_t* b = row + (e / 256) * blk::kQ3_K;
      const int i = static_cast<int>(e % 256);
      const int h = i / 128, j = (i % 128) / 32, l = i % 32, s = i / 16;
      const uint8_t* scales = b + 96;
      const int low4 = s < 8 ? (scales[s] & 0x0F) : (scales[s - 8] >> 4);
      const int high2 = (scales[8 + s % 4] >> (2 * (s / 4))) & 3;
      const int scale = (low4 | (high2 << 4)) - 32;
      const int q2 = (b[32 + 32 * h + l] >> (2 * j)) & 3;
      const int hb = (b[l] >> (4 * h + j)) & 1;
      return ld_f16(b + 108) * static_cast<float>(scale) * static_cast<float>(q2 - (hb ? 0 : 4));
    }
    case DType::Q4_K: {
      const uint8_t* b = row + (e / 256) * blk::kQ4_K;
      const int i = static_cast<int>(e % 256);
      const int sb = i / 32, l = i % 32;
      int sc, m;
      scale_min_k4(sb, b + 4, sc, m);
      const int q = (b[16 + 32 * (sb / 2) + l] >> (4 * (sb & 1))) & 0x0F;
      return ld_f16(b) * static_cast<float>(sc) * static_cast<float>(q) -
             ld_f16(b + 2) * static_cast<float>(m);
    }
    case DType::Q5_K: {
      const uint8_t* b = row + (e / 256) * blk::kQ5_K;
      const int i = static_cast<int>(e % 256);
      const int sb = i / 32, l = i % 32;
      int sc, m;
      scale_min_k4(sb, b + 4, sc, m);
      const int q =
          ((b[48 + 32 * (sb / 2) + l] >> (4 * (sb & 1))) & 0x0F) | (((b[16 + l] >> sb) & 1) << 4);
      return ld_f16(b) * static_cast<float>(sc) * static_cast<float>(q) -
             ld_f16(b + 2) * static_cast<float>(m);
    }
    case DType::Q6_K: {
      const uint8_t* b = row + (e / 256) * blk::kQ6_K;
      const int i = static_cast<int>(e % 256);
      const int h = i / 128, g = (i % 128) / 32, l = i % 32;
      const int low4 = (b[64 * h + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0x0F;
      const int hi2 = (b[128 + 32 * h + l] >> (2 * g)) & 3;
      const int q = (low4 | (hi2 << 4)) - 32;
      return ld_f16(b + 208) * static_cast<float>(static_cast<int8_t>(b[192 + i / 16])) *
             static_cast<float>(q);
    }
    default:
      return 0.0f;  // unreachable: supports_dtype() gates every caller
  }
}

}  // namespace kvs::cuda
