#include "engine/generate.h"

#include <chrono>

#include "kernels/core/error.h"

namespace kvs {

std::string StopMatcher::push(std::string_view text) {
  if (stopped_) return {};
  pending_ += text;
  for (const auto& s : stops_) {
    const size_t at = s.empty() ? std::string::npos : pending_.find(s);
    if (at != std::string::npos) {
      stopped_ = true;
      std::string out = pending_.substr(0, at);
      pending_.clear();
      return out;
    }
  }
  // Keep the longest tail that is a prefix of some stop string.
  size_t hold = 0;
  for (const auto& s : stops_) {
    for (size_t n = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); n > hold; --n) {
      if (pending_.compare(pending_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
    }
  }
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StopMatcher::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

GenerateStats generate(Session& session, std::span<const int32_t> prompt,
                       const GenerateOptions& opts,
                       const std::function<void(std::string_view)>& on_text,
                       const ProgressFn& prefill_progress,
                       const std::function<bool()>& should_stop) {
  using clock = std::chrono::steady_clock;
  const Engine& engine = session.engine();
  const Tokenizer& tok = engine.tokenizer();
  const int n_vocab = engine.config().n_vocab;
  opts.sampling.validate();
  Sampler sampler(opts.sampling, n_vocab);
  for (int32_t id : session.history()) sampler.accept(id);
  for (int32_t id : prompt) sampler.accept(id);

  GenerateStats st;
  st.n_prompt = static_cast<int64_t>(prompt.size());
  StreamingDetokenizer detok(tok);
  StopMatcher stop(opts.stop);
  auto emit = [&](const std::string& s) {
    if (s.empty()) return;
    st.text += s;
    if (on_text) on_text(s);
  };

  const auto t0 = clock::now();
  std::vector<float> logits = session.eval(prompt, 1, prefill_progress);
  st.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  const auto t1 = clock::now();
  for (;;) {
    if (opts.n_predict >= 0 && st.n_generated >= opts.n_predict) {
      st.stop_reason = "length";
      break;
    }
    if (should_stop && should_stop()) {
      st.stop_reason = "interrupted";
      break;
    }
    const int32_t id = sampler.sample(std::span<const float>(logits.data(), n_vocab));
    sampler.accept(id);
    if (!opts.ignore_eos && tok.is_eog(id)) {
      st.stop_reason = "eos";
      break;
    }
    st.tokens.push_back(id);
    ++st.n_generated;
    emit(stop.push(detok.push(id)));
    if (stop.stopped()) {
      st.stop_reason = "stop";
      break;
    }
    if (opts.n_predict >= 0 && st.n_generated >= opts.n_predict) {
      st.stop_reason = "length";
      break;
    }
    if (!session.can_continue()) {
      st.stop_reason = "context";
      break;
    }
    const int32_t one[1] = {id};
    // Release the previous row first: two vocab-sized rows alive at once would add to the
    // peak RSS (Gemma 3: 1 MiB).
    std::vector<float>().swap(logits);
    logits = session.eval(one, 1);
  }
  if (!stop.stopped()) emit(stop.push(detok.flush()) + stop.flush());
  st.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  st.kv_bytes_in_use = session.kv_bytes_in_use();
  st.kv_bytes_allocated = session.kv_bytes_allocated();
  return st;
}

}  // namespace kvs
