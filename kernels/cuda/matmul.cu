// Matmul on GGUF blocks: a warp per output row reading the blocks directly (decode, up to
// kGemvMaxTokens tokens), or W dequantized to bf16 and a cuBLAS GEMM with f32 accumulation
// (prefill). get_rows dequantizes embedding rows.
#include <cuda_bf16.h>

#include <cstddef>

#include "kernels/core/quant_blocks.h"
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
      if (tt < T) acc[tt] += w * x[tt * K + e];
  }
#pragma unroll
  for (int tt = 0; tt < kGemvMaxTokens; ++tt) {
    if (tt >= T) break;
    float v = acc[tt];
    for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) y[tt * N + n] = v + (bias != nullptr ? bias[n] : 0.0f);
  }
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

unsigned int blocks_for(int64_t n, int threads) {
  return static_cast<unsigned int>((n + threads - 1) / threads);
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

void matmul(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y,
            CudaContext& ctx, GemmPath path) {
  KVS_CHECK(supports_dtype(W.dtype), "matmul: unsupported dtype");
  KVS_CHECK(T >= 0 && W.cols > 0 && W.rows > 0);
  if (T == 0) return;
  const cudaStream_t s = ctx.stream();
  const bool gemv = path == GemmPath::Gemv || (path == GemmPath::Auto && T <= kGemvMaxTokens);
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
  const int64_t K = W.cols, N = W.rows;
  ctx.gemm_w.reserve(static_cast<size_t>(N * K) * sizeof(__nv_bfloat16));
  ctx.gemm_x.reserve(static_cast<size_t>(T * K) * sizeof(__nv_bfloat16));
  dequantize_bf16(W, ctx.gemm_w.as<uint16_t>(), s);
  f32_to_bf16_kernel<<<blocks_for(T * K, kThreads), kThreads, 0, s>>>(
      x, ctx.gemm_x.as<__nv_bfloat16>(), T * K);
  KVS_CUDA_LAUNCHED();
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

void get_rows(const DeviceMatrix& E, const int32_t* ids, int64_t n, float* out, cudaStream_t s) {
  KVS_CHECK(supports_dtype(E.dtype), "get_rows: unsupported dtype");
  if (n == 0) return;
  get_rows_kernel<<<blocks_for(n * E.cols, kThreads), kThreads, 0, s>>>(
      static_cast<const uint8_t*>(E.data), E.dtype, E.cols, row_bytes(E.dtype, E.cols), ids, n,
      out);
  KVS_CUDA_LAUNCHED();
}

}  // namespace kvs::cuda
