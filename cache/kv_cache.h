#pragma once
// KVCache: for each (layer, KV head) its own K and V slot arrays, a length, and each slot's
// original token position. Heads are sized independently, so a head that keeps 256 tokens
// holds 256 slots, not the context length.
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
  DType k_dtype = DType::F32;
  DType v_dtype = DType::F32;
};

class KVCache {
 public:
  // capacity[layer]: slots allocated for every head of that layer.
  KVCache(const KVCacheShape& shape, const std::vector<int32_t>& capacity);

  const KVCacheShape& shape() const { return shape_; }
  int32_t len(int layer, int head) const { return head_(layer, head).len; }
  int32_t capacity(int layer, int head) const { return head_(layer, head).cap; }
  const int32_t* positions(int layer, int head) const { return head_(layer, head).pos.data(); }
  float* k(int layer, int head) { return head_(layer, head).k.as<float>(); }  // [cap][hd_k]
  float* v(int layer, int head) { return head_(layer, head).v.as<float>(); }  // [cap][hd_v]

  // Appends T tokens to every head of a layer.
  // k: [T, n_kv, hd_k], v: [T, n_kv, hd_v], pos: [T]. Fails (KVS_CHECK) past capacity:
  // callers size the cache and evict before appending.
  void append(int layer, const float* k, const float* v, const int32_t* pos, int64_t T);

  // Keeps only the slots listed (ascending slot indices), in one gather.
  void keep_slots(int layer, int head, const std::vector<int32_t>& slots);
  // Drops slots whose position is below min_pos (sliding-window layers).
  void drop_before(int layer, int32_t min_pos);
  void clear();

  KVView view(int layer);

  size_t bytes_per_slot() const;
  size_t bytes_in_use() const;     // slots holding tokens
  size_t bytes_allocated() const;  // slots allocated
  size_t bytes_in_use(int layer) const;

 private:
  struct Head {
    Buffer k, v;               // [cap][hd_k], [cap][hd_v]
    std::vector<int32_t> pos;  // [cap]
    int32_t len = 0;
    int32_t cap = 0;
  };
  Head& head_(int layer, int head) {
    return heads_[static_cast<size_t>(layer) * shape_.n_head_kv + head];
  }
  const Head& head_(int layer, int head) const {
    return heads_[static_cast<size_t>(layer) * shape_.n_head_kv + head];
  }

  KVCacheShape shape_;
  std::vector<Head> heads_;  // [n_layer * n_head_kv]
};

}  // namespace kvs
