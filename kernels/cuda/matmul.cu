// Matmul on GGUF blocks: a warp per output row reading the blocks directly (decode, up to
// kGemvMaxTokens tokens), or W dequantized to bf16 and a cuBLAS GEMM with f32 accumulation
// (prefill). The decode path dots the integer quants with activations quantized as the CPU
// quantizes them (block_dot.h) for the types that have unit dots, and dequantizes the others
// (f32/f16/bf16 weights with activations rounded to the weight type, as on the CPU; Q2_K and
// Q3_K). get_rows dequantizes embedding rows.
#include <cuda_bf16.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>

#include "kernels/core/quant_blocks.h"
#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/ops.h"

namespace kvs::cuda {

static_assert(sizeof(BlockQ4_0) == blk::kQ4_0 && sizeof(BlockQ4_1) == blk::kQ4_1);
static_assert(sizeof(BlockQ5_0) == blk::kQ5_0 && offsetof(BlockQ5_0, qs) == 6);
static_assert(sizeof(BlockQ5_1) == blk::kQ5_1 && offsetof(BlockQ5_1, qs) == 8);
static_assert(sizeof(BlockQ8_0) == blk::kQ8_0);
static_assert(sizeof(BlockQ2_K) == blk::kQ2_K && offsetof(BlockQ2_K, d) == 80);
static_assert(sizeof(BlockQ3_K) == blk::kQ3_K && offsetof(BlockQ3_K, scales) == 96 &&
              offsetof(BlockQ3_K, d) == 108);
static_assert(sizeof(BlockQ4_K) == blk::kQ4_K && offsetof(BlockQ4_K, qs) == 16);
static_assert(sizeof(BlockQ5_K) == blk::kQ5_K && offsetof(BlockQ5_K, qh) == 16 &&
              offsetof(BlockQ5_K, qs) == 48);
static_assert(sizeof(BlockQ6_K) == blk::kQ6_K && offsetof(BlockQ6_K, scales) == 192 &&
              offsetof(BlockQ6_K, d) == 208);

namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kThreads = 256;

unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
}

// x rounded to the weight's type, as the CPU's vec_dot_type does for f16 and bf16 weights.
__device__ __forceinline__ float act_value(DType t, float v) {
  if (t == DType::F16) return __half2float(__float2half_rn(v));
  if (t == DType::BF16) return __bfloat162float(__float2bfloat16_rn(v));
  return v;
}

// One warp per output row n; lanes stride over the row's elements, each token's partial sum
// in a register, then a butterfly reduction.
__global__ void gemv_kernel(const float* x, int T, const uint8_t* W, DType t, int64_t K, int64_t N,
                            size_t row_bytes, const float* bias, float* y) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (n >= N) return;
  const uint8_t* row = W + static_cast<size_t>(n) * row_bytes;
  float acc[kGemvMaxTokens] = {};
  for (int64_t e = lane; e < K; e += kWarp) {
    const float w = dequant_elem(t, row, e);
#pragma unroll
    for (int tt = 0; tt < kGemvMaxTokens; ++tt)
      if (tt < T) acc[tt] += w * act_value(t, x[tt * K + e]);
  }
#pragma unroll
  for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
    if (tt >= T) break;
    float v = acc[tt];
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[tt * N + n] = v + (bias != nullptr ? bias[n] : 0.0f);
  }
}

// One warp per activation block of one token: x [T][K] -> out [T][K / elems][bytes], the
// CPU's quantize_activation bytes (block_dot.h's quantize_block32 / quantize_block_q8_K are
// the serial twins; CudaOps.ActivationQuantizationEqualsTheCpu compares). A thread per block
// had one lane walk all 256 floats of a Q8_K block in series.
//   Q8_0 / Q8_1 (elems 32): lane j owns element j; the block max by a warp max (order-free)
//   and Q8_1's sum of quants by an integer warp sum.
//   Q8_K (elems 256): lane l owns elements 8l..8l+7; the element of largest magnitude is the
//   first such one, as in the serial loop (ties go to the lower index), and the 16-element
//   sums are lane pairs.
__global__ void quantize_act_kernel(const float* x, int64_t T, int64_t K, int elems, int bytes,
                                    uint8_t* out) {
  const int64_t i = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const int64_t nb = K / elems;
  if (i >= T * nb) return;  // whole warps leave together: i is the same in every lane
  const float* xb = x + (i / nb) * K + (i % nb) * elems;
  uint8_t* o = out + i * bytes;
  if (elems == 32) {
    const bool with_sum = bytes == bd::kA8_1;
    const float v = xb[lane];
    float amax = fabsf(v);
    for (int off = kWarp / 2; off > 0; off /= 2)
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const int q = bd::nearest(v * id);
    o[(with_sum ? 4 : 2) + lane] = static_cast<uint8_t>(static_cast<int8_t>(q));
    int sum = q;
    for (int off = kWarp / 2; off > 0; off /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, off);
    if (lane == 0) {
      const uint16_t dh = bd::to_f16_bits(d);
      o[0] = static_cast<uint8_t>(dh);
      o[1] = static_cast<uint8_t>(dh >> 8);
      if (with_sum) {
        const uint16_t sh = bd::to_f16_bits(static_cast<float>(sum) * d);
        o[2] = static_cast<uint8_t>(sh);
        o[3] = static_cast<uint8_t>(sh >> 8);
      }
    }
    return;
  }
  float v[8];
  float amax = 0.0f, max = 0.0f;
  int at = 256;  // index of this lane's first element of largest magnitude
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    v[e] = xb[8 * lane + e];
    if (fabsf(v[e]) > amax) {
      amax = fabsf(v[e]);
      max = v[e];
      at = 8 * lane + e;
    }
  }
  for (int off = kWarp / 2; off > 0; off /= 2) {
    const float a2 = __shfl_xor_sync(0xffffffffu, amax, off);
    const float m2 = __shfl_xor_sync(0xffffffffu, max, off);
    const int at2 = __shfl_xor_sync(0xffffffffu, at, off);
    if (a2 > amax || (a2 == amax && at2 < at)) {
      amax = a2;
      max = m2;
      at = at2;
    }
  }
  int8_t* qs = reinterpret_cast<int8_t*>(o + 4);
  int16_t* bsums = reinterpret_cast<int16_t*>(o + 260);
  if (amax == 0.0f) {  // the serial twin zeroes the block
#pragma unroll
    for (int e = 0; e < 8; ++e) qs[8 * lane + e] = 0;
    if (lane < 16) bsums[lane] = 0;
    if (lane == 0) *reinterpret_cast<float*>(o) = 0.0f;
    return;
  }
  const float iscale = -127.0f / max;
  int part = 0;
#pragma unroll
  for (int e = 0; e < 8; ++e) {
    const int q = bd::nearest(iscale * v[e]);
    const int c = q < 127 ? q : 127;
    qs[8 * lane + e] = static_cast<int8_t>(c);
    part += c;
  }
  const int pair = part + __shfl_down_sync(0xffffffffu, part, 1);
  if (lane % 2 == 0) bsums[lane / 2] = static_cast<int16_t>(pair);
  if (lane == 0) *reinterpret_cast<float*>(o) = 1.0f / iscale;
}

// One warp per output row n; lane l takes units l, l + 32, ... of the row (a unit is 32
// elements), dotted with each token's quantized activation row; then a butterfly reduction.
template <DType kT>
__global__ void gemv_units_kernel(const uint8_t* act, size_t act_row, int T, const uint8_t* W,
                                  int units, int64_t N, size_t row_bytes, const float* bias,
                                  float* y) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (n >= N) return;
  const uint8_t* row = W + static_cast<size_t>(n) * row_bytes;
  float acc[kGemvMaxTokens] = {};
  for (int u = lane; u < units; u += kWarp) {
#pragma unroll
    for (int tt = 0; tt < kGemvMaxTokens; ++tt)
      if (tt < T) acc[tt] += bd::unit_dot<kT>(row, act + tt * act_row, u);
  }
#pragma unroll
  for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
    if (tt >= T) break;
    float v = acc[tt];
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[tt * N + n] = v + (bias != nullptr ? bias[n] : 0.0f);
  }
}

// f16 / bf16 / f32 weights: lane l reads 16 bytes (8 halves or 4 floats) at a time, so a warp
// streams 512 contiguous bytes per step; activations are rounded to the weight type as the
// CPU's vec_dot_type does. Needs K % (16 / element size) == 0 (rows stay 16-byte aligned).
template <DType kT>
__global__ void gemv_float_kernel(const float* x, int T, const uint8_t* W, int64_t K, int64_t N,
                                  const float* bias, float* y) {
  constexpr int kPer = kT == DType::F32 ? 4 : 8;  // elements per 16-byte load
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (n >= N) return;
  const auto* row = reinterpret_cast<const uint4*>(W + static_cast<size_t>(n) * K * (16 / kPer));
  float acc[kGemvMaxTokens] = {};
  for (int64_t c = lane; c < K / kPer; c += kWarp) {
    const uint4 raw = row[c];
    float w[kPer];
    if constexpr (kT == DType::F32) {
      w[0] = __uint_as_float(raw.x), w[1] = __uint_as_float(raw.y);
      w[2] = __uint_as_float(raw.z), w[3] = __uint_as_float(raw.w);
    } else {
      const uint32_t words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        if constexpr (kT == DType::F16) {
          w[2 * i] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[i])));
          w[2 * i + 1] =
              __half2float(__ushort_as_half(static_cast<unsigned short>(words[i] >> 16)));
        } else {
          w[2 * i] = __uint_as_float(words[i] << 16);
          w[2 * i + 1] = __uint_as_float(words[i] & 0xFFFF0000u);
        }
      }
    }
#pragma unroll
    for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
      if (tt >= T) break;
      const float* xe = x + tt * K + c * kPer;
#pragma unroll
      for (int i = 0; i < kPer; ++i) acc[tt] += w[i] * act_value(kT, xe[i]);
    }
  }
#pragma unroll
  for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
    if (tt >= T) break;
    float v = acc[tt];
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[tt * N + n] = v + (bias != nullptr ? bias[n] : 0.0f);
  }
}

// gate and up rows n in one warp, then out = act(gate) * up: the sums of gemv_units_kernel
// (same order, same reduction) and the activation of silu_mul / gelu_tanh_mul, so the output
// equals the three separate kernels bit for bit.
template <DType kT, bool kGelu>
__global__ void gemv_glu_kernel(const uint8_t* act, size_t act_row, int T, const uint8_t* Wg,
                                const uint8_t* Wu, int units, int64_t N, size_t row_bytes,
                                float* out) {
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (n >= N) return;
  const uint8_t* rg = Wg + static_cast<size_t>(n) * row_bytes;
  const uint8_t* ru = Wu + static_cast<size_t>(n) * row_bytes;
  float ag[kGemvMaxTokens] = {}, au[kGemvMaxTokens] = {};
  for (int u = lane; u < units; u += kWarp) {
#pragma unroll
    for (int tt = 0; tt < kGemvMaxTokens; ++tt)
      if (tt < T) {
        ag[tt] += bd::unit_dot<kT>(rg, act + tt * act_row, u);
        au[tt] += bd::unit_dot<kT>(ru, act + tt * act_row, u);
      }
  }
#pragma unroll
  for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
    if (tt >= T) break;
    float g = ag[tt], v = au[tt];
    for (int off = kWarp / 2; off > 0; off /= 2) {
      g += __shfl_xor_sync(0xffffffffu, g, off);
      v += __shfl_xor_sync(0xffffffffu, v, off);
    }
    if (lane == 0) out[tt * N + n] = kGelu ? gelu_tanh_times(g, v) : silu_times(g, v);
  }
}

template <DType kT>
void launch_gemv_glu(const uint8_t* act, size_t act_row, int T, const DeviceMatrix& G,
                     const DeviceMatrix& U, bool gelu, float* out, cudaStream_t s) {
  const unsigned int blocks = blocks_for(G.rows, kWarpsPerBlock);
  const auto* g = static_cast<const uint8_t*>(G.data);
  const auto* u = static_cast<const uint8_t*>(U.data);
  const int units = static_cast<int>(G.cols / 32);
  const size_t rb = row_bytes(G.dtype, G.cols);
  if (gelu)
    gemv_glu_kernel<kT, true>
        <<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(act, act_row, T, g, u, units, G.rows, rb, out);
  else
    gemv_glu_kernel<kT, false>
        <<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(act, act_row, T, g, u, units, G.rows, rb, out);
}

template <DType kT>
void launch_gemv_units(const uint8_t* act, size_t act_row, int T, const DeviceMatrix& W,
                       const float* bias, float* y, cudaStream_t s) {
  gemv_units_kernel<kT><<<blocks_for(W.rows, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, s>>>(
      act, act_row, T, static_cast<const uint8_t*>(W.data), static_cast<int>(W.cols / 32), W.rows,
      row_bytes(W.dtype, W.cols), bias, y);
}

// f(std::integral_constant<DType, t>{}) for the weight types that have unit dots.
template <typename F>
void with_unit_type(DType t, F&& f) {
  switch (t) {
    case DType::Q4_0:
      return f(std::integral_constant<DType, DType::Q4_0>{});
    case DType::Q4_1:
      return f(std::integral_constant<DType, DType::Q4_1>{});
    case DType::Q5_0:
      return f(std::integral_constant<DType, DType::Q5_0>{});
    case DType::Q5_1:
      return f(std::integral_constant<DType, DType::Q5_1>{});
    case DType::Q8_0:
      return f(std::integral_constant<DType, DType::Q8_0>{});
    case DType::Q4_K:
      return f(std::integral_constant<DType, DType::Q4_K>{});
    case DType::Q5_K:
      return f(std::integral_constant<DType, DType::Q5_K>{});
    case DType::Q6_K:
      return f(std::integral_constant<DType, DType::Q6_K>{});
    default:
      KVS_CHECK(false, "no unit dot for weight type " + std::string(dtype_name(t)));
  }
}

void gemv_units(const uint8_t* act, size_t act_row, int T, const DeviceMatrix& W, const float* bias,
                float* y, cudaStream_t s) {
  with_unit_type(W.dtype, [&](auto t) {
    launch_gemv_units<decltype(t)::value>(act, act_row, T, W, bias, y, s);
  });
}

void gemv_glu(const uint8_t* act, size_t act_row, int T, const DeviceMatrix& G,
              const DeviceMatrix& U, bool gelu, float* out, cudaStream_t s) {
  with_unit_type(G.dtype, [&](auto t) {
    launch_gemv_glu<decltype(t)::value>(act, act_row, T, G, U, gelu, out, s);
  });
}

__global__ void dequant_bf16_kernel(const uint8_t* W, DType t, int64_t K, int64_t N,
                                    size_t row_bytes, __nv_bfloat16* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= K * N) return;
  const int64_t r = i / K, e = i % K;
  out[i] = __float2bfloat16(dequant_elem(t, W + static_cast<size_t>(r) * row_bytes, e));
}

__global__ void f32_to_bf16_kernel(const float* x, __nv_bfloat16* out, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16(x[i]);
}

__global__ void add_bias_kernel(float* y, const float* bias, int64_t T, int64_t N) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < T * N) y[i] += bias[i % N];
}

__global__ void get_rows_kernel(const uint8_t* E, DType t, int64_t D, size_t row_bytes,
                                const int32_t* ids, int64_t n, float* out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n * D) return;
  const int64_t r = i / D, e = i % D;
  out[i] = dequant_elem(t, E + static_cast<size_t>(ids[r]) * row_bytes, e);
}

}  // namespace

// dequant.cuh covers every type a weight may be stored in.
bool supports_dtype(DType t) {
  return dtype_is_weight_type(t);
}

void dequantize_bf16(const DeviceMatrix& W, uint16_t* out, cudaStream_t s) {
  KVS_CHECK(supports_dtype(W.dtype), "dequantize_bf16: unsupported dtype");
  const int64_t n = W.cols * W.rows;
  if (n == 0) return;
  dequant_bf16_kernel<<<blocks_for(n, kThreads), kThreads, 0, s>>>(
      static_cast<const uint8_t*>(W.data), W.dtype, W.cols, W.rows, row_bytes(W.dtype, W.cols),
      reinterpret_cast<__nv_bfloat16*>(out));
  KVS_CUDA_LAUNCHED();
}

void quantize_activation(DType weight_type, const float* x, int64_t T, int64_t K, uint8_t* out,
                         cudaStream_t s) {
  KVS_CHECK(bd::has_unit_dot(weight_type), "quantize_activation: no unit dot for this type");
  int elems, bytes;
  bd::activation_block(weight_type, elems, bytes);
  KVS_CHECK(K % elems == 0, "quantize_activation: K not a multiple of the block");
  const int64_t warps = T * (K / elems);
  if (warps == 0) return;
  quantize_act_kernel<<<blocks_for(warps * kWarp, 128), 128, 0, s>>>(x, T, K, elems, bytes, out);
  KVS_CUDA_LAUNCHED();
}

size_t gemv_scratch_bytes(const DeviceMatrix& W, int64_t T) {
  if (!bd::has_unit_dot(W.dtype)) return 0;
  int elems, bytes;
  bd::activation_block(W.dtype, elems, bytes);
  return static_cast<size_t>(T) * static_cast<size_t>(W.cols / elems) * bytes;
}

namespace {

// x [T, K] into ctx.gemm_x as bf16, the prefill GEMM's activation operand.
void convert_x_bf16(const float* x, int64_t T, int64_t K, CudaContext& ctx) {
  ctx.gemm_x.reserve(static_cast<size_t>(T * K) * sizeof(__nv_bfloat16));
  f32_to_bf16_kernel<<<blocks_for(T * K, kThreads), kThreads, 0, ctx.stream()>>>(
      x, ctx.gemm_x.as<__nv_bfloat16>(), T * K);
  KVS_CUDA_LAUNCHED();
}

// y = gemm_x W^T (+ bias): W dequantized to bf16, cuBLAS with f32 accumulation.
void gemm_bf16(int64_t T, const DeviceMatrix& W, const float* bias, float* y, CudaContext& ctx) {
  const cudaStream_t s = ctx.stream();
  const int64_t K = W.cols, N = W.rows;
  ctx.gemm_w.reserve(static_cast<size_t>(N * K) * sizeof(__nv_bfloat16));
  dequantize_bf16(W, ctx.gemm_w.as<uint16_t>(), s);
  // Column-major view: y^T [N, T] = W [K, N]^T x^T [K, T].
  const float alpha = 1.0f, beta = 0.0f;
  KVS_CHECK(N <= INT32_MAX && T <= INT32_MAX && K <= INT32_MAX, "matmul too large for cuBLAS");
  KVS_CUBLAS(cublasGemmEx(ctx.blas(), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N),
                          static_cast<int>(T), static_cast<int>(K), &alpha, ctx.gemm_w.get(),
                          CUDA_R_16BF, static_cast<int>(K), ctx.gemm_x.get(), CUDA_R_16BF,
                          static_cast<int>(K), &beta, y, CUDA_R_32F, static_cast<int>(N),
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias != nullptr) {
    add_bias_kernel<<<blocks_for(T * N, kThreads), kThreads, 0, s>>>(y, bias, T, N);
    KVS_CUDA_LAUNCHED();
  }
}

// x quantized into ctx.act_q in W's activation format, unless `have` says it already is.
// Returns the bytes of one token's row.
size_t quantize_for(const float* x, int64_t T, const DeviceMatrix& W, CudaContext& ctx,
                    int* have_elems, int* have_bytes) {
  int elems, bytes;
  bd::activation_block(W.dtype, elems, bytes);
  KVS_CHECK(W.cols % elems == 0, "matmul: K not a multiple of the activation block");
  KVS_CHECK(reinterpret_cast<uintptr_t>(W.data) % 2 == 0, "matmul: weight rows not 2-aligned");
  const size_t act_row = static_cast<size_t>(W.cols / elems) * bytes;
  if (have_elems != nullptr && *have_elems == elems && *have_bytes == bytes) return act_row;
  ctx.act_q.reserve(static_cast<size_t>(T) * act_row);
  quantize_activation(W.dtype, x, T, W.cols, ctx.act_q.as<uint8_t>(), ctx.stream());
  if (have_elems != nullptr) *have_elems = elems, *have_bytes = bytes;
  return act_row;
}

void gemv_quantized(int64_t T, size_t act_row, const DeviceMatrix& W, const float* bias, float* y,
                    CudaContext& ctx) {
  const uint8_t* act = ctx.act_q.as<uint8_t>();
  for (int64_t t0 = 0; t0 < T; t0 += kGemvMaxTokens) {
    const int tt = static_cast<int>(std::min<int64_t>(kGemvMaxTokens, T - t0));
    gemv_units(act + t0 * act_row, act_row, tt, W, bias, y + t0 * W.rows, ctx.stream());
    KVS_CUDA_LAUNCHED();
  }
}

}  // namespace

void matmul_shared_input(const float* x, int64_t T, std::initializer_list<MatmulOut> outs,
                         CudaContext& ctx) {
  KVS_CHECK(outs.size() > 0);
  if (T > kGemvMaxTokens) {  // prefill: x converted to bf16 once for every GEMM
    convert_x_bf16(x, T, outs.begin()->W->cols, ctx);
    for (const MatmulOut& o : outs) {
      KVS_CHECK(supports_dtype(o.W->dtype) && o.W->cols == outs.begin()->W->cols);
      gemm_bf16(T, *o.W, o.bias, o.y, ctx);
    }
    return;
  }
  int elems = 0, bytes = 0;  // the format ctx.act_q holds x in
  for (const MatmulOut& o : outs) {
    const DeviceMatrix& W = *o.W;
    if (!bd::has_unit_dot(W.dtype) || T == 0) {
      matmul(x, T, W, o.bias, o.y, ctx);
      continue;
    }
    KVS_CHECK(W.cols > 0 && W.rows > 0);
    const size_t act_row = quantize_for(x, T, W, ctx, &elems, &bytes);
    gemv_quantized(T, act_row, W, o.bias, o.y, ctx);
  }
}

void matmul(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y,
            CudaContext& ctx, GemmPath path) {
  KVS_CHECK(supports_dtype(W.dtype), "matmul: unsupported dtype");
  KVS_CHECK(T >= 0 && W.cols > 0 && W.rows > 0);
  if (T == 0) return;
  const cudaStream_t s = ctx.stream();
  const bool gemv = path == GemmPath::Gemv || (path == GemmPath::Auto && T <= kGemvMaxTokens);
  if (gemv && bd::has_unit_dot(W.dtype)) {
    gemv_quantized(T, quantize_for(x, T, W, ctx, nullptr, nullptr), W, bias, y, ctx);
    return;
  }
  const bool float_type = W.dtype == DType::F32 || W.dtype == DType::F16 || W.dtype == DType::BF16;
  const int64_t per = W.dtype == DType::F32 ? 4 : 8;
  if (gemv && float_type && W.cols % per == 0 && reinterpret_cast<uintptr_t>(W.data) % 16 == 0) {
    for (int64_t t0 = 0; t0 < T; t0 += kGemvMaxTokens) {
      const int tt = static_cast<int>(std::min<int64_t>(kGemvMaxTokens, T - t0));
      const unsigned int blocks = blocks_for(W.rows, kWarpsPerBlock);
      const auto* w = static_cast<const uint8_t*>(W.data);
      const float* xt = x + t0 * W.cols;
      float* yt = y + t0 * W.rows;
      if (W.dtype == DType::F32)
        gemv_float_kernel<DType::F32>
            <<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(xt, tt, w, W.cols, W.rows, bias, yt);
      else if (W.dtype == DType::F16)
        gemv_float_kernel<DType::F16>
            <<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(xt, tt, w, W.cols, W.rows, bias, yt);
      else
        gemv_float_kernel<DType::BF16>
            <<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(xt, tt, w, W.cols, W.rows, bias, yt);
      KVS_CUDA_LAUNCHED();
    }
    return;
  }
  if (gemv) {
    // Tokens beyond what one launch holds in registers go in further launches.
    for (int64_t t0 = 0; t0 < T; t0 += kGemvMaxTokens) {
      const int tt = static_cast<int>(std::min<int64_t>(kGemvMaxTokens, T - t0));
      gemv_kernel<<<blocks_for(W.rows, kWarpsPerBlock), kWarpsPerBlock * kWarp, 0, s>>>(
          x + t0 * W.cols, tt, static_cast<const uint8_t*>(W.data), W.dtype, W.cols, W.rows,
          row_bytes(W.dtype, W.cols), bias, y + t0 * W.rows);
      KVS_CUDA_LAUNCHED();
    }
    return;
  }
  convert_x_bf16(x, T, W.cols, ctx);
  gemm_bf16(T, W, bias, y, ctx);
}

void matmul_glu(const float* x, int64_t T, const DeviceMatrix& gate, const DeviceMatrix& up,
                bool gelu, float* out, float* up_scratch, CudaContext& ctx) {
  const bool fused = T > 0 && T <= kGemvMaxTokens && bd::has_unit_dot(gate.dtype) &&
                     gate.dtype == up.dtype && gate.cols == up.cols && gate.rows == up.rows;
  if (!fused) {
    matmul_shared_input(x, T, {{&gate, nullptr, out}, {&up, nullptr, up_scratch}}, ctx);
    if (gelu)
      gelu_tanh_mul(out, up_scratch, out, T * gate.rows, ctx.stream());
    else
      silu_mul(out, up_scratch, out, T * gate.rows, ctx.stream());
    return;
  }
  const size_t act_row = quantize_for(x, T, gate, ctx, nullptr, nullptr);
  gemv_glu(ctx.act_q.as<uint8_t>(), act_row, static_cast<int>(T), gate, up, gelu, out,
           ctx.stream());
  KVS_CUDA_LAUNCHED();
}

void get_rows(const DeviceMatrix& E, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
  KVS_CHECK(supports_dtype(E.dtype), "get_rows: unsupported dtype");
  if (n == 0) return;
  get_rows_kernel<<<blocks_for(n * E.cols, kThreads), kThreads, 0, s>>>(
      static_cast<const uint8_t*>(E.data), E.dtype, E.cols, row_bytes(E.dtype, E.cols), ids, n,
      out);
  KVS_CUDA_LAUNCHED();
}

}  // namespace kvs::cuda
