#pragma once
// A loaded model: configuration plus views of its weights (zero copy from the source) and
// the few small tensors (norms, biases) converted to f32 once at load.
#include <memory>
#include <string>
#include <vector>

#include "kernels/core/buffer.h"
#include "kernels/core/tensor.h"
#include "models/model/config.h"

namespace kvs {

class WeightSource;

struct LayerWeights {
  const float* attn_norm = nullptr;  // [n_embd]
  Tensor wq, wk, wv,
      wo;  // {n_embd, n_head*hd_k}, {n_embd, n_kv*hd_k}, {n_embd, n_kv*hd_v}, {n_head*hd_v, n_embd}
  const float* bq = nullptr;              // [n_head*hd_k] or null
  const float* bk = nullptr;              // [n_kv*hd_k] or null
  const float* bv = nullptr;              // [n_kv*hd_v] or null
  const float* q_norm = nullptr;          // [hd_k] (qk_norm)
  const float* k_norm = nullptr;          // [hd_k] (qk_norm)
  const float* post_attn_norm = nullptr;  // [n_embd] (post_norms)
  const float* ffn_norm = nullptr;        // [n_embd]
  Tensor gate, up, down;                  // {n_embd, n_ff}, {n_embd, n_ff}, {n_ff, n_embd}
  const float* post_ffw_norm = nullptr;   // [n_embd] (post_norms)
};

class Model {
 public:
  // Binds and checks every tensor the configuration needs. Throws kvs::Error naming the
  // file and the tensor when one is missing or has the wrong shape or type.
  Model(const WeightSource& ws, ModelConfig cfg);

  const ModelConfig& config() const { return cfg_; }
  const Tensor& token_embd() const { return token_embd_; }   // {n_embd, n_vocab}
  const Tensor& output() const { return output_; }           // {n_embd, n_vocab} (tied: token_embd)
  const float* output_norm() const { return output_norm_; }  // [n_embd]
  const float* rope_freqs() const { return rope_freqs_; }    // [n_rot/2] or null
  const LayerWeights& layer(int il) const { return layers_[il]; }

 private:
  const float* small_f32(const WeightSource& ws, const std::string& name, int64_t n, bool required);
  Tensor matrix(const WeightSource& ws, const std::string& name, int64_t cols, int64_t rows);

  ModelConfig cfg_;
  Tensor token_embd_, output_;
  const float* output_norm_ = nullptr;
  const float* rope_freqs_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<Buffer> owned_;  // f32 copies of small non-f32 tensors
};

}  // namespace kvs
