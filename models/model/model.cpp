#include "models/model/model.h"

#include <cstring>

#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "models/formats/weight_source.h"

namespace kvs {
namespace {

std::string shape_str(const TensorInfo& t) {
  std::string s = "[";
  for (int i = 0; i < t.n_dims; ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
  return s + "]";
}

}  // namespace

const float* Model::small_f32(const WeightSource& ws, const std::string& name, int64_t n,
                              bool required) {
  const TensorInfo* t = ws.find_tensor(name);
  if (t == nullptr) {
    if (required) throw Error(ws.path() + ": missing required tensor '" + name + "'");
    return nullptr;
  }
  if (t->nelements() != n)
    throw Error(ws.path() + ": tensor '" + name + "' has shape " + shape_str(*t) + ", expected " +
                std::to_string(n) + " elements");
  if (!dtype_is_weight_type(t->dtype) || n % dtype_traits(t->dtype).block_size != 0)
    throw Error(ws.path() + ": tensor '" + name + "' has unsupported type " +
                std::string(dtype_name(t->dtype)));
  if (t->dtype == DType::F32) return static_cast<const float*>(t->data);
  Buffer b(static_cast<size_t>(n) * sizeof(float));  // [n] f32 copy
  dequantize_row(t->dtype, t->data, b.as<float>(), n);
  owned_.push_back(std::move(b));
  return owned_.back().as<float>();
}

Tensor Model::matrix(const WeightSource& ws, const std::string& name, int64_t cols, int64_t rows) {
  const TensorInfo& t = ws.tensor(name);
  if (t.n_dims > 2 || t.ne[0] != cols || t.ne[1] != rows)
    throw Error(ws.path() + ": tensor '" + name + "' has shape " + shape_str(t) + ", expected [" +
                std::to_string(cols) + ", " + std::to_string(rows) + "]");
  if (!dtype_is_weight_type(t.dtype))
    throw Error(ws.path() + ": tensor '" + name + "' has unsupported type " +
                std::string(dtype_name(t.dtype)));
  return t.view();
}

Model::Model(const WeightSource& ws, ModelConfig cfg) : cfg_(std::move(cfg)) {
  const ModelConfig& c = cfg_;
  const TensorInfo& emb = ws.tensor("token_embd.weight");
  if (c.n_vocab == 0) cfg_.n_vocab = static_cast<int>(emb.ne[1]);
  token_embd_ = matrix(ws, "token_embd.weight", c.n_embd, c.n_vocab);
  if (ws.find_tensor("output.weight") != nullptr) {
    output_ = matrix(ws, "output.weight", c.n_embd, c.n_vocab);
  } else {
    cfg_.tied_output = true;
    output_ = token_embd_;
  }
  output_norm_ = small_f32(ws, "output_norm.weight", c.n_embd, true);
  if (ws.find_tensor("rope_freqs.weight") != nullptr)
    rope_freqs_ = small_f32(ws, "rope_freqs.weight", c.n_rot / 2, true);

  const int64_t q_dim = int64_t{c.n_head} * c.head_dim_k;
  const int64_t k_dim = int64_t{c.n_head_kv} * c.head_dim_k;
  const int64_t v_dim = int64_t{c.n_head_kv} * c.head_dim_v;
  const int64_t o_dim = int64_t{c.n_head} * c.head_dim_v;
  layers_.resize(c.n_layer);
  for (int il = 0; il < c.n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    LayerWeights& L = layers_[il];
    L.attn_norm = small_f32(ws, p + "attn_norm.weight", c.n_embd, true);
    if (ws.find_tensor(p + "attn_qkv.weight") != nullptr)
      throw Error(ws.path() + ": tensor '" + p + "attn_qkv.weight' (fused QKV) is not supported");
    L.wq = matrix(ws, p + "attn_q.weight", c.n_embd, q_dim);
    L.wk = matrix(ws, p + "attn_k.weight", c.n_embd, k_dim);
    L.wv = matrix(ws, p + "attn_v.weight", c.n_embd, v_dim);
    L.wo = matrix(ws, p + "attn_output.weight", o_dim, c.n_embd);
    if (c.attn_bias) {
      L.bq = small_f32(ws, p + "attn_q.bias", q_dim, false);
      L.bk = small_f32(ws, p + "attn_k.bias", k_dim, false);
      L.bv = small_f32(ws, p + "attn_v.bias", v_dim, false);
    }
    if (c.qk_norm) {
      L.q_norm = small_f32(ws, p + "attn_q_norm.weight", c.head_dim_k, true);
      L.k_norm = small_f32(ws, p + "attn_k_norm.weight", c.head_dim_k, true);
    }
    if (c.post_norms) {
      L.post_attn_norm = small_f32(ws, p + "post_attention_norm.weight", c.n_embd, true);
      L.post_ffw_norm = small_f32(ws, p + "post_ffw_norm.weight", c.n_embd, true);
    }
    L.ffn_norm = small_f32(ws, p + "ffn_norm.weight", c.n_embd, true);
    L.gate = matrix(ws, p + "ffn_gate.weight", c.n_embd, c.n_ff);
    L.up = matrix(ws, p + "ffn_up.weight", c.n_embd, c.n_ff);
    L.down = matrix(ws, p + "ffn_down.weight", c.n_ff, c.n_embd);
  }
}

}  // namespace kvs
