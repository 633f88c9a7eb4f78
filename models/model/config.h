#pragma once
// Hyper-parameters of a decoder-only model, read from GGUF-convention metadata (HF
// config.json is translated into the same keys by the safetensors reader).
#include <string>
#include <vector>

namespace kvs {

class MetaMap;

enum class Activation { Silu, GeluTanh };

struct ModelConfig {
  std::string arch;  // registry name: llama, qwen2, qwen3, gemma3
  std::string name;  // general.name
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  int n_ff = 0;
  int n_ctx_train = 0;
  float norm_eps = 1e-5f;

  // RoPE
  int n_rot = 0;
  float rope_base = 10000.0f;
  float rope_base_swa = 10000.0f;  // local (sliding-window) layers
  float rope_freq_scale = 1.0f;    // global layers; local layers always use 1
  bool rope_neox = false;

  // Attention
  float q_scale = 1.0f;       // multiplies Q after RoPE (gemma3's query_pre_attn_scalar)
  float kq_scale = 1.0f;      // multiplies q·k inside attention
  float attn_softcap = 0.0f;  // 0 = off
  float final_softcap = 0.0f;
  int sliding_window = 0;          // 0 = no sliding-window layers
  std::vector<bool> layer_is_swa;  // [n_layer]

  // Block structure (set by the architecture)
  Activation activation = Activation::Silu;
  bool qk_norm = false;      // per-head RMSNorm of Q and K before RoPE
  bool post_norms = false;   // gemma: RMSNorm on the attention and FFN outputs
  bool embed_scale = false;  // x = embd * sqrt(n_embd)
  bool attn_bias = false;    // optional q/k/v biases are read when present
  bool tied_output = false;  // no output.weight: logits use token_embd

  bool is_swa(int layer) const { return !layer_is_swa.empty() && layer_is_swa[layer]; }
};

}  // namespace kvs
