#pragma once
// Teacher-forced fidelity of a cache plan against the full cache: the context is evaluated
// (and compressed as the plan says), then the continuation is fed one token at a time as in
// generation; each decode step's next-token distribution is compared with the full cache's.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "engine/session.h"

namespace kvs {

// Next-token log-probabilities of the full cache at each decode step: [steps][n_vocab].
struct FidelityReference {
  int64_t steps = 0;
  int n_vocab = 0;
  std::vector<float> logprobs;  // [steps][n_vocab]
};

struct FidelityResult {
  double mean_kl = 0.0;  // KL(full || plan) in nats, averaged over the decode steps
  double max_kl = 0.0;
  double top1_agreement = 0.0;  // fraction of steps whose argmax equals the full cache's
  int64_t steps = 0;
  double decode_seconds = 0.0;  // the teacher-forced decode steps only
  double decode_tps() const { return decode_seconds > 0 ? steps / decode_seconds : 0.0; }
  size_t kv_bytes_context = 0;       // after the context was evaluated (and compressed)
  size_t kv_bytes_full_context = 0;  // a full cache of the context
  size_t kv_bytes_in_use = 0;        // after the last step
  size_t kv_bytes_full = 0;          // a full cache of the same tokens
};

// Runs the context then continuation[0 .. n-2] as decode steps, scoring the n-1 predictions
// made after the first decode step. With a reference, KL and agreement are computed against
// it; `out_reference` (optional) receives this run's own log-probabilities.
FidelityResult teacher_forced(const Engine& engine, const SessionOptions& opts,
                              std::span<const int32_t> context,
                              std::span<const int32_t> continuation,
                              const FidelityReference* reference,
                              FidelityReference* out_reference = nullptr,
                              const std::function<bool()>& should_stop = {});

// log softmax of one row, in place.
void log_softmax(std::span<float> row);

}  // namespace kvs
