// Norms, RoPE, activations and the KV store: one thread per element (or a block per row),
// the same float formulas as kernels/cpu/ops.cpp.
#include <cmath>

#include "kernels/cuda/activation.cuh"
#include "kernels/cuda/kv_store.h"
#include "kernels/cuda/ops.h"

namespace kvs::cuda {
namespace {

constexpr int kThreads = 256;

unsigned int blocks_for(int64_t n) {
  return static_cast<unsigned int>((n + kThreads - 1) / kThreads);
}

// 1 / sqrt(mean + eps) from each thread's partial sum of squares: a tree over the block in
// double, as ops::rms_norm sums in double. Every thread of the block must call it.
__device__ __forceinline__ float rms_scale(double ss, int64_t n, float eps) {
  __shared__ double part[kThreads];
  part[threadIdx.x] = ss;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride) part[threadIdx.x] += part[threadIdx.x + stride];
    __syncthreads();
  }
  return 1.0f / sqrtf(static_cast<float>(part[0] / static_cast<double>(n)) + eps);
}

// Row r of y = rms_norm(x) * w, by one block. Squares in float and sums in double, as
// ops::rms_norm does. y may alias x: every thread has read its elements' sum before any is
// written.
__device__ __forceinline__ void rms_norm_row(const float* xr, const float* w, float* yr, int64_t n,
                                             float eps) {
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) ss += static_cast<double>(xr[i] * xr[i]);
  const float scale = rms_scale(ss, n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = xr[i] * scale * (w != nullptr ? w[i] : 1.0f);
}

// One block per row.
__global__ void rms_norm_kernel(const float* x, const float* w, float* y, int64_t n, float eps) {
  const int64_t r = blockIdx.x;
  rms_norm_row(x + r * n, w, y + r * n, n, eps);
}

// The q rows (first rows_q blocks, weight wq) and k rows (weight wk) in one launch, in place.
__global__ void rms_norm_qk_kernel(float* q, const float* wq, int64_t rows_q, float* k,
                                   const float* wk, int64_t n, float eps) {
  const int64_t r = blockIdx.x;
  if (r < rows_q)
    rms_norm_row(q + r * n, wq, q + r * n, n, eps);
  else
    rms_norm_row(k + (r - rows_q) * n, wk, k + (r - rows_q) * n, n, eps);
}

// x += h, then y = rms_norm(x) * w: the same float operations as add_inplace followed by
// rms_norm, in one pass. y may alias h (each thread reads its h elements before writing y).
__global__ void add_rms_norm_kernel(float* x, const float* h, const float* w, float* y, int64_t n,
                                    float eps) {
  const int64_t r = blockIdx.x;
  float* xr = x + r * n;
  const float* hr = h + r * n;
  float* yr = y + r * n;
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    const float v = xr[i] + hr[i];
    xr[i] = v;
    ss += static_cast<double>(v * v);
  }
  const float scale = rms_scale(ss, n, eps);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
    yr[i] = xr[i] * scale * (w != nullptr ? w[i] : 1.0f);
}

// Pair idx of x [T][n_heads][head_dim] (idx = (t * n_heads + h) * n_rot / 2 + i), rotated.
__device__ __forceinline__ void rope_pair(float* x, int n_heads, int head_dim, const int32_t* pos,
                                          const RopeTable& tab, int64_t idx) {
  const int half = tab.n_rot / 2;
  const int i = static_cast<int>(idx % half);
  const int64_t th = idx / half;  // t * n_heads + h
  const int64_t t = th / n_heads;
  const float theta = static_cast<float>(pos[t]) * tab.theta[i];
  float s, c;
  sincosf(theta, &s, &c);
  float* v = x + th * head_dim;
  const int i0 = tab.neox ? i : 2 * i;
  const int i1 = tab.neox ? i + half : 2 * i + 1;
  const float a = v[i0], b = v[i1];
  v[i0] = a * c - b * s;
  v[i1] = a * s + b * c;
}

// One thread per (token, head, pair).
__global__ void rope_kernel(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos,
                            RopeTable tab) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx < T * n_heads * (tab.n_rot / 2)) rope_pair(x, n_heads, head_dim, pos, tab, idx);
}

// q's pairs, then k's, in one launch.
__global__ void rope_qk_kernel(float* q, int n_head, float* k, int n_kv, int64_t T, int head_dim,
                               const int32_t* pos, RopeTable tab) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nq = T * n_head * (tab.n_rot / 2);
  if (idx < nq)
    rope_pair(q, n_head, head_dim, pos, tab, idx);
  else if (idx < nq + T * n_kv * (tab.n_rot / 2))
    rope_pair(k, n_kv, head_dim, pos, tab, idx - nq);
}

__global__ void silu_mul_kernel(const float* g, const float* u, float* o, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) o[i] = silu_times(g[i], u[i]);
}

__global__ void gelu_tanh_mul_kernel(const float* gate, const float* u, float* o, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) o[i] = gelu_tanh_times(gate[i], u[i]);
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += y[i];
}

__global__ void scale_kernel(float* x, float k, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= k;
}

__global__ void softcap_kernel(float* x, float cap, int64_t n) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] = cap * tanhf(x[i] / cap);
}

// One thread per (token, head, dim) of k and of v.
__global__ void store_kv_kernel(const float* k, const float* v, int64_t T, int n_kv, int hd_k,
                                int hd_v, const int32_t* pos, int64_t cap, float* ck, float* cv) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t nk = T * n_kv * hd_k;
  if (idx < nk) {
    const int d = static_cast<int>(idx % hd_k);
    const int64_t th = idx / hd_k;
    const int h = static_cast<int>(th % n_kv);
    const int64_t t = th / n_kv;
    ck[(h * cap + pos[t] % cap) * hd_k + d] = k[idx];
    return;
  }
  const int64_t jdx = idx - nk;
  if (jdx >= T * n_kv * hd_v) return;
  const int d = static_cast<int>(jdx % hd_v);
  const int64_t th = jdx / hd_v;
  const int h = static_cast<int>(th % n_kv);
  const int64_t t = th / n_kv;
  cv[(h * cap + pos[t] % cap) * hd_v + d] = v[jdx];
}

// One thread per (token, head) row of k (first T * n_kv threads) or v, converted by
// kv::store_row into slot pos[t] % cap of its head.
__global__ void store_kv_rows_kernel(const float* k, const float* v, int64_t T, int n_kv, int hd_k,
                                     int hd_v, const int32_t* pos, int64_t cap, uint8_t* ck,
                                     uint8_t* cv, DType kt, DType vt) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t rows = T * n_kv;
  if (idx >= 2 * rows) return;
  const bool is_v = idx >= rows;
  const int64_t th = is_v ? idx - rows : idx;  // t * n_kv + h
  const int h = static_cast<int>(th % n_kv);
  const int64_t slot = pos[th / n_kv] % cap;
  const int hd = is_v ? hd_v : hd_k;
  const DType t = is_v ? vt : kt;
  const int rb = kv::row_size(t, hd);
  kv::store_row(t, (is_v ? v : k) + th * hd, (is_v ? cv : ck) + (h * cap + slot) * rb, hd);
}

}  // namespace

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps,
              cudaStream_t s) {
  if (rows == 0) return;
  rms_norm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, s>>>(x, w, y, n, eps);
  KVS_CUDA_LAUNCHED();
}

void rms_norm_qk(float* q, const float* wq, int64_t rows_q, float* k, const float* wk,
                 int64_t rows_k, int64_t n, float eps, cudaStream_t s) {
  if (rows_q + rows_k == 0) return;
  rms_norm_qk_kernel<<<static_cast<unsigned int>(rows_q + rows_k), kThreads, 0, s>>>(q, wq, rows_q,
                                                                                     k, wk, n, eps);
  KVS_CUDA_LAUNCHED();
}

void add_rms_norm(float* x, const float* h, const float* w, float* y, int64_t rows, int64_t n,
                  float eps, cudaStream_t s) {
  if (rows == 0) return;
  add_rms_norm_kernel<<<static_cast<unsigned int>(rows), kThreads, 0, s>>>(x, h, w, y, n, eps);
  KVS_CUDA_LAUNCHED();
}

RopeTable rope_table(const ops::RopeParams& p) {
  KVS_CHECK(p.n_rot > 0 && p.n_rot % 2 == 0 && p.n_rot / 2 <= RopeTable::kMaxPairs,
            "rope: n_rot " + std::to_string(p.n_rot) + " unsupported on CUDA");
  RopeTable t;
  t.n_rot = p.n_rot;
  t.neox = p.neox;
  for (int i = 0; i < p.n_rot / 2; ++i) {
    float f = p.freq_scale * std::pow(p.base, -2.0f * i / p.n_rot);
    if (p.freq_factors != nullptr) f /= p.freq_factors[i];
    t.theta[i] = f;
  }
  return t;
}

void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos,
          const RopeTable& table, cudaStream_t s) {
  const int64_t n = T * n_heads * (table.n_rot / 2);
  if (n == 0) return;
  rope_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, T, n_heads, head_dim, pos, table);
  KVS_CUDA_LAUNCHED();
}

void rope_qk(float* q, int n_head, float* k, int n_kv, int64_t T, int head_dim, const int32_t* pos,
             const RopeTable& table, cudaStream_t s) {
  const int64_t n = T * (n_head + n_kv) * (table.n_rot / 2);
  if (n == 0) return;
  rope_qk_kernel<<<blocks_for(n), kThreads, 0, s>>>(q, n_head, k, n_kv, T, head_dim, pos, table);
  KVS_CUDA_LAUNCHED();
}

void silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  silu_mul_kernel<<<blocks_for(n), kThreads, 0, s>>>(gate, up, out, n);
  KVS_CUDA_LAUNCHED();
}

void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  gelu_tanh_mul_kernel<<<blocks_for(n), kThreads, 0, s>>>(gate, up, out, n);
  KVS_CUDA_LAUNCHED();
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  KVS_CUDA_LAUNCHED();
}

void scale_inplace(float* x, float k, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  scale_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, k, n);
  KVS_CUDA_LAUNCHED();
}

void softcap_inplace(float* x, float cap, int64_t n, cudaStream_t s) {
  if (n == 0) return;
  softcap_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, cap, n);
  KVS_CUDA_LAUNCHED();
}

void store_kv(const float* k, const float* v, int64_t T, int n_kv, int hd_k, int hd_v,
              const int32_t* pos, int64_t cap, void* cache_k, void* cache_v, cudaStream_t s,
              DType k_dtype, DType v_dtype) {
  KVS_CHECK(T <= cap, "store_kv: more tokens than cache slots");
  KVS_CHECK(kv_storage_supported(k_dtype, hd_k) && kv_storage_supported(v_dtype, hd_v),
            "store_kv: unsupported storage type");
  if (k_dtype == DType::F32 && v_dtype == DType::F32) {
    const int64_t n = T * n_kv * (hd_k + hd_v);
    if (n == 0) return;
    store_kv_kernel<<<blocks_for(n), kThreads, 0, s>>>(k, v, T, n_kv, hd_k, hd_v, pos, cap,
                                                       static_cast<float*>(cache_k),
                                                       static_cast<float*>(cache_v));
    KVS_CUDA_LAUNCHED();
    return;
  }
  const int64_t rows = 2 * T * n_kv;
  if (rows == 0) return;
  store_kv_rows_kernel<<<blocks_for(rows), kThreads, 0, s>>>(
      k, v, T, n_kv, hd_k, hd_v, pos, cap, static_cast<uint8_t*>(cache_k),
      static_cast<uint8_t*>(cache_v), k_dtype, v_dtype);
  KVS_CUDA_LAUNCHED();
}

bool kv_storage_supported(DType t, int head_dim) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return head_dim > 0;
    case DType::Q8_0:
    case DType::Q4_0:
      return head_dim > 0 && head_dim % 32 == 0;
    default:
      return false;
  }
}

}  // namespace kvs::cuda
