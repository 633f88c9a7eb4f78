#include "cache/kv_cache.h"

#include <algorithm>
#include <cstring>

#include "kernels/core/error.h"
#include "kernels/core/quant.h"

namespace kvs {

bool kv_dtype_supported(DType t, int head_dim) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
      return true;
    case DType::Q8_0:
    case DType::Q4_0:
      return head_dim % 32 == 0;
    default:
      return false;
  }
}

KVCache::KVCache(KVCacheShape shape, std::vector<int32_t> max_len)
    : shape_(std::move(shape)), max_len_(std::move(max_len)) {
  KVS_CHECK(static_cast<int>(max_len_.size()) == shape_.n_layer);
  if (shape_.k_dtype.empty()) shape_.k_dtype.assign(shape_.n_layer, DType::F32);
  if (shape_.v_dtype.empty()) shape_.v_dtype.assign(shape_.n_layer, DType::F32);
  KVS_CHECK(static_cast<int>(shape_.k_dtype.size()) == shape_.n_layer);
  KVS_CHECK(static_cast<int>(shape_.v_dtype.size()) == shape_.n_layer);
  for (int l = 0; l < shape_.n_layer; ++l) {
    KVS_CHECK(kv_dtype_supported(shape_.k_dtype[l], shape_.head_dim_k),
              "unsupported K storage type");
    KVS_CHECK(kv_dtype_supported(shape_.v_dtype[l], shape_.head_dim_v),
              "unsupported V storage type");
  }
  scores_on_.assign(shape_.n_layer, false);
  heads_.resize(static_cast<size_t>(shape_.n_layer) * shape_.n_head_kv);
}

size_t KVCache::slot_bytes(int layer) const {
  return row_bytes(shape_.k_dtype[layer], shape_.head_dim_k) +
         row_bytes(shape_.v_dtype[layer], shape_.head_dim_v);
}

void KVCache::reallocate(int layer, Head& h, int32_t new_cap) {
  const size_t kb = row_bytes(shape_.k_dtype[layer], shape_.head_dim_k);
  const size_t vb = row_bytes(shape_.v_dtype[layer], shape_.head_dim_v);
  Buffer k(static_cast<size_t>(new_cap) * kb), v(static_cast<size_t>(new_cap) * vb);
  if (h.len > 0) {
    std::memcpy(k.data(), h.k.data(), static_cast<size_t>(h.len) * kb);
    std::memcpy(v.data(), h.v.data(), static_cast<size_t>(h.len) * vb);
  }
  allocated_ = allocated_ - static_cast<size_t>(h.cap) * (kb + vb) +
               static_cast<size_t>(new_cap) * (kb + vb);
  peak_allocated_ = std::max(peak_allocated_, allocated_);
  h.k = std::move(k);
  h.v = std::move(v);
  h.pos.resize(new_cap);
  h.pos.shrink_to_fit();
  if (scores_on_[layer]) {
    h.score.resize(new_cap, 0.0f);
    h.score.shrink_to_fit();
  }
  h.cap = new_cap;
}

void KVCache::reserve(int layer, Head& h, int32_t need, bool exact) {
  // Reachable from user input (a plan that does not bound the cache, or a small -c).
  if (need > max_len_[layer])
    throw Error("the KV cache of layer " + std::to_string(layer) + " would need " +
                std::to_string(need) + " slots per head, more than the context of " +
                std::to_string(max_len_[layer]) +
                " (raise --ctx-size or use a cache plan that compresses sooner)");
  if (need <= h.cap) return;
  // Single-token appends grow geometrically (amortized O(1)); a batch knows its size and
  // grows exactly, so chunked prefill never holds more than budget + margin + chunk.
  const int64_t grown = exact ? need
                        : growth_ > 0
                            ? static_cast<int64_t>(need) + growth_
                            : std::max<int64_t>(need, static_cast<int64_t>(h.cap) + h.cap / 2 + 16);
  reallocate(layer, h, static_cast<int32_t>(std::min<int64_t>(grown, max_len_[layer])));
}

void KVCache::enable_scores(int layer) {
  if (scores_on_[layer]) return;
  scores_on_[layer] = true;
  for (int h = 0; h < shape_.n_head_kv; ++h)
    head_at(layer, h).score.assign(head_at(layer, h).cap, 0.0f);
}

void KVCache::append(int layer, const float* k, const float* v, const int32_t* pos, int64_t T) {
  const int nkv = shape_.n_head_kv, dk = shape_.head_dim_k, dv = shape_.head_dim_v;
  const DType kt = shape_.k_dtype[layer], vt = shape_.v_dtype[layer];
  const size_t kb = row_bytes(kt, dk), vb = row_bytes(vt, dv);
  for (int h = 0; h < nkv; ++h) {
    Head& hd = head_at(layer, h);
    reserve(layer, hd, hd.len + static_cast<int32_t>(T), T > 1);
    for (int64_t t = 0; t < T; ++t) {
      quantize_row(kt, k + (t * nkv + h) * dk, hd.k.as<uint8_t>() + (hd.len + t) * kb, dk);
      quantize_row(vt, v + (t * nkv + h) * dv, hd.v.as<uint8_t>() + (hd.len + t) * vb, dv);
      hd.pos[hd.len + t] = pos[t];
      if (scores_on_[layer]) hd.score[hd.len + t] = 0.0f;
    }
    hd.len += static_cast<int32_t>(T);
  }
}

void KVCache::append_slot(int layer, int head, const float* k, const float* v, int32_t pos) {
  Head& hd = head_at(layer, head);
  reserve(layer, hd, hd.len + 1, false);
  const DType kt = shape_.k_dtype[layer], vt = shape_.v_dtype[layer];
  quantize_row(kt, k, hd.k.as<uint8_t>() + hd.len * row_bytes(kt, shape_.head_dim_k),
               shape_.head_dim_k);
  quantize_row(vt, v, hd.v.as<uint8_t>() + hd.len * row_bytes(vt, shape_.head_dim_v),
               shape_.head_dim_v);
  hd.pos[hd.len] = pos;
  if (scores_on_[layer]) hd.score[hd.len] = 0.0f;
  ++hd.len;
}

void KVCache::read_k(int layer, int head, float* dst) const {
  const Head& hd = head_at(layer, head);
  const DType t = shape_.k_dtype[layer];
  const size_t rb = row_bytes(t, shape_.head_dim_k);
  for (int32_t s = 0; s < hd.len; ++s)
    dequantize_row(t, hd.k.as<uint8_t>() + s * rb, dst + static_cast<size_t>(s) * shape_.head_dim_k,
                   shape_.head_dim_k);
}

void KVCache::read_v(int layer, int head, float* dst) const {
  const Head& hd = head_at(layer, head);
  const DType t = shape_.v_dtype[layer];
  const size_t rb = row_bytes(t, shape_.head_dim_v);
  for (int32_t s = 0; s < hd.len; ++s)
    dequantize_row(t, hd.v.as<uint8_t>() + s * rb, dst + static_cast<size_t>(s) * shape_.head_dim_v,
                   shape_.head_dim_v);
}

void KVCache::keep_slots(int layer, int head, const std::vector<int32_t>& slots, int32_t margin) {
  Head& hd = head_at(layer, head);
  const size_t kb = row_bytes(shape_.k_dtype[layer], shape_.head_dim_k);
  const size_t vb = row_bytes(shape_.v_dtype[layer], shape_.head_dim_v);
  uint8_t* K = hd.k.as<uint8_t>();
  uint8_t* V = hd.v.as<uint8_t>();
  // One move per run of consecutive kept slots: evicting a few slots moves a few blocks.
  int32_t out = 0;
  const size_t n = slots.size();
  for (size_t i = 0; i < n;) {
    const int32_t s = slots[i];
    KVS_CHECK(s >= out && s < hd.len, "keep_slots needs ascending, in-range slots");
    size_t j = i + 1;
    while (j < n && slots[j] == slots[j - 1] + 1) ++j;
    KVS_CHECK(slots[j - 1] < hd.len, "keep_slots needs ascending, in-range slots");
    const int32_t run = static_cast<int32_t>(j - i);
    if (s != out) {
      std::memmove(K + out * kb, K + s * kb, run * kb);
      std::memmove(V + out * vb, V + s * vb, run * vb);
      std::memmove(hd.pos.data() + out, hd.pos.data() + s, run * sizeof(int32_t));
      if (scores_on_[layer])
        std::memmove(hd.score.data() + out, hd.score.data() + s, run * sizeof(float));
    }
    out += run;
    i = j;
  }
  hd.len = out;
  const int32_t want = std::min(max_len_[layer], out + std::max(0, margin));
  if (want < hd.cap && hd.cap - want > growth_) reallocate(layer, hd, want);
}

void KVCache::drop_before(int layer, int32_t min_pos, int32_t margin) {
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    Head& hd = head_at(layer, h);
    std::vector<int32_t> keep;
    keep.reserve(hd.len);
    for (int32_t s = 0; s < hd.len; ++s)
      if (hd.pos[s] >= min_pos) keep.push_back(s);
    if (static_cast<int32_t>(keep.size()) != hd.len) keep_slots(layer, h, keep, margin);
  }
}

void KVCache::clear() {
  for (int l = 0; l < shape_.n_layer; ++l)
    for (int h = 0; h < shape_.n_head_kv; ++h) {
      Head& hd = head_at(l, h);
      hd.len = 0;
    }
}

KVView KVCache::view(int layer) {
  KVView kv;
  kv.k_dtype = shape_.k_dtype[layer];
  kv.v_dtype = shape_.v_dtype[layer];
  kv.heads.resize(shape_.n_head_kv);
  for (int h = 0; h < shape_.n_head_kv; ++h) {
    Head& hd = head_at(layer, h);
    kv.heads[h].k = hd.k.data();
    kv.heads[h].v = hd.v.data();
    kv.heads[h].pos = hd.pos.data();
    kv.heads[h].len = hd.len;
    kv.heads[h].score_acc = scores_on_[layer] ? hd.score.data() : nullptr;
  }
  return kv;
}

size_t KVCache::bytes_in_use() const {
  size_t n = 0;
  for (int l = 0; l < shape_.n_layer; ++l) n += bytes_in_use(l);
  return n;
}

size_t KVCache::bytes_allocated() const {
  return allocated_;
}

size_t KVCache::bytes_in_use(int layer) const {
  return static_cast<size_t>(tokens_in_layer(layer)) * slot_bytes(layer);
}

int64_t KVCache::tokens_in_layer(int layer) const {
  int64_t n = 0;
  for (int h = 0; h < shape_.n_head_kv; ++h) n += head_at(layer, h).len;
  return n;
}

}  // namespace kvs
