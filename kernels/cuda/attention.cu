// Full-cache attention, reference quality: one warp per (query token, query head) walks the
// visible keys in order with an online softmax (O(1) memory per query). Lane l owns the
// output dimensions l, l + 32, ... The flash-style kernels over per-head variable-length
// caches replace it for speed; this one stays as their GPU twin.
#include <cmath>

#include "kernels/cuda/ops.h"

namespace kvs::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPerLane = kMaxAttentionHeadDim / kWarp;

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

__global__ void attention_kernel(AttentionArgs a) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (w >= a.T * a.n_head) return;
  const int64_t t = w / a.n_head;
  const int h = static_cast<int>(w % a.n_head);
  const int g = h / (a.n_head / a.n_head_kv);
  const float* q = a.q + w * a.head_dim_k;
  const float* K = a.k + static_cast<int64_t>(g) * a.cap * a.head_dim_k;
  const float* V = a.v + static_cast<int64_t>(g) * a.cap * a.head_dim_v;
  float qr[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    qr[i] = d < a.head_dim_k ? q[d] : 0.0f;
  }
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  const int32_t qp = a.q_pos[t];
  // Position j sits in slot j % cap (sliding-window layers keep a ring of window + batch - 1
  // slots; elsewhere cap exceeds every position). Causal: j <= qp; window: qp - j < window.
  const int64_t last = std::min<int64_t>(a.n_keys - 1, qp);
  const int64_t first = a.window > 0 ? std::max<int64_t>(0, qp - a.window + 1) : 0;
  for (int64_t j = first; j <= last; ++j) {
    const int64_t slot = j % a.cap;
    const float* kj = K + slot * a.head_dim_k;
    float part = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < a.head_dim_k) part += qr[i] * kj[d];
    }
    float s = warp_sum(part) * a.scale;
    if (a.softcap > 0.0f) s = a.softcap * tanhf(s / a.softcap);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
    const float* vj = V + slot * a.head_dim_v;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < a.head_dim_v) acc[i] = acc[i] * corr + p * vj[d];
    }
    m = m_new;
  }
  float* o = a.out + w * a.head_dim_v;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;  // nothing visible: zeros, as the CPU does
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    if (d < a.head_dim_v) o[d] = acc[i] * inv;
  }
}

}  // namespace

void attention(const AttentionArgs& a, cudaStream_t s) {
  KVS_CHECK(a.head_dim_k > 0 && a.head_dim_k <= kMaxAttentionHeadDim && a.head_dim_v > 0 &&
                a.head_dim_v <= kMaxAttentionHeadDim,
            "attention: head dim unsupported on CUDA");
  KVS_CHECK(a.n_head_kv > 0 && a.n_head % a.n_head_kv == 0 && a.cap > 0);
  const int64_t warps = a.T * a.n_head;
  if (warps == 0) return;
  const auto blocks = static_cast<unsigned int>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
  attention_kernel<<<blocks, kWarpsPerBlock * kWarp, 0, s>>>(a);
  KVS_CUDA_LAUNCHED();
}

}  // namespace kvs::cuda
