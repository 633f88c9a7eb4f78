#include "engine/fidelity.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "kernels/core/error.h"

namespace kvs {

void log_softmax(std::span<float> row) {
  float mx = row[0];
  for (float x : row) mx = std::max(mx, x);
  double sum = 0.0;
  for (float x : row) sum += std::exp(static_cast<double>(x - mx));
  const float lse = mx + static_cast<float>(std::log(sum));
  for (float& x : row) x -= lse;
}

FidelityResult teacher_forced(const Engine& engine, const SessionOptions& opts,
                              std::span<const int32_t> context,
                              std::span<const int32_t> continuation,
                              const FidelityReference* reference, FidelityReference* out_reference,
                              const std::function<bool()>& should_stop) {
  if (context.empty() || continuation.size() < 2)
    throw Error("fidelity needs a context and at least 2 continuation tokens");
  const int V = engine.config().n_vocab;
  const int64_t steps = static_cast<int64_t>(continuation.size()) - 1;
  if (reference && (reference->steps != steps || reference->n_vocab != V))
    throw Error("fidelity reference does not match the run (steps or vocabulary)");
  Session session(engine, opts);
  session.eval(context, 1);
  FidelityResult r;
  r.kv_bytes_context = session.cache().bytes_in_use();
  r.kv_bytes_full_context = session.full_cache_bytes(session.n_past());
  if (out_reference) {
    out_reference->steps = steps;
    out_reference->n_vocab = V;
    out_reference->logprobs.assign(static_cast<size_t>(steps) * V, 0.0f);
  }
  double kl_sum = 0.0;
  int64_t agree = 0;
  std::chrono::duration<double> decode{0};
  for (int64_t s = 0; s < steps; ++s) {
    if (should_stop && should_stop()) break;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> row = session.eval(continuation.subspan(s, 1), 1);  // [n_vocab]
    decode += std::chrono::steady_clock::now() - t0;
    log_softmax(row);
    if (out_reference) std::copy(row.begin(), row.end(), out_reference->logprobs.begin() + s * V);
    if (reference) {
      const float* ref = reference->logprobs.data() + s * V;
      double kl = 0.0;
      for (int j = 0; j < V; ++j) {
        const double p = std::exp(static_cast<double>(ref[j]));
        if (p > 0) kl += p * (static_cast<double>(ref[j]) - row[j]);
      }
      kl = std::max(kl, 0.0);
      kl_sum += kl;
      r.max_kl = std::max(r.max_kl, kl);
      const auto a = std::max_element(ref, ref + V) - ref;
      const auto b = std::max_element(row.begin(), row.end()) - row.begin();
      if (a == b) ++agree;
    }
    ++r.steps;
  }
  r.decode_seconds = decode.count();
  if (r.steps > 0) {
    r.mean_kl = kl_sum / static_cast<double>(r.steps);
    r.top1_agreement = static_cast<double>(agree) / static_cast<double>(r.steps);
  }
  r.kv_bytes_in_use = session.cache().bytes_in_use();
  r.kv_bytes_full = session.full_cache_bytes(session.n_past());
  return r;
}

}  // namespace kvs
