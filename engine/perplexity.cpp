#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kernels/core/error.h"

namespace kvs {
namespace {

// -log softmax(row)[target]
double nll(const float* row, int n_vocab, int32_t target) {
  float mx = row[0];
  for (int j = 1; j < n_vocab; ++j) mx = std::max(mx, row[j]);
  double sum = 0.0;
  for (int j = 0; j < n_vocab; ++j) sum += std::exp(static_cast<double>(row[j] - mx));
  return std::log(sum) + mx - row[target];
}

}  // namespace

PerplexityResult perplexity(const Engine& engine, const SessionOptions& opts,
                            std::span<const int32_t> tokens,
                            const std::function<void(int64_t, int64_t)>& progress,
                            const std::function<bool()>& should_stop) {
  const auto t0 = std::chrono::steady_clock::now();
  PerplexityResult r;
  const int V = engine.config().n_vocab;
  Session session(engine, opts);
  const int64_t n_ctx = session.n_ctx();
  const int64_t n_batch = std::max(1, std::min(opts.n_batch, session.n_ctx()));
  const bool streamed = session.manager() != nullptr && session.manager()->cache_positions();
  r.streamed = streamed;
  const int64_t total = static_cast<int64_t>(tokens.size());
  if (total < 2)
    throw Error("perplexity needs at least 2 tokens of text, got " + std::to_string(total));
  // Streaming: one chunk of everything. Otherwise: context-sized chunks, second half scored.
  const int64_t chunk = streamed ? total : std::min<int64_t>(n_ctx, total);
  const int64_t n_chunks = streamed ? 1 : total / chunk;
  if (n_chunks == 0)
    throw Error("the text is shorter than one context (" + std::to_string(n_ctx) + " tokens)");
  double sum = 0.0;
  bool stop = false;
  for (int64_t c = 0; c < n_chunks && !stop; ++c) {
    session.reset();
    const int64_t begin = c * chunk;
    const int64_t first_scored = streamed ? 1 : chunk / 2;
    for (int64_t done = 0; done < chunk && !stop; done += n_batch) {
      const int64_t T = std::min(n_batch, chunk - done);
      const auto logits = session.eval(tokens.subspan(begin + done, T), T);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t i = done + t;  // index in the chunk of the token whose logits these are
        if (i + 1 >= chunk || i + 1 < first_scored) continue;
        sum += nll(logits.data() + t * V, V, tokens[begin + i + 1]);
        ++r.n_scored;
      }
      r.n_tokens += T;
      if (progress) progress(r.n_tokens, n_chunks * chunk);
      if (should_stop && should_stop()) stop = true;
    }
    ++r.n_chunks;
    r.kv_bytes_in_use = session.kv_bytes_in_use();
    r.kv_bytes_full = session.full_cache_bytes(session.n_past());
  }
  r.kv_peak_bytes = session.kv_peak_bytes();
  r.mean_nll = r.n_scored > 0 ? sum / static_cast<double>(r.n_scored) : 0.0;
  r.perplexity = std::exp(r.mean_nll);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace kvs
