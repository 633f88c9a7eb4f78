#pragma once
// KVCache: for each (layer, KV head) its own K and V slot arrays, a length, each slot's
// original token position and (when a policy needs it) the attention mass each slot has
// received. Heads are sized independently and shrink after eviction, so a head that keeps
// 256 tokens holds about 256 slots, not the context length: freed memory is really freed.
#include <cstdint>
#include <vector>

#include "kernels/attention/kv_view.h"
#include "kernels/core/buffer.h"
#include "kernels/core/dtype.h"

namespace kvs {

struct KVCacheShape {
  int n_layer = 0;
  int n_head_kv = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  // Storage types: F32, F16, BF16, Q8_0 or Q4_0 (block formats need head_dim % 32 == 0).
  std::vector<DType> k_dtype;  // [n_layer]
  std::vector<DType> v_dtype;  // [n_layer]
};

// True when `t` can store a head of `head_dim` channels.
bool kv_dtype_supported(DType t, int head_dim);

class KVCache {
 public:
  // max_len[layer]: the most slots a head of that layer may ever hold (its context bound).
  KVCache(KVCacheShape shape, std::vector<int32_t> max_len);

  const KVCacheShape& shape() const { return shape_; }
  int32_t len(int layer, int head) const { return head_at(layer, head).len; }
  int32_t capacity(int layer, int head) const { return head_at(layer, head).cap; }
  int32_t max_len(int layer) const { return max_len_[layer]; }
  const int32_t* positions(int layer, int head) const { return head_at(layer, head).pos.data(); }
  // Raw slot storage in the layer's storage type: [cap][row bytes].
  const uint8_t* k_data(int layer, int head) const { return head_at(layer, head).k.as<uint8_t>(); }
  const uint8_t* v_data(int layer, int head) const { return head_at(layer, head).v.as<uint8_t>(); }
  // K/V of slots [0, len) as f32 (dequantized when stored otherwise): dst [len][head_dim].
  void read_k(int layer, int head, float* dst) const;
  void read_v(int layer, int head, float* dst) const;

  // Accumulated attention mass per slot, kept in step with the slots: [len]. Enabled per
  // layer by the cache manager for policies that need it.
  void enable_scores(int layer);
  bool has_scores(int layer) const { return scores_on_[layer]; }
  float* scores(int layer, int head) { return head_at(layer, head).score.data(); }
  const float* scores(int layer, int head) const { return head_at(layer, head).score.data(); }

  // Appends T tokens to every head of a layer, growing heads as needed (up to max_len).
  // k: [T, n_kv, hd_k], v: [T, n_kv, hd_v], pos: [T].
  void append(int layer, const float* k, const float* v, const int32_t* pos, int64_t T);
  // Appends one slot to one head (razor's compensation token). k: [hd_k], v: [hd_v].
  void append_slot(int layer, int head, const float* k, const float* v, int32_t pos);

  // Keeps only the listed slots (ascending indices) in one gather, then returns the memory
  // of the dropped slots, keeping `margin` free slots for the next appends. With an append
  // growth step set, a head whose allocation exceeds that by no more than the step keeps it:
  // re-allocating to free a few slots would copy the whole head at every compression.
  void keep_slots(int layer, int head, const std::vector<int32_t>& slots, int32_t margin = 0);
  // Single-token appends past a head's capacity grow it by `slots` (0: by half, amortized
  // O(1)). A cache that is compressed while decoding wants a small fixed step, since the
  // next compression would free a geometric overshoot again.
  void set_append_growth(int32_t slots) { growth_ = slots; }
  // Keys of one head as f32 in place, [len][head_dim_k], or null when stored in another type.
  const float* k_f32(int layer, int head) const {
    return shape_.k_dtype[layer] == DType::F32 ? head_at(layer, head).k.as<float>() : nullptr;
  }
  const float* v_f32(int layer, int head) const {
    return shape_.v_dtype[layer] == DType::F32 ? head_at(layer, head).v.as<float>() : nullptr;
  }
  // Drops slots whose position is below min_pos (sliding-window layers).
  void drop_before(int layer, int32_t min_pos, int32_t margin = 0);
  void clear();

  KVView view(int layer);

  size_t slot_bytes(int layer) const;  // K + V bytes of one slot of one head
  size_t bytes_in_use() const;         // slots holding tokens
  size_t bytes_allocated() const;      // slots allocated
  size_t bytes_in_use(int layer) const;
  size_t peak_bytes_allocated() const { return peak_allocated_; }
  int64_t tokens_in_layer(int layer) const;  // sum of head lengths

 private:
  struct Head {
    Buffer k, v;               // [cap][row bytes of k], [cap][row bytes of v]
    std::vector<int32_t> pos;  // [cap]
    std::vector<float> score;  // [cap] when scores are enabled
    int32_t len = 0;
    int32_t cap = 0;
  };
  Head& head_at(int layer, int head) {
    return heads_[static_cast<size_t>(layer) * shape_.n_head_kv + head];
  }
  const Head& head_at(int layer, int head) const {
    return heads_[static_cast<size_t>(layer) * shape_.n_head_kv + head];
  }
  void reallocate(int layer, Head& h, int32_t new_cap);
  void reserve(int layer, Head& h, int32_t need, bool exact);

  KVCacheShape shape_;
  std::vector<int32_t> max_len_;  // [n_layer]
  std::vector<bool> scores_on_;   // [n_layer]
  std::vector<Head> heads_;       // [n_layer * n_head_kv]
  size_t allocated_ = 0;
  size_t peak_allocated_ = 0;
  int32_t growth_ = 0;  // see set_append_growth
};

}  // namespace kvs
