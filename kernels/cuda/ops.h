#pragma once
// CUDA ops on f32 activations in device memory, the twins of kernels/cpu/ops.h (each is
// tested against its CPU reference in tests/cuda). Weights are raw GGUF blocks on the device
// (matmul and get_rows read them directly). Every op is asynchronous on the given stream.
#include <cuda_runtime.h>

#include <cstdint>
#include <initializer_list>

#include "kernels/core/dtype.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/context.h"

namespace kvs::cuda {

// A weight matrix on the device: `rows` outputs of `cols` inputs, row-major GGUF blocks.
struct DeviceMatrix {
  const void* data = nullptr;
  DType dtype = DType::F32;
  int64_t cols = 0;  // K (inputs)
  int64_t rows = 0;  // N (outputs)
};

// Whether matmul / get_rows read this block type on the device.
bool supports_dtype(DType t);

// Above this many tokens matmul dequantizes W to bf16 and calls cuBLAS; at or below it reads
// the blocks directly (one warp per output row, the decode path): Q4_0..Q8_0 and Q4_K..Q6_K
// with activations quantized as the CPU does (block_dot.h), the other types dequantized.
inline constexpr int64_t kGemvMaxTokens = 8;

enum class GemmPath { Auto, Gemv, Gemm };

// y[t, n] = sum_k x[t, k] W[n, k] (+ bias[n]). x: [T, K], bias: [N] or null, y: [T, N].
void matmul(const float* x, int64_t T, const DeviceMatrix& W, const float* bias, float* y,
            CudaContext& ctx, GemmPath path = GemmPath::Auto);

// Several matrices on one input (q/k/v, gate/up): y_i = x W_i^T (+ bias_i). The decode path
// quantizes x once for consecutive matrices that read the same activation format.
struct MatmulOut {
  const DeviceMatrix* W = nullptr;
  const float* bias = nullptr;  // [N] or null
  float* y = nullptr;           // [T, N]
};
void matmul_shared_input(const float* x, int64_t T, std::initializer_list<MatmulOut> outs,
                         CudaContext& ctx);

// The gated FFN input: out = act(x gate^T) * (x up^T), act SiLU or (gelu) GELU-tanh. For
// decode with gate and up of one type it is one kernel (both rows in a warp, bit-identical to
// the separate GEMVs and silu_mul / gelu_tanh_mul); otherwise those ops, with up's product in
// up_scratch [T, N]. out: [T, N].
void matmul_glu(const float* x, int64_t T, const DeviceMatrix& gate, const DeviceMatrix& up,
                bool gelu, float* out, float* up_scratch, CudaContext& ctx);

// x [T, K] quantized as the CPU's quantize_activation(weight_type, ...) quantizes each row
// (the same bytes): out [T][activation row bytes]. For the weight types with unit dots.
void quantize_activation(DType weight_type, const float* x, int64_t T, int64_t K, uint8_t* out,
                         cudaStream_t s);

// Bytes of ctx.act_q the decode path needs for T tokens of W (0 for dequantized types), so
// that a runner can reserve it before capturing a graph.
size_t gemv_scratch_bytes(const DeviceMatrix& W, int64_t T);

// out[i, :] = E[ids[i], :] dequantized. ids: [n] device, E: D = cols, out: [n, D].
void get_rows(const DeviceMatrix& E, const int32_t* ids, int64_t n, float* out, cudaStream_t s);

// Dequantized W as bf16 bits [rows][cols] (the prefill GEMM's operand, also used in tests).
void dequantize_bf16(const DeviceMatrix& W, uint16_t* out, cudaStream_t s);

void rms_norm(const float* x, const float* w, float* y, int64_t rows, int64_t n, float eps,
              cudaStream_t s);
// rms_norm of q [rows_q, n] (weight wq) and k [rows_k, n] (weight wk) in place, one launch
// (bit-identical to two rms_norm calls).
void rms_norm_qk(float* q, const float* wq, int64_t rows_q, float* k, const float* wk,
                 int64_t rows_k, int64_t n, float eps, cudaStream_t s);
// The residual add and the next norm in one kernel: x += h, y = rms_norm(x) * w (bit-identical
// to add_inplace then rms_norm). x, h, y: [rows, n]; y may alias h.
void add_rms_norm(float* x, const float* h, const float* w, float* y, int64_t rows, int64_t n,
                  float eps, cudaStream_t s);

// Per-pair frequencies, computed on the host exactly as ops::rope does.
struct RopeTable {
  static constexpr int kMaxPairs = 256;
  int n_rot = 0;
  bool neox = false;
  float theta[kMaxPairs] = {};
};
RopeTable rope_table(const ops::RopeParams& p);
// x: [T, n_heads, head_dim] rotated in place; pos: [T] device.
void rope(float* x, int64_t T, int n_heads, int head_dim, const int32_t* pos,
          const RopeTable& table, cudaStream_t s);
// rope of q [T, n_head, head_dim] and k [T, n_kv, head_dim] in one launch (bit-identical).
void rope_qk(float* q, int n_head, float* k, int n_kv, int64_t T, int head_dim, const int32_t* pos,
             const RopeTable& table, cudaStream_t s);

void silu_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t s);
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s);
void scale_inplace(float* x, float k, int64_t n, cudaStream_t s);
void softcap_inplace(float* x, float cap, int64_t n, cudaStream_t s);  // cap * tanh(x / cap)

// Full-cache attention, the reference-quality GPU backend: the cache of one layer holds the
// key and value of position j of every KV head in slot j % cap, for the positions j < n_keys
// a query may see (a ring on sliding-window layers), each row in k_dtype / v_dtype (F32, F16,
// BF16, Q8_0 or Q4_0: kv_store.h).
struct AttentionArgs {
  const float* q = nullptr;        // [T][n_head][hd_k], rotated
  const int32_t* q_pos = nullptr;  // [T]
  const void* k = nullptr;         // [n_kv][cap][row of hd_k in k_dtype]
  const void* v = nullptr;         // [n_kv][cap][row of hd_v in v_dtype]
  DType k_dtype = DType::F32, v_dtype = DType::F32;
  float* out = nullptr;  // [T][n_head][hd_v]
  int64_t T = 0, n_keys = 0, cap = 0;
  int n_head = 0, n_head_kv = 0, head_dim_k = 0, head_dim_v = 0;
  float scale = 1.0f;  // on q·k
  int window = 0;      // a query at p sees keys at p0 with p - p0 < window; 0 = off
  float softcap = 0.0f;
};
inline constexpr int kMaxAttentionHeadDim = 512;
// Keys 32 at a time per warp (prefill).
void attention(const AttentionArgs& a, cudaStream_t s);
// Keys one at a time per warp: the twin the other kernels are tested against.
void attention_reference(const AttentionArgs& a, cudaStream_t s);

// The same attention split over chunks of kAttentionSplitKeys of each query's visible keys
// (one warp each, in parallel), then merged per query: for decode over long caches. The
// launch depends only on max_keys (at least any query's number of visible keys: the context
// size, or the window on sliding-window layers), not on the positions, so one captured graph
// serves every step. scratch: attention_split_scratch_floats(a, max_keys)
// floats of device memory.
inline constexpr int64_t kAttentionSplitKeys = 256;
int attention_splits(int64_t max_keys);
size_t attention_split_scratch_floats(const AttentionArgs& a, int64_t max_keys);
void attention_split(const AttentionArgs& a, int64_t max_keys, float* scratch, cudaStream_t s);

// Stores this batch's k/v rows into slots pos[t] % cap (pos: [T] device, read on the device
// so that a captured decode graph serves every step), converted to the storage types as the
// CPU cache converts them. k: [T][n_kv][hd_k] -> cache [n_kv][cap][row of hd_k in k_dtype]
// (the same for v with hd_v).
void store_kv(const float* k, const float* v, int64_t T, int n_kv, int hd_k, int hd_v,
              const int32_t* pos, int64_t cap, void* cache_k, void* cache_v, cudaStream_t s,
              DType k_dtype = DType::F32, DType v_dtype = DType::F32);
// Whether the device cache can store rows of head_dim values in t.
bool kv_storage_supported(DType t, int head_dim);

}  // namespace kvs::cuda
