#pragma once
// KVView: what an attention backend sees of one layer's cache. Each KV head has its own
// slot array and length (heads of one layer may keep different numbers of tokens).
#include <cstdint>
#include <vector>

#include "kernels/core/dtype.h"

namespace kvs {

struct KVHeadView {
  const void* k = nullptr;       // [len][head_dim_k] in KVView::k_dtype
  const void* v = nullptr;       // [len][head_dim_v] in KVView::v_dtype
  const int32_t* pos = nullptr;  // [len] original token position of each slot
  int32_t len = 0;
  // Optional score sinks the backend fills for cache policies:
  float* score_acc = nullptr;   // [len] += attention probability, summed over the group's
                                //        query heads and every query of the call
  float* score_last = nullptr;  // [len] = attention of the last query, averaged over the group
};

struct KVView {
  DType k_dtype = DType::F32;
  DType v_dtype = DType::F32;
  std::vector<KVHeadView> heads;  // [n_head_kv]
};

struct AttentionShape {
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  float scale = 1.0f;  // applied to q·k
  int window = 0;      // sliding window: a query at p sees keys at p0 with p - p0 < window; 0 = off
  float softcap = 0.0f;  // tanh soft-capping of scores; 0 = off
};

}  // namespace kvs
