#include "models/model/forward.h"

#include <cmath>

#include "kernels/core/error.h"

namespace kvs {

ops::RopeParams layer_rope(const Model& m, int layer) {
  const ModelConfig& c = m.config();
  ops::RopeParams p;
  p.n_rot = c.n_rot;
  p.neox = c.rope_neox;
  if (c.is_swa(layer)) {
    p.base = c.rope_base_swa;
    p.freq_scale = 1.0f;
  } else {
    p.base = c.rope_base;
    p.freq_scale = c.rope_freq_scale;
    p.freq_factors = m.rope_freqs();
  }
  return p;
}

void forward(const Model& m, std::span<const int32_t> tokens, AttentionContext& ctx,
             ThreadPool& pool, ForwardScratch& s, int64_t n_logits, float* logits) {
  const ModelConfig& c = m.config();
  const int64_t T = static_cast<int64_t>(tokens.size());
  KVS_CHECK(T > 0 && n_logits >= 0 && n_logits <= T);
  const int64_t E = c.n_embd;
  const int64_t q_dim = int64_t{c.n_head} * c.head_dim_k;
  const int64_t k_dim = int64_t{c.n_head_kv} * c.head_dim_k;
  const int64_t v_dim = int64_t{c.n_head_kv} * c.head_dim_v;
  const int64_t o_dim = int64_t{c.n_head} * c.head_dim_v;
  s.x.resize(T * E);          // [T, n_embd] residual stream
  s.h.resize(T * E);          // [T, n_embd] normed input / block output
  s.q.resize(T * q_dim);      // [T, n_head, hd_k]
  s.k.resize(T * k_dim);      // [T, n_kv, hd_k]
  s.v.resize(T * v_dim);      // [T, n_kv, hd_v]
  s.att.resize(T * o_dim);    // [T, n_head, hd_v]
  s.gate.resize(T * c.n_ff);  // [T, n_ff]
  s.up.resize(T * c.n_ff);    // [T, n_ff]

  const auto tap = [&](const char* name, int layer, const float* data, int64_t cols) {
    if (s.tap) s.tap(name, layer, data, T, cols);
  };

  for (int32_t id : tokens)
    KVS_CHECK(id >= 0 && id < c.n_vocab, "token id " + std::to_string(id) + " out of range");
  ops::get_rows(m.token_embd(), tokens.data(), T, s.x.data());
  if (c.embed_scale) ops::scale_inplace(s.x.data(), std::sqrt(static_cast<float>(E)), T * E);

  for (int il = 0; il < c.n_layer; ++il) {
    const LayerWeights& L = m.layer(il);
    ops::rms_norm(s.x.data(), L.attn_norm, s.h.data(), T, E, c.norm_eps);
    tap("attn_norm", il, s.h.data(), E);
    ops::matmul(s.h.data(), T, L.wq, L.bq, s.q.data(), pool);
    ops::matmul(s.h.data(), T, L.wk, L.bk, s.k.data(), pool);
    ops::matmul(s.h.data(), T, L.wv, L.bv, s.v.data(), pool);
    tap("Qcur", il, s.q.data(), q_dim);
    tap("Kcur", il, s.k.data(), k_dim);
    tap("Vcur", il, s.v.data(), v_dim);
    if (c.qk_norm) {
      ops::rms_norm(s.q.data(), L.q_norm, s.q.data(), T * c.n_head, c.head_dim_k, c.norm_eps);
      ops::rms_norm(s.k.data(), L.k_norm, s.k.data(), T * c.n_head_kv, c.head_dim_k, c.norm_eps);
    }
    // Scaling commutes with the rotation, so it can precede RoPE.
    if (c.q_scale != 1.0f) ops::scale_inplace(s.q.data(), c.q_scale, T * q_dim);
    ctx.attend(il, layer_rope(m, il), s.q.data(), s.k.data(), s.v.data(), T, s.att.data());
    tap("kqv_out", il, s.att.data(), o_dim);
    ops::matmul(s.att.data(), T, L.wo, nullptr, s.h.data(), pool);
    tap("attn_out", il, s.h.data(), E);
    if (c.post_norms) {
      ops::rms_norm(s.h.data(), L.post_attn_norm, s.h.data(), T, E, c.norm_eps);
      tap("attn_post_norm", il, s.h.data(), E);
    }
    ops::add_inplace(s.x.data(), s.h.data(), T * E);

    tap("ffn_inp", il, s.x.data(), E);
    ops::rms_norm(s.x.data(), L.ffn_norm, s.h.data(), T, E, c.norm_eps);
    tap("ffn_norm", il, s.h.data(), E);
    ops::matmul(s.h.data(), T, L.gate, nullptr, s.gate.data(), pool);
    ops::matmul(s.h.data(), T, L.up, nullptr, s.up.data(), pool);
    tap("ffn_gate", il, s.gate.data(), c.n_ff);
    tap("ffn_up", il, s.up.data(), c.n_ff);
    // Row by row, as ggml applies its gated activations (vector groups start at each row),
    // rows across the pool; a single row (decode) is not worth a dispatch.
    const auto activate = [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        float* g = s.gate.data() + t * c.n_ff;
        const float* u = s.up.data() + t * c.n_ff;
        if (c.activation == Activation::GeluTanh)
          ops::gelu_tanh_mul(g, u, g, c.n_ff);
        else
          ops::silu_mul(g, u, g, c.n_ff);
      }
    };
    if (T > 1)
      pool.parallel_for(T, activate);
    else
      activate(0, T);
    tap("ffn_act", il, s.gate.data(), c.n_ff);
    ops::matmul(s.gate.data(), T, L.down, nullptr, s.h.data(), pool);
    tap("ffn_out", il, s.h.data(), E);
    if (c.post_norms) {
      ops::rms_norm(s.h.data(), L.post_ffw_norm, s.h.data(), T, E, c.norm_eps);
      tap("ffn_post_norm", il, s.h.data(), E);
    }
    ops::add_inplace(s.x.data(), s.h.data(), T * E);
    tap("l_out", il, s.x.data(), E);
  }

  if (n_logits == 0) return;
  const float* last = s.x.data() + (T - n_logits) * E;
  ops::rms_norm(last, m.output_norm(), s.h.data(), n_logits, E, c.norm_eps);
  if (s.tap) s.tap("result_norm", -1, s.h.data(), n_logits, E);
  ops::matmul(s.h.data(), n_logits, m.output(), nullptr, logits, pool);
  if (s.tap) s.tap("result_output", -1, logits, n_logits, c.n_vocab);
  if (c.final_softcap > 0.0f) {
    const float cap = c.final_softcap;
    for (int64_t i = 0; i < n_logits * c.n_vocab; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
  }
}

}  // namespace kvs
