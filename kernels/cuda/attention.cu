// Full-cache attention, one warp per (query token, query head), online softmax (O(1) memory
// per query), lane l owning the output dimensions l, l + 32, ...
//   attention_reference: the warp walks the visible keys one by one (a warp reduction per
//     key). The twin of the others.
//   attention: keys 32 at a time, lane j scoring key j of the chunk against q in shared
//     memory, one softmax update per chunk, then the chunk's values folded in.
//   attention_split (decode): that walk over chunks of kAttentionSplitKeys visible keys in
//     parallel warps, then a merge per query, so a long context is not one warp's loop.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/kv_store.h"
#include "kernels/cuda/ops.h"

namespace kvs::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;
constexpr int kMaxPerLane = kMaxAttentionHeadDim / kWarp;
constexpr int64_t kSplitKeys = kAttentionSplitKeys;

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// The visible keys [first, last] of query token t (position qp): causal, and within the
// sliding window when there is one.
__device__ __forceinline__ void visible_range(const AttentionArgs& a, int32_t qp, int64_t& first,
                                              int64_t& last) {
  last = std::min<int64_t>(a.n_keys - 1, qp);
  first = a.window > 0 ? std::max<int64_t>(0, qp - a.window + 1) : 0;
}

// Element d of a cache row: f32 rows read directly (kF32: both K and V are f32), the other
// storage types dequantized as the CPU cache's read_k / read_v do.
template <bool kF32>
__device__ __forceinline__ float kv_elem(DType t, const uint8_t* row, int d) {
  if constexpr (kF32) return reinterpret_cast<const float*>(row)[d];
  return dequant_elem(t, row, d);
}

// Query warp w's q row and its KV head's cache rows (row bytes in the storage types).
struct HeadRows {
  const float* q;
  const uint8_t* K;
  const uint8_t* V;
  int64_t k_rb, v_rb;
};

__device__ __forceinline__ HeadRows head_rows(const AttentionArgs& a, int64_t w) {
  const int h = static_cast<int>(w % a.n_head);
  const int64_t g = h / (a.n_head / a.n_head_kv);
  HeadRows r;
  r.q = a.q + w * a.head_dim_k;
  r.k_rb = kv::row_size(a.k_dtype, a.head_dim_k);
  r.v_rb = kv::row_size(a.v_dtype, a.head_dim_v);
  r.K = static_cast<const uint8_t*>(a.k) + g * a.cap * r.k_rb;
  r.V = static_cast<const uint8_t*>(a.v) + g * a.cap * r.v_rb;
  return r;
}

// Online softmax of query warp w over keys [j0, j1]: m (running max), l (running sum) and
// acc (lane l owns dims l, l + 32, ...) are this warp's state, folded in key order.
template <bool kF32>
__device__ __forceinline__ void attend_keys(const AttentionArgs& a, int64_t w, int lane, int64_t j0,
                                            int64_t j1, float& m, float& l,
                                            float (&acc)[kMaxPerLane]) {
  const HeadRows r = head_rows(a, w);
  const float* q = r.q;
  const int64_t k_rb = r.k_rb, v_rb = r.v_rb;
  const uint8_t* K = r.K;
  const uint8_t* V = r.V;
  float qr[kMaxPerLane];
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    qr[i] = d < a.head_dim_k ? q[d] : 0.0f;
  }
  // Position j sits in slot j % cap (sliding-window layers keep a ring of window + batch - 1
  // slots; elsewhere cap exceeds every position).
  for (int64_t j = j0; j <= j1; ++j) {
    const int64_t slot = j % a.cap;
    const uint8_t* kj = K + slot * k_rb;
    float part = 0.0f;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < a.head_dim_k) part += qr[i] * kv_elem<kF32>(a.k_dtype, kj, d);
    }
    float s = warp_sum(part) * a.scale;
    if (a.softcap > 0.0f) s = a.softcap * tanhf(s / a.softcap);
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new);  // 0 on the first key (m = -inf)
    const float p = expf(s - m_new);
    l = l * corr + p;
    const uint8_t* vj = V + slot * v_rb;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < a.head_dim_v) acc[i] = acc[i] * corr + p * kv_elem<kF32>(a.v_dtype, vj, d);
    }
    m = m_new;
  }
}

// The chunked walk of query warp w over keys [j0, j1], folded into (m, l, acc) like
// attend_keys. q_smem: this warp's [head_dim_k] floats of shared memory.
template <bool kF32>
__device__ __forceinline__ void attend_keys_chunked(const AttentionArgs& a, int64_t w, int lane,
                                                    int64_t j0, int64_t j1, float& m, float& l,
                                                    float (&acc)[kMaxPerLane], float* q_smem) {
  const HeadRows r = head_rows(a, w);
  const float* q = r.q;
  const int64_t k_rb = r.k_rb, v_rb = r.v_rb;
  const uint8_t* K = r.K;
  const uint8_t* V = r.V;
  for (int d = lane; d < a.head_dim_k; d += kWarp) q_smem[d] = q[d];
  __syncwarp();
  const bool vec4 = kF32 && a.head_dim_k % 4 == 0;  // f32 rows 16-byte aligned
  for (int64_t c = j0; c <= j1; c += kWarp) {
    const int64_t j = c + lane;
    const bool valid = j <= j1;
    float s = -INFINITY;
    if (valid) {
      const uint8_t* kj = K + (j % a.cap) * k_rb;
      float dot = 0.0f;
      if (vec4) {
        const auto* k4 = reinterpret_cast<const float4*>(kj);
        for (int d4 = 0; d4 < a.head_dim_k / 4; ++d4) {
          const float4 kv4 = k4[d4];
          dot += q_smem[4 * d4] * kv4.x + q_smem[4 * d4 + 1] * kv4.y + q_smem[4 * d4 + 2] * kv4.z +
                 q_smem[4 * d4 + 3] * kv4.w;
        }
      } else {
        for (int d = 0; d < a.head_dim_k; ++d) dot += q_smem[d] * kv_elem<kF32>(a.k_dtype, kj, d);
      }
      s = dot * a.scale;
      if (a.softcap > 0.0f) s = a.softcap * tanhf(s / a.softcap);
    }
    float cmax = s;
    for (int off = kWarp / 2; off > 0; off /= 2)
      cmax = fmaxf(cmax, __shfl_xor_sync(0xffffffffu, cmax, off));
    const float m_new = fmaxf(m, cmax);  // finite: lane 0's key is always valid
    const float corr = expf(m - m_new);  // 0 on the first chunk (m = -inf)
    const float p = valid ? expf(s - m_new) : 0.0f;
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) acc[i] *= corr;
    const int n = static_cast<int>(std::min<int64_t>(kWarp, j1 - c + 1));
    for (int jj = 0; jj < n; ++jj) {
      const float pj = __shfl_sync(0xffffffffu, p, jj);
      const uint8_t* vj = V + ((c + jj) % a.cap) * v_rb;
#pragma unroll
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int d = lane + i * kWarp;
        if (d < a.head_dim_v) acc[i] += pj * kv_elem<kF32>(a.v_dtype, vj, d);
      }
    }
    m = m_new;
  }
}

// out = acc / l for lane's dims (zeros when no key is visible, as the CPU does).
__device__ __forceinline__ void write_out(const AttentionArgs& a, int64_t w, int lane, float l,
                                          const float (&acc)[kMaxPerLane]) {
  float* o = a.out + w * a.head_dim_v;
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    if (d < a.head_dim_v) o[d] = acc[i] * inv;
  }
}

template <bool kF32>
__global__ void attention_chunked_kernel(AttentionArgs a) {
  __shared__ float q_smem[kWarpsPerBlock][kMaxAttentionHeadDim];
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (w >= a.T * a.n_head) return;
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  int64_t first, last;
  visible_range(a, a.q_pos[w / a.n_head], first, last);
  if (first <= last)
    attend_keys_chunked<kF32>(a, w, lane, first, last, m, l, acc, q_smem[threadIdx.x / kWarp]);
  write_out(a, w, lane, l, acc);
}

template <bool kF32>
__global__ void attention_reference_kernel(AttentionArgs a) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (w >= a.T * a.n_head) return;
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  int64_t first, last;
  visible_range(a, a.q_pos[w / a.n_head], first, last);
  attend_keys<kF32>(a, w, lane, first, last, m, l, acc);
  write_out(a, w, lane, l, acc);
}

// Split-K decode: warp (w, split) folds chunk `split` of the query's visible keys (kSplitKeys
// positions from the first visible one) into a partial state; attention_combine_kernel merges the
// splits of each query. The grid depends on max_keys only, so a captured graph serves every step.
template <bool kF32>
__global__ void attention_split_kernel(AttentionArgs a, int n_split, float* part_ml,
                                       float* part_acc) {
  __shared__ float q_smem[kWarpsPerBlock][kMaxAttentionHeadDim];
  const int64_t gw = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (gw >= a.T * a.n_head * n_split) return;
  const int64_t w = gw / n_split;
  const int split = static_cast<int>(gw % n_split);
  float acc[kMaxPerLane] = {};
  float m = -INFINITY, l = 0.0f;
  int64_t first, last;
  visible_range(a, a.q_pos[w / a.n_head], first, last);
  const int64_t j0 = first + static_cast<int64_t>(split) * kSplitKeys;
  const int64_t j1 = std::min<int64_t>(last, j0 + kSplitKeys - 1);
  if (j0 <= j1)
    attend_keys_chunked<kF32>(a, w, lane, j0, j1, m, l, acc, q_smem[threadIdx.x / kWarp]);
  if (lane == 0) {
    part_ml[2 * gw] = m;
    part_ml[2 * gw + 1] = l;
  }
  float* pa = part_acc + gw * a.head_dim_v;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    if (d < a.head_dim_v) pa[d] = acc[i];
  }
}

// One warp per query: out = sum_s acc_s e^(m_s - M) / sum_s l_s e^(m_s - M), M = max_s m_s.
__global__ void attention_combine_kernel(AttentionArgs a, int n_split, const float* part_ml,
                                         const float* part_acc) {
  const int64_t w = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (w >= a.T * a.n_head) return;
  const float* ml = part_ml + 2 * w * n_split;
  float M = -INFINITY;
  for (int s = 0; s < n_split; ++s) M = fmaxf(M, ml[2 * s]);
  float acc[kMaxPerLane] = {};
  float L = 0.0f;
  for (int s = 0; s < n_split; ++s) {
    if (ml[2 * s + 1] == 0.0f) continue;  // no visible key in this split
    const float f = expf(ml[2 * s] - M);
    L += ml[2 * s + 1] * f;
    const float* pa = part_acc + (w * n_split + s) * a.head_dim_v;
#pragma unroll
    for (int i = 0; i < kMaxPerLane; ++i) {
      const int d = lane + i * kWarp;
      if (d < a.head_dim_v) acc[i] += pa[d] * f;
    }
  }
  float* o = a.out + w * a.head_dim_v;
  const float inv = L > 0.0f ? 1.0f / L : 0.0f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int d = lane + i * kWarp;
    if (d < a.head_dim_v) o[d] = acc[i] * inv;
  }
}

bool is_f32(const AttentionArgs& a) {
  return a.k_dtype == DType::F32 && a.v_dtype == DType::F32;
}

void check_args(const AttentionArgs& a) {
  KVS_CHECK(kv_storage_supported(a.k_dtype, a.head_dim_k) &&
                kv_storage_supported(a.v_dtype, a.head_dim_v),
            "attention: unsupported cache storage type");
  KVS_CHECK(a.head_dim_k > 0 && a.head_dim_k <= kMaxAttentionHeadDim && a.head_dim_v > 0 &&
                a.head_dim_v <= kMaxAttentionHeadDim,
            "attention: head dim unsupported on CUDA");
  KVS_CHECK(a.n_head_kv > 0 && a.n_head % a.n_head_kv == 0 && a.cap > 0);
}

}  // namespace

int attention_splits(int64_t max_keys) {
  return static_cast<int>(std::max<int64_t>(1, (max_keys + kSplitKeys - 1) / kSplitKeys));
}

size_t attention_split_scratch_floats(const AttentionArgs& a, int64_t max_keys) {
  return static_cast<size_t>(a.T * a.n_head * attention_splits(max_keys)) * (2 + a.head_dim_v);
}

void attention_split(const AttentionArgs& a, int64_t max_keys, float* scratch, cudaStream_t s) {
  check_args(a);
  const int n_split = attention_splits(max_keys);
  const int64_t warps = a.T * a.n_head;
  if (warps == 0) return;
  float* part_ml = scratch;                         // [T][n_head][n_split][2]
  float* part_acc = scratch + 2 * warps * n_split;  // [T][n_head][n_split][hd_v]
  const int64_t split_warps = warps * n_split;
  const auto split_blocks =
      static_cast<unsigned int>((split_warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
  if (is_f32(a))
    attention_split_kernel<true>
        <<<split_blocks, kWarpsPerBlock * kWarp, 0, s>>>(a, n_split, part_ml, part_acc);
  else
    attention_split_kernel<false>
        <<<split_blocks, kWarpsPerBlock * kWarp, 0, s>>>(a, n_split, part_ml, part_acc);
  KVS_CUDA_LAUNCHED();
  attention_combine_kernel<<<static_cast<unsigned int>((warps + kWarpsPerBlock - 1) /
                                                       kWarpsPerBlock),
                             kWarpsPerBlock * kWarp, 0, s>>>(a, n_split, part_ml, part_acc);
  KVS_CUDA_LAUNCHED();
}

namespace {

// One warp per (token, query head): the one-key-at-a-time twin or the chunked kernel.
void launch_per_query(const AttentionArgs& a, cudaStream_t s, bool reference) {
  check_args(a);
  const int64_t warps = a.T * a.n_head;
  if (warps == 0) return;
  const auto blocks = static_cast<unsigned int>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock);
  const unsigned int threads = kWarpsPerBlock * kWarp;
  if (reference && is_f32(a))
    attention_reference_kernel<true><<<blocks, threads, 0, s>>>(a);
  else if (reference)
    attention_reference_kernel<false><<<blocks, threads, 0, s>>>(a);
  else if (is_f32(a))
    attention_chunked_kernel<true><<<blocks, threads, 0, s>>>(a);
  else
    attention_chunked_kernel<false><<<blocks, threads, 0, s>>>(a);
  KVS_CUDA_LAUNCHED();
}

}  // namespace

void attention_reference(const AttentionArgs& a, cudaStream_t s) {
  launch_per_query(a, s, true);
}

void attention(const AttentionArgs& a, cudaStream_t s) {
  launch_per_query(a, s, false);
}

}  // namespace kvs::cuda
