#pragma once
// Runs one passkey/needle probe under a cache plan: the context is evaluated and compressed,
// the question appended (uncompressed unless compress_question), and the answer generated
// greedily until a newline, an end-of-generation token, the end of the answer's digits or
// max_tokens.
#include <cstdint>
#include <functional>
#include <string>

#include "engine/session.h"
#include "engine/tasks.h"

namespace kvs {

struct ProbeOutcome {
  bool correct = false;
  std::string generated;
  int64_t n_generated = 0;
  double prefill_seconds = 0.0;  // context (and question) evaluation
  double decode_seconds = 0.0;
  size_t kv_bytes_in_use = 0;  // after the context was compressed, before the question
  size_t kv_bytes_full = 0;    // a full cache of the context
  int64_t compressions = 0;
  double manager_seconds = 0.0;
  bool interrupted = false;
};

ProbeOutcome answer_probe(const Engine& engine, const SessionOptions& opts, const Probe& probe,
                          bool compress_question, int max_tokens,
                          const std::function<bool()>& should_stop = {});

}  // namespace kvs
