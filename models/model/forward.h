#pragma once
// The shared decoder forward pass. Architectures differ only by flags in ModelConfig; the
// cache and attention are reached only through AttentionContext::attend.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kernels/core/thread_pool.h"
#include "kernels/cpu/ops.h"
#include "models/model/model.h"

namespace kvs {

class AttentionContext {
 public:
  virtual ~AttentionContext() = default;
  // One layer's attention for the current batch of T tokens. q/k arrive before RoPE (the
  // context applies `rope` as its position mode requires); the context stores k/v in its
  // cache and writes the attention output.
  // q: [T, n_head, hd_k], k: [T, n_kv, hd_k], v: [T, n_kv, hd_v], out: [T, n_head, hd_v].
  virtual void attend(int layer, const ops::RopeParams& rope, float* q, float* k, const float* v,
                      int64_t T, float* out) = 0;
};

// Scratch activations, reused across calls (sized on first use for the largest batch).
struct ForwardScratch {
  std::vector<float> x, h, q, k, v, att, gate, up;
  // Debugging aid: when set, receives each intermediate under llama.cpp's graph name
  // ("attn_norm", "Qcur", ..., "l_out"; layer -1 for "result_norm"/"result_output") as
  // data[rows, cols], so the two engines can be compared op by op.
  std::function<void(const char* name, int layer, const float* data, int64_t rows, int64_t cols)>
      tap;
};

// RoPE parameters of a layer (local sliding-window layers use their own base and no scaling).
ops::RopeParams layer_rope(const Model& m, int layer);

// Runs tokens through the model. logits receives the last n_logits rows: [n_logits, n_vocab].
void forward(const Model& m, std::span<const int32_t> tokens, AttentionContext& ctx,
             ThreadPool& pool, ForwardScratch& s, int64_t n_logits, float* logits);

}  // namespace kvs
