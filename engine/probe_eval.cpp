#include "engine/probe_eval.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "kernels/core/error.h"

namespace kvs {
namespace {

int32_t argmax(const std::vector<float>& row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// True once the text holds a run of digits followed by something else: the answer is
// complete and scoring looks no further.
bool answer_done(const std::string& s) {
  size_t i = 0;
  while (i < s.size() && !is_digit(s[i])) {
    if (s[i] == '\n' && i > 0) return true;
    ++i;
  }
  if (i == s.size()) return false;
  while (i < s.size() && is_digit(s[i])) ++i;
  return i < s.size();
}

}  // namespace

ProbeOutcome answer_probe(const Engine& engine, const SessionOptions& opts, const Probe& probe,
                          bool compress_question, int max_tokens,
                          const std::function<bool()>& should_stop) {
  if (max_tokens < 1) throw Error("max answer tokens must be at least 1");
  using clock = std::chrono::steady_clock;
  ProbeOutcome out;
  Session session(engine, opts);
  const Tokenizer& tok = engine.tokenizer();
  const auto t0 = clock::now();
  std::vector<float> logits;  // [n_vocab]
  if (compress_question) {
    // kvpress: context and question are compressed together; the question's last token is
    // then fed again so the first answer token sees the compressed cache.
    std::vector<int32_t> all = probe.context;
    all.insert(all.end(), probe.question.begin(), probe.question.end() - 1);
    session.eval(all, 1);
    out.kv_bytes_in_use = session.cache().bytes_in_use();
    out.kv_bytes_full = session.full_cache_bytes(session.n_past());
    logits = session.eval(std::span<const int32_t>(&probe.question.back(), 1), 1);
  } else {
    session.eval(probe.context, 1);
    out.kv_bytes_in_use = session.cache().bytes_in_use();
    out.kv_bytes_full = session.full_cache_bytes(session.n_past());
    logits = session.eval(probe.question, 1, {}, false);
  }
  const auto t1 = clock::now();
  out.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  std::vector<int32_t> ids;
  while (out.n_generated < max_tokens) {
    if (should_stop && should_stop()) {
      out.interrupted = true;
      break;
    }
    const int32_t id = argmax(logits);
    ++out.n_generated;
    if (tok.is_eog(id)) break;
    ids.push_back(id);
    out.generated += tok.token_text(id, false);
    if (answer_done(out.generated) || out.n_generated == max_tokens || !session.can_continue())
      break;
    logits = session.eval(std::span<const int32_t>(&id, 1), 1);
  }
  out.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  out.correct = score_answer(probe.answer, out.generated);
  if (session.manager()) {
    out.compressions = session.manager()->stats().compressions;
    out.manager_seconds = session.manager()->stats().seconds;
  }
  return out;
}

}  // namespace kvs
