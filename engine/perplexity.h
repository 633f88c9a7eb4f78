#pragma once
// Perplexity of a long text under a cache plan. Without a plan (or with keys at original
// positions) the text is cut into context-sized chunks, each evaluated from scratch, scoring
// the second half of each chunk (llama.cpp's convention). With "positions": "cache" the
// whole text streams through one session, the cache compressed as it goes, and every token
// after the first is scored.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/session.h"

namespace kvs {

struct PerplexityResult {
  double perplexity = 0.0;
  double mean_nll = 0.0;  // nats per scored token
  int64_t n_tokens = 0;   // tokens evaluated
  int64_t n_scored = 0;   // tokens whose prediction was scored
  int64_t n_chunks = 0;
  bool streamed = false;
  double seconds = 0.0;
  size_t kv_peak_bytes = 0;    // largest cache allocation seen
  size_t kv_bytes_in_use = 0;  // at the end of the last chunk
  size_t kv_bytes_full = 0;    // a full cache for the same tokens
};

// progress(done, total) after each batch; should_stop is polled between batches (the result
// then covers what was scored so far).
PerplexityResult perplexity(const Engine& engine, const SessionOptions& opts,
                            std::span<const int32_t> tokens,
                            const std::function<void(int64_t, int64_t)>& progress = {},
                            const std::function<bool()>& should_stop = {});

}  // namespace kvs
