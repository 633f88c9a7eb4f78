#pragma once
// Rows of the device KV cache in the plan's storage type (F32, F16, BF16, Q8_0, Q4_0): the
// CPU cache's quantize_row formulas (kernels/core/quant.cpp) bit for bit, shared by the
// device store kernel and tests/unit/kernels/test_cuda_kv_store.cpp, which checks them
// compiled for the host against quantize_row.
#include <cmath>
#include <cstdint>

#include "kernels/core/dtype.h"
#include "kernels/core/half.h"
#include "kernels/cuda/block_dot.h"
#include "kernels/cuda/host_device.h"

namespace kvs::cuda::kv {

// x * y rounded once, never fused into a following add (nvcc would otherwise contract
// x * id + 8.5f into one fma, which rounds differently from the CPU).
KVS_HD float mul_rn(float x, float y) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(x, y);
#else
  return x * y;
#endif
}

KVS_HD uint16_t to_bf16_bits(float f) {  // round to nearest even; NaN stays NaN
  uint32_t x;
  memcpy(&x, &f, 4);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

KVS_HD void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// ggml's quantize_row_q8_0_ref: d = amax / 127, quants round(x / d) with halves away from 0.
KVS_HD void quantize_q8_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(out, bd::to_f16_bits(d));
  for (int j = 0; j < 32; ++j)
    out[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(roundf(mul_rn(x[j], id))));
}

// ggml's quantize_row_q4_0_ref: d = (signed absmax) / -8, quants min(15, int8(x / d + 8.5)).
KVS_HD void quantize_q4_0_block(const float* x, uint8_t* out) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < 32; ++j) {
    if (amax < fabsf(x[j])) {
      amax = fabsf(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  put16(out, bd::to_f16_bits(d));
  for (int j = 0; j < 16; ++j) {
    const float x0 = mul_rn(x[j], id), x1 = mul_rn(x[j + 16], id);
    const int q0 = static_cast<int8_t>(x0 + 8.5f), q1 = static_cast<int8_t>(x1 + 8.5f);
    out[2 + j] = static_cast<uint8_t>((q0 < 15 ? q0 : 15) | ((q1 < 15 ? q1 : 15) << 4));
  }
}

// One cache row of n values (n % 32 == 0 for the block types).
KVS_HD void store_row(DType t, const float* x, uint8_t* out, int n) {
  switch (t) {
    case DType::F16:
      for (int i = 0; i < n; ++i) put16(out + 2 * i, bd::to_f16_bits(x[i]));
      return;
    case DType::BF16:
      for (int i = 0; i < n; ++i) put16(out + 2 * i, to_bf16_bits(x[i]));
      return;
    case DType::Q8_0:
      for (int b = 0; b < n / 32; ++b) quantize_q8_0_block(x + 32 * b, out + 34 * b);
      return;
    case DType::Q4_0:
      for (int b = 0; b < n / 32; ++b) quantize_q4_0_block(x + 32 * b, out + 18 * b);
      return;
    default:  // F32
      memcpy(out, x, static_cast<size_t>(n) * 4);
      return;
  }
}

// Bytes of one row of n values in t (the storage types above only).
KVS_HD int row_size(DType t, int n) {
  switch (t) {
    case DType::F16:
    case DType::BF16:
      return 2 * n;
    case DType::Q8_0:
      return n / 32 * 34;
    case DType::Q4_0:
      return n / 32 * 18;
    default:
      return 4 * n;
  }
}

}  // namespace kvs::cuda::kv
