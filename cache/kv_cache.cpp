#include "cache/kv_cache.h"

#include <cstring>

#include "kernels/core/error.h"

namespace kvs {

KVCache::KVCache(const KVCacheShape& shape, const std::vector<int32_t>& capacity) : shape_(shape) {
  KVS_CHECK(shape.k_dtype == DType::F32 && shape.v_dtype == DType::F32,
            "only f32 KV storage so far");
  KVS_CHECK(static_cast<int>(capacity.size()) == shape.n_layer);
  heads_.resize(static_cast<size_t>(shape.n_layer) * shape.n_head_kv);
  for (int l = 0; l < shape.n_layer; ++l) {
    for (int h = 0; h < shape.n_head_kv; ++h) {
      Head& hd = head_(l, h);
      hd.cap = capacity[l];
      hd.k.resize(static_cast<size_t>(hd.cap) * shape.head_dim_k * sizeof(float));
      hd.v.resize(static_cast<size_t>(hd.cap) * shape.head_dim_v * sizeof(float));
      hd.pos.resize(hd.cap);
    }
  }
}

void KVCache::append(int layer, const float* k, const float* v, const int32_t* pos, int64_t T) {
  const int nkv = shape_.n_head_kv, dk = shape_.head_dim_k, dv = shape_.head_dim_v;
  for (int h = 0; h < nkv; ++h) {
    Head& hd = head_(layer, h);
    KVS_CHECK(hd.len + T <= hd.cap, "KV cache head overflow");
    float* K = hd.k.as<float>();
    float* V = hd.v.as<float>();
    for (int64_t t = 0; t < T; ++t) {
      std::memcpy(K + (hd.len + t) * dk, k + (t * nkv + h) * dk, dk * sizeof(float));
      std::memcpy(V + (hd.len + t) * dv, v + (t * nkv + h) * dv, dv * sizeof(float));
      hd.pos[hd.len + t] = pos[t];
    }
    hd.len += static_cast<int32_t>(T);
  }
}

void KVCache::keep_slots(int layer, int head, const std::vector<int32_t>& slots) {
  Head& hd = head_(layer, head);
  const int dk = shape_.head_dim_k, dv = shape_.head_dim_v;
  float* K = hd.k.as<float>();
  float* V = hd.v.as<float>();
  int32_t out = 0;
  for (int32_t s : slots) {
    KVS_CHECK(s >= out && s < hd.len, "keep_slots needs ascending, in-range slots");
    if (s != out) {
      std::memcpy(K + out * dk, K + s * dk, dk * sizeof(float));
      std::memcpy(V + out * dv, V + s * dv, dv * sizeof(float));
      hd.pos[out] = hd.pos[s];
    }
    ++out;
  }
  hd.len = out;
}

void KVCache::drop_before(int layer, int32_t min_pos) {
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    Head& hd = head_(layer, h);
    std::vector<int32_t> keep;
    keep.reserve(hd.len);
    for (int32_t s = 0; s < hd.len; ++s)
      if (hd.pos[s] >= min_pos) keep.push_back(s);
    if (static_cast<int32_t>(keep.size()) != hd.len) keep_slots(layer, h, keep);
  }
}

void KVCache::clear() {
  for (auto& h : heads_) h.len = 0;
}

KVView KVCache::view(int layer) {
  KVView kv;
  kv.k_dtype = shape_.k_dtype;
  kv.v_dtype = shape_.v_dtype;
  kv.heads.resize(shape_.n_head_kv);
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    Head& hd = head_(layer, h);
    kv.heads[h].k = hd.k.data();
    kv.heads[h].v = hd.v.data();
    kv.heads[h].pos = hd.pos.data();
    kv.heads[h].len = hd.len;
  }
  return kv;
}

size_t KVCache::bytes_per_slot() const {
  return (row_bytes(shape_.k_dtype, shape_.head_dim_k) +
          row_bytes(shape_.v_dtype, shape_.head_dim_v));
}

size_t KVCache::bytes_in_use() const {
  size_t n = 0;
  for (const auto& h : heads_) n += static_cast<size_t>(h.len);
  return n * bytes_per_slot();
}

size_t KVCache::bytes_allocated() const {
  size_t n = 0;
  for (const auto& h : heads_) n += static_cast<size_t>(h.cap);
  return n * bytes_per_slot();
}

size_t KVCache::bytes_in_use(int layer) const {
  size_t n = 0;
  for (int h = 0; h < shape_.n_head_kv; ++h) n += static_cast<size_t>(head_(layer, h).len);
  return n * bytes_per_slot();
}

}  // namespace kvs
