// The decoder forward pass on the device: models/model/forward.cpp step by step with the CUDA
// ops, and a KV cache holding every visible token (a ring of window + batch - 1 slots on
// sliding-window layers, like the CPU cache).
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "engine/cuda/cuda_model.h"
#include "kernels/core/error.h"
#include "models/model/forward.h"

namespace kvs {
namespace {

class CudaRunner final : public DeviceRunner {
 public:
  CudaRunner(const CudaModel& dm, int n_ctx, int n_batch, const DeviceCacheSpec& spec)
      : dm_(dm), c_(dm.model().config()), n_ctx_(n_ctx), n_batch_(n_batch) {
    KVS_CHECK(n_ctx > 0 && n_batch > 0);
    k_dtype_ = spec.k_dtype.empty() ? std::vector<DType>(c_.n_layer, DType::F32) : spec.k_dtype;
    v_dtype_ = spec.v_dtype.empty() ? std::vector<DType>(c_.n_layer, DType::F32) : spec.v_dtype;
    KVS_CHECK(static_cast<int>(k_dtype_.size()) == c_.n_layer &&
              static_cast<int>(v_dtype_.size()) == c_.n_layer);
    for (int il = 0; il < c_.n_layer; ++il)
      if (!cuda::kv_storage_supported(k_dtype_[il], c_.head_dim_k) ||
          !cuda::kv_storage_supported(v_dtype_[il], c_.head_dim_v))
        throw Error("--device cuda: layer " + std::to_string(il) + " stores its cache as " +
                    std::string(dtype_name(k_dtype_[il])) + "/" +
                    std::string(dtype_name(v_dtype_[il])) + ", which the device cache cannot");
    const int64_t B = n_batch;
    const int64_t E = c_.n_embd;
    q_dim_ = int64_t{c_.n_head} * c_.head_dim_k;
    k_dim_ = int64_t{c_.n_head_kv} * c_.head_dim_k;
    v_dim_ = int64_t{c_.n_head_kv} * c_.head_dim_v;
    o_dim_ = int64_t{c_.n_head} * c_.head_dim_v;
    x_.resize(B * E * 4);           // [B, n_embd] residual stream
    h_.resize(B * E * 4);           // [B, n_embd] normed input / block output
    q_.resize(B * q_dim_ * 4);      // [B, n_head, hd_k]
    k_.resize(B * k_dim_ * 4);      // [B, n_kv, hd_k]
    v_.resize(B * v_dim_ * 4);      // [B, n_kv, hd_v]
    att_.resize(B * o_dim_ * 4);    // [B, n_head, hd_v]
    gate_.resize(B * c_.n_ff * 4);  // [B, n_ff]
    up_.resize(B * c_.n_ff * 4);    // [B, n_ff]
    ids_.resize(B * 4);             // [B] token ids
    pos_.resize(B * 4);             // [B] positions
    cap_.resize(c_.n_layer);
    cache_k_.resize(c_.n_layer);
    cache_v_.resize(c_.n_layer);
    for (int il = 0; il < c_.n_layer; ++il) {
      cap_[il] = c_.is_swa(il) ? std::min<int64_t>(n_ctx, c_.sliding_window - 1 + n_batch) : n_ctx;
      // [n_kv][cap][row of hd_k in k_dtype], [n_kv][cap][row of hd_v in v_dtype]
      cache_k_[il].resize(static_cast<size_t>(cap_[il]) * c_.n_head_kv * k_row_bytes(il));
      cache_v_[il].resize(static_cast<size_t>(cap_[il]) * c_.n_head_kv * v_row_bytes(il));
      allocated_ += cache_k_[il].bytes() + cache_v_[il].bytes();
    }
    for (int il = 0; il < c_.n_layer; ++il)
      rope_[il] = cuda::rope_table(layer_rope(dm.model(), il));
    decode_logits_.resize(static_cast<size_t>(c_.n_vocab) * 4);
    // The decode path's scratch at its largest, so that it never moves under a captured graph.
    size_t act = cuda::gemv_scratch_bytes(dm.output(), cuda::kGemvMaxTokens);
    for (int il = 0; il < c_.n_layer; ++il) {
      const CudaLayer& L = dm.layer(il);
      for (const cuda::DeviceMatrix* W : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down})
        act = std::max(act, cuda::gemv_scratch_bytes(*W, cuda::kGemvMaxTokens));
    }
    ctx_.act_q.reserve(act);
    // Split-K attention's partial states for up to kGemvMaxTokens decode tokens.
    cuda::AttentionArgs a;
    a.T = cuda::kGemvMaxTokens;
    a.n_head = c_.n_head;
    a.head_dim_v = c_.head_dim_v;
    size_t split = 0;
    for (int il = 0; il < c_.n_layer; ++il)
      split = std::max(split, cuda::attention_split_scratch_floats(a, max_visible(il)));
    split_scratch_.resize(split * 4);
    const char* g = std::getenv("KVSIEVE_CUDA_GRAPHS");
    use_graph_ = g == nullptr || std::string(g) != "0";
  }

  ~CudaRunner() override {
    if (graph_exec_ != nullptr) cudaGraphExecDestroy(graph_exec_);
    if (graph_ != nullptr) cudaGraphDestroy(graph_);
  }

  void forward(std::span<const int32_t> tokens, int64_t n_past, int64_t n_logits,
               float* logits) override {
    const int64_t T = static_cast<int64_t>(tokens.size());
    KVS_CHECK(T > 0 && T <= n_batch_ && n_logits >= 0 && n_logits <= T);
    KVS_CHECK(n_past + T <= n_ctx_, "CUDA runner: context overflow");
    const cudaStream_t s = ctx_.stream();
    const int64_t V = c_.n_vocab;
    std::vector<int32_t> pos(static_cast<size_t>(T));
    std::iota(pos.begin(), pos.end(), static_cast<int32_t>(n_past));
    KVS_CUDA(cudaMemcpyAsync(ids_.get(), tokens.data(), T * 4, cudaMemcpyHostToDevice, s));
    KVS_CUDA(cudaMemcpyAsync(pos_.get(), pos.data(), T * 4, cudaMemcpyHostToDevice, s));
    float* out = nullptr;
    if (T == 1 && n_logits == 1 && use_graph_) {
      // A decode step: every kernel reads the token and position from ids_/pos_, so one
      // captured graph serves every step (small models are launch-bound without it).
      if (graph_exec_ == nullptr) capture_decode_graph();
      KVS_CUDA(cudaGraphLaunch(graph_exec_, s));
      out = decode_logits_.as<float>();
    } else {
      if (n_logits > 0) logits_.reserve(static_cast<size_t>(n_logits * V) * 4);
      enqueue(T, n_logits, logits_.as<float>());
      out = logits_.as<float>();
    }
    if (n_logits > 0)
      KVS_CUDA(cudaMemcpyAsync(logits, out, static_cast<size_t>(n_logits * V) * 4,
                               cudaMemcpyDeviceToHost, s));
    ctx_.synchronize();  // also surfaces any kernel's execution error here
  }

  size_t kv_bytes_in_use(int64_t n_past) const override {
    size_t b = 0;
    for (int il = 0; il < c_.n_layer; ++il)
      b +=
          static_cast<size_t>(kv_tokens_in_layer(il, n_past)) * (k_row_bytes(il) + v_row_bytes(il));
    return b;
  }
  size_t kv_bytes_allocated() const override { return allocated_; }
  int64_t kv_tokens_in_layer(int layer, int64_t n_past) const override {
    // Sliding-window layers still hold the last window - 1 positions (the next query's view).
    const int64_t held =
        c_.is_swa(layer) ? std::min<int64_t>(n_past, c_.sliding_window - 1) : n_past;
    return held * c_.n_head_kv;
  }

 private:
  // The forward pass of T tokens whose ids and positions are in ids_ / pos_, logits of the
  // last n_logits into `logits` [n_logits, n_vocab]; kernels only, no host synchronization.
  void enqueue(int64_t T, int64_t n_logits, float* logits) {
    const cudaStream_t s = ctx_.stream();
    const int64_t E = c_.n_embd;
    float* x = x_.as<float>();
    float* h = h_.as<float>();
    float* q = q_.as<float>();
    float* k = k_.as<float>();
    float* v = v_.as<float>();
    float* att = att_.as<float>();
    float* gate = gate_.as<float>();
    float* up = up_.as<float>();
    const int32_t* dpos = pos_.as<int32_t>();

    cuda::get_rows(dm_.token_embd(), ids_.as<int32_t>(), T, x, s);
    if (c_.embed_scale) cuda::scale_inplace(x, std::sqrt(static_cast<float>(E)), T * E, s);
    // The FFN's residual add is fused into the next norm (add_rms_norm): h holds the block
    // output that x has not taken yet.
    bool pending = false;
    for (int il = 0; il < c_.n_layer; ++il) {
      const CudaLayer& L = dm_.layer(il);
      if (pending)
        cuda::add_rms_norm(x, h, L.attn_norm, h, T, E, c_.norm_eps, s);
      else
        cuda::rms_norm(x, L.attn_norm, h, T, E, c_.norm_eps, s);
      cuda::matmul_shared_input(h, T, {{&L.wq, L.bq, q}, {&L.wk, L.bk, k}, {&L.wv, L.bv, v}}, ctx_);
      if (c_.qk_norm) {
        cuda::rms_norm_qk(q, L.q_norm, T * c_.n_head, k, L.k_norm, T * c_.n_head_kv, c_.head_dim_k,
                          c_.norm_eps, s);
      }
      if (c_.q_scale != 1.0f) cuda::scale_inplace(q, c_.q_scale, T * q_dim_, s);
      cuda::rope_qk(q, c_.n_head, k, c_.n_head_kv, T, c_.head_dim_k, dpos, rope_[il], s);
      void* ck = cache_k_[il].get();
      void* cv = cache_v_[il].get();
      cuda::store_kv(k, v, T, c_.n_head_kv, c_.head_dim_k, c_.head_dim_v, dpos, cap_[il], ck, cv, s,
                     k_dtype_[il], v_dtype_[il]);
      cuda::AttentionArgs a;
      a.q = q;
      a.q_pos = dpos;
      a.k = ck;
      a.v = cv;
      a.k_dtype = k_dtype_[il];
      a.v_dtype = v_dtype_[il];
      a.out = att;
      a.T = T;
      // Causality bounds every query by its own position (all stored above), so the key count
      // need not change from step to step: a captured graph stays valid.
      a.n_keys = n_ctx_;
      a.cap = cap_[il];
      a.n_head = c_.n_head;
      a.n_head_kv = c_.n_head_kv;
      a.head_dim_k = c_.head_dim_k;
      a.head_dim_v = c_.head_dim_v;
      a.scale = c_.kq_scale;
      a.window = c_.is_swa(il) ? c_.sliding_window : 0;
      a.softcap = c_.attn_softcap;
      if (T <= cuda::kGemvMaxTokens)
        cuda::attention_split(a, max_visible(il), split_scratch_.as<float>(), s);
      else
        cuda::attention(a, s);
      cuda::matmul(att, T, L.wo, nullptr, h, ctx_);
      if (c_.post_norms) cuda::rms_norm(h, L.post_attn_norm, h, T, E, c_.norm_eps, s);
      cuda::add_rms_norm(x, h, L.ffn_norm, h, T, E, c_.norm_eps, s);
      cuda::matmul_glu(h, T, L.gate, L.up, c_.activation == Activation::GeluTanh, gate, up, ctx_);
      cuda::matmul(gate, T, L.down, nullptr, h, ctx_);
      if (c_.post_norms) cuda::rms_norm(h, L.post_ffw_norm, h, T, E, c_.norm_eps, s);
      pending = true;
    }
    if (n_logits == 0) return;  // the residual stream is not needed further
    // Only the rows that produce logits take the last residual add.
    const int64_t r0 = T - n_logits;
    cuda::add_rms_norm(x + r0 * E, h + r0 * E, dm_.output_norm(), h + r0 * E, n_logits, E,
                       c_.norm_eps, s);
    cuda::matmul(h + r0 * E, n_logits, dm_.output(), nullptr, logits, ctx_);
    if (c_.final_softcap > 0.0f)
      cuda::softcap_inplace(logits, c_.final_softcap, n_logits * c_.n_vocab, s);
  }

  size_t k_row_bytes(int il) const { return row_bytes(k_dtype_[il], c_.head_dim_k); }
  size_t v_row_bytes(int il) const { return row_bytes(v_dtype_[il], c_.head_dim_v); }

  // The most keys a query of layer il sees: the context, or the window on sliding layers.
  int64_t max_visible(int il) const {
    return c_.is_swa(il) ? std::min<int64_t>(n_ctx_, c_.sliding_window) : n_ctx_;
  }

  void capture_decode_graph() {
    const cudaStream_t s = ctx_.stream();
    KVS_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    try {
      enqueue(1, 1, decode_logits_.as<float>());
    } catch (...) {
      cudaGraph_t g = nullptr;
      cudaStreamEndCapture(s, &g);
      if (g != nullptr) cudaGraphDestroy(g);
      throw;
    }
    KVS_CUDA(cudaStreamEndCapture(s, &graph_));
    KVS_CUDA(cudaGraphInstantiate(&graph_exec_, graph_, 0));
  }

  const CudaModel& dm_;
  const ModelConfig& c_;
  int64_t n_ctx_, n_batch_;
  int64_t q_dim_ = 0, k_dim_ = 0, v_dim_ = 0, o_dim_ = 0;
  cuda::CudaContext ctx_;
  cuda::DeviceBuffer x_, h_, q_, k_, v_, att_, gate_, up_, ids_, pos_, logits_;
  cuda::DeviceBuffer decode_logits_;  // [n_vocab] the decode graph's output
  cuda::DeviceBuffer split_scratch_;  // split-K attention partials (attention_split_scratch_floats)
  bool use_graph_ = true;
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t graph_exec_ = nullptr;
  std::vector<DType> k_dtype_, v_dtype_;               // [n_layer] cache storage types
  std::vector<int64_t> cap_;                           // [n_layer] slots per KV head
  std::vector<cuda::DeviceBuffer> cache_k_, cache_v_;  // [n_layer]
  std::map<int, cuda::RopeTable> rope_;
  size_t allocated_ = 0;
};

}  // namespace

std::unique_ptr<DeviceRunner> CudaModel::make_runner(int n_ctx, int n_batch,
                                                     const DeviceCacheSpec& cache) const {
  return std::make_unique<CudaRunner>(*this, n_ctx, n_batch, cache);
}

}  // namespace kvs
