#pragma once
// The decode loop: prefill a prompt, then sample until EOS, a stop string, n_predict tokens
// or a full context. Text is streamed UTF-8-safe through a callback.
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.h"
#include "engine/session.h"

namespace kvs {

struct GenerateOptions {
  int n_predict = 128;  // < 0: until EOS or a full context
  SamplingParams sampling;
  std::vector<std::string> stop;  // stop strings (not printed)
  bool ignore_eos = false;
};

struct GenerateStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  double prefill_seconds = 0.0;
  double decode_seconds = 0.0;
  std::string stop_reason;  // "eos", "stop", "length", "context", "interrupted"
  std::string text;         // the generated continuation (stop string excluded)
  std::vector<int32_t> tokens;
  size_t kv_bytes_in_use = 0;
  size_t kv_bytes_allocated = 0;
  double prefill_tps() const { return prefill_seconds > 0 ? n_prompt / prefill_seconds : 0.0; }
  // The first generated token comes from the prefill logits, so decode covers n-1 steps.
  double decode_tps() const {
    return decode_seconds > 0 && n_generated > 1 ? (n_generated - 1) / decode_seconds : 0.0;
  }
};

// Holds back text that may still turn into a stop string.
class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}
  // Adds text; returns what can be emitted now. Sets stopped() when a stop string appeared.
  std::string push(std::string_view text);
  std::string flush();  // the held-back rest (when generation ends without a stop)
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

// Evaluates `prompt` (after what the session already holds) and generates.
// on_text receives each new piece of text; should_stop is polled between tokens.
GenerateStats generate(Session& session, std::span<const int32_t> prompt,
                       const GenerateOptions& opts,
                       const std::function<void(std::string_view)>& on_text,
                       const ProgressFn& prefill_progress = {},
                       const std::function<bool()>& should_stop = {});

}  // namespace kvs
