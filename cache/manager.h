#pragma once
// CacheManager: applies a CachePlan to a KVCache. It decides when to compress, computes the
// statistics each head's policy needs, turns the plan's budgets into per-head budgets
// (allocators), keeps protected slots then the highest scores, and compacts each head with
// one gather. It never touches model code: the engine calls its hooks around attention.
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/plan.h"
#include "cache/policy.h"
#include "cache/query_stats.h"
#include "kernels/cpu/ops.h"

namespace kvs {

struct CacheModelInfo {
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim_k = 0;
  int head_dim_v = 0;
  float kq_scale = 1.0f;
  std::vector<bool> layer_is_swa;  // [n_layer]
  int sliding_window = 0;
  int n_ctx = 0;
};

struct CacheStats {
  int64_t compressions = 0;
  double seconds = 0.0;  // time spent in the manager (scoring, selection, compaction)
};

class CacheManager {
 public:
  CacheManager(const CachePlan& plan, const CacheModelInfo& info);
  ~CacheManager();

  const CachePlan& plan() const { return plan_; }
  const ResolvedPlan& resolved() const { return resolved_; }
  // Storage layout the engine must create the KVCache with.
  KVCacheShape cache_shape() const;
  bool cache_positions() const { return plan_.cache_positions; }
  // Call once after creating the cache (enables score accumulation where policies need it).
  void attach(KVCache& cache);

  // Before `T` new tokens are appended to a layer (overflow mode compresses here).
  void before_append(KVCache& cache, int layer, int64_t T, int64_t n_seen);
  // Before RoPE is applied to a layer's queries: q [T][n_head][head_dim_k] as projected,
  // rope the layer's rotation (query statistics for expected_attention).
  void before_rope(int layer, const float* q, const int32_t* q_pos, int64_t T,
                   const ops::RopeParams& rope);
  // After attention ran for a layer: q [T][n_head][head_dim_k] (rotated as attention saw
  // them) and their positions; kept for window statistics.
  void after_attention(int layer, const float* q, const int32_t* q_pos, int64_t T);
  // After a chunk of an evaluation: `last_chunk` ends the evaluation, `n_tokens` is the
  // evaluation's size (1 = a decode step), n_seen counts every token processed so far.
  void after_chunk(KVCache& cache, bool last_chunk, int64_t n_tokens, int64_t n_seen);
  // Compresses every layer now.
  void compress(KVCache& cache, int64_t n_seen);

  const CacheStats& stats() const { return stats_; }
  void reset();

 private:
  void compress_layer(KVCache& cache, int layer, int64_t n_seen);
  // Evicts the slots of one compensating head not in `keep` and folds them into its
  // compensation slot.
  void compact_compensated(KVCache& cache, int layer, int head, std::vector<int32_t> keep);

  CachePlan plan_;
  CacheModelInfo info_;
  ResolvedPlan resolved_;
  std::vector<std::unique_ptr<CachePolicy>> policies_;  // [n_layer * n_head_kv]
  std::vector<int> window_;                             // [n_layer] queries kept for side passes
  struct QueryRing {
    std::vector<float> q;      // [window][n_head][head_dim_k]
    std::vector<int32_t> pos;  // [window]
    int64_t count = 0;         // queries stored so far (ring position = count % window)
  };
  std::vector<QueryRing> queries_;               // [n_layer]
  std::vector<QueryStats> query_stats_;          // [n_layer], used where future_ > 0
  std::vector<int> future_;                      // [n_layer] future positions to project onto
  std::vector<std::vector<float>> calibration_;  // [n_layer * n_head_kv][head_dim_k], may be empty
  // Compensation slots (policies that compensates()): per (layer, KV head) the slot index of the
  // head's compensation token (-1: none) and how many evicted tokens it stands for.
  std::vector<int32_t> comp_slot_;
  std::vector<double> comp_weight_;
  int64_t decode_steps_ = 0;
  CacheStats stats_;
};

}  // namespace kvs
