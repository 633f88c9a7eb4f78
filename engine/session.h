#pragma once
// Session: all mutable state of one conversation (KV cache, position). Tokens are
// evaluated in chunks so a long prompt needs bounded activation memory.
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/manager.h"
#include "cache/plan.h"
#include "engine/engine.h"
#include "models/model/forward.h"

namespace kvs {

struct SessionOptions {
  int n_ctx = 0;                          // 0: min(training context, 4096)
  int n_batch = 256;                      // prefill chunk size
  std::shared_ptr<const CachePlan> plan;  // null: keep every token (no cache manager)
  // Observer of each layer's queries right after attention, rotated as attention saw them:
  // q [T][n_head][head_dim_k], pos [T] (kvsieve calibrate-qfilter collects them).
  std::function<void(int layer, const float* q, const int32_t* pos, int64_t T)> on_queries;
  // "auto": on the engine's device when it has one and neither a plan nor on_queries is set
  // (both need the CPU cache), else the CPU. "cpu": always the CPU. "cuda": the device, an
  // error when that is impossible.
  std::string device = "auto";
};

// Called after each prefill chunk with (tokens done, tokens total).
using ProgressFn = std::function<void(int64_t, int64_t)>;

class Session final : private AttentionContext {
 public:
  Session(const Engine& engine, const SessionOptions& opts);

  // Evaluates tokens after those already in the cache and returns the logits of the last
  // n_logits of them: [n_logits, n_vocab]. Throws kvs::Error when the context would overflow.
  // compress=false skips the compression a plan schedules at the end of this evaluation
  // (a question appended to a compressed context stays whole: the kvpress convention);
  // overflow-driven compression still bounds the cache.
  std::vector<float> eval(std::span<const int32_t> tokens, int64_t n_logits,
                          const ProgressFn& progress = {}, bool compress = true);

  int n_ctx() const { return n_ctx_; }
  // False when no further token fits: the context is full and the cache cannot stream past it.
  bool can_continue() const;
  int64_t n_past() const { return n_past_; }
  const std::vector<int32_t>& history() const { return history_; }
  const KVCache& cache() const { return *cache_; }
  const CacheManager* manager() const { return manager_.get(); }
  const Engine& engine() const { return engine_; }
  // Forgets every token (keeps the allocation).
  void reset();
  // Keeps only the first n tokens (to reuse a shared prefix). Returns false, changing
  // nothing, when a sliding-window layer already dropped keys that position n would need.
  bool truncate(int64_t n);
  // Bytes a full cache of this session would hold for n tokens.
  size_t full_cache_bytes(int64_t n_tokens) const;
  // Where this session runs ("cpu" or "cuda") and its KV cache's size, wherever it lives.
  const char* device() const { return runner_ ? "cuda" : "cpu"; }
  size_t kv_bytes_in_use() const;
  size_t kv_bytes_allocated() const;
  size_t kv_peak_bytes() const;
  int64_t kv_tokens_in_layer(int layer) const;

 private:
  void attend(int layer, const ops::RopeParams& rope, float* q, float* k, const float* v, int64_t T,
              float* out) override;

  const Engine& engine_;
  int n_ctx_;
  int n_batch_;
  int64_t n_past_ = 0;
  std::vector<int32_t> history_;
  std::vector<int32_t> batch_pos_;
  int32_t swa_dropped_below_ = 0;  // sliding-window layers hold no key below this position  // [T]
                                   // positions of the batch being evaluated
  std::unique_ptr<CacheManager> manager_;
  std::unique_ptr<KVCache> cache_;        // the CPU cache (stays empty on a device)
  std::unique_ptr<DeviceRunner> runner_;  // set when the session runs on the device
  std::function<void(int, const float*, const int32_t*, int64_t)> on_queries_;  // may be empty
  std::vector<float> roped_k_;     // [len][hd_k] keys rotated at attention time (positions: cache)
  std::vector<int32_t> slot_pos_;  // [n_kv][len] positions the cache mode attends with
  ForwardScratch scratch_;
  void install_tensor_dump();
};

}  // namespace kvs
