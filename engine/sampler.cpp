#include "engine/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "kernels/core/error.h"

namespace kvs {

void SamplingParams::validate() const {
  // Written as !(ok) so that NaN is rejected too.
  if (!(temperature >= 0.0f)) throw Error(fmt::format("--temp must be >= 0, got {}", temperature));
  if (top_k < 0) throw Error(fmt::format("--top-k must be >= 0, got {}", top_k));
  if (!(top_p > 0.0f && top_p <= 1.0f))
    throw Error(fmt::format("--top-p must be in (0, 1], got {}", top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f))
    throw Error(fmt::format("--min-p must be in [0, 1], got {}", min_p));
  if (!(repeat_penalty > 0.0f))
    throw Error(fmt::format("--repeat-penalty must be > 0, got {}", repeat_penalty));
  if (repeat_last_n < -1)
    throw Error(fmt::format("--repeat-last-n must be >= -1, got {}", repeat_last_n));
}

namespace {

// Higher logit first; equal logits in token order, so that every cut and every draw is
// reproducible whatever the standard library's selection algorithms do with ties.
struct Before {
  template <class C>
  bool operator()(const C& a, const C& b) const {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  }
};

}  // namespace

Sampler::Sampler(SamplingParams params, int n_vocab) : params_(params), n_vocab_(n_vocab) {
  params_.validate();
  KVS_CHECK(n_vocab > 0, "sampler needs a vocabulary");
  reset();
}

void Sampler::reset() {
  rng_.seed(params_.seed);
  history_.clear();
  history_next_ = 0;
}

void Sampler::accept(int32_t token) {
  KVS_CHECK(token >= 0 && token < n_vocab_, "accepted token outside the vocabulary");
  const int n = params_.repeat_last_n;
  if (n == 0) return;
  if (n < 0 || history_.size() < static_cast<size_t>(n)) {
    history_.push_back(token);
    return;
  }
  history_[history_next_] = token;
  history_next_ = (history_next_ + 1) % history_.size();
}

void Sampler::apply_repeat_penalty() {
  if (params_.repeat_penalty == 1.0f || history_.empty()) return;
  // llama.cpp penalizes each distinct token once, however often it occurred.
  const float penalty = params_.repeat_penalty;
  distinct_.assign(history_.begin(), history_.end());
  std::sort(distinct_.begin(), distinct_.end());
  distinct_.erase(std::unique(distinct_.begin(), distinct_.end()), distinct_.end());
  for (int32_t t : distinct_) {
    float& l = work_[static_cast<size_t>(t)];
    l = l <= 0.0f ? l * penalty : l / penalty;
  }
}

int32_t Sampler::argmax() const {
  return static_cast<int32_t>(std::max_element(work_.begin(), work_.end()) - work_.begin());
}

void Sampler::top_k(int k) {
  // One pass with a heap of the k best so far (worst on top): on a 262k vocabulary almost
  // every token is rejected by a single comparison, far cheaper than nth_element.
  cand_.clear();
  for (int32_t i = 0; i < k; ++i) cand_.push_back({work_[static_cast<size_t>(i)], i});
  std::make_heap(cand_.begin(), cand_.end(), Before{});
  for (size_t i = static_cast<size_t>(k); i < work_.size(); ++i) {
    // Ids only grow, so an equal logit never beats the worst kept candidate.
    if (!(work_[i] > cand_.front().logit)) continue;
    std::pop_heap(cand_.begin(), cand_.end(), Before{});
    cand_.back() = {work_[i], static_cast<int32_t>(i)};
    std::push_heap(cand_.begin(), cand_.end(), Before{});
  }
  std::sort_heap(cand_.begin(), cand_.end(), Before{});
}

size_t Sampler::top_p_cut(float max_logit, double norm, size_t n) {
  // Smallest prefix (in Before order) whose probability mass reaches top_p. The nucleus is
  // usually tiny, so sort a growing prefix instead of all n candidates.
  const double p = params_.top_p;
  double cum = 0.0;
  size_t sorted = 0;
  size_t chunk = 64;
  const auto first = cand_.begin();
  while (sorted < n) {
    const size_t end = std::min(n, sorted + chunk);
    if (end < n) std::nth_element(first + sorted, first + end, first + n, Before{});
    std::sort(first + sorted, first + end, Before{});
    for (size_t i = sorted; i < end; ++i) {
      cum += std::exp(cand_[i].logit - max_logit) / norm;
      if (cum >= p) return i + 1;
    }
    sorted = end;
    chunk *= 8;
  }
  return n;
}

int32_t Sampler::draw() {
  const float max_logit = std::max_element(cand_.begin(), cand_.end(), [](auto& a, auto& b) {
                            return a.logit < b.logit;
                          })->logit;
  const double inv_t = 1.0 / params_.temperature;
  weights_.resize(cand_.size());
  double total = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    weights_[i] = std::exp((static_cast<double>(cand_[i].logit) - max_logit) * inv_t);
    total += weights_[i];
  }
  // 53 random bits -> [0, 1): unlike std::uniform_real_distribution this is the same on
  // every standard library, so a seed replays the same text everywhere.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53 * total;
  double acc = 0.0;
  for (size_t i = 0; i < cand_.size(); ++i) {
    acc += weights_[i];
    if (u < acc) return cand_[i].id;
  }
  // Rounding can leave u just above the last partial sum.
  for (size_t i = cand_.size(); i-- > 0;)
    if (weights_[i] > 0.0) return cand_[i].id;
  return cand_.front().id;
}

int32_t Sampler::sample(std::span<const float> logits) {
  KVS_CHECK(logits.size() == static_cast<size_t>(n_vocab_), "logits size differs from n_vocab");
  work_.assign(logits.begin(), logits.end());
  apply_repeat_penalty();

  if (params_.temperature == 0.0f) return argmax();

  bool sorted = false;
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < work_.size()) {
    top_k(params_.top_k);
    sorted = true;
  } else {
    cand_.resize(work_.size());
    for (size_t i = 0; i < work_.size(); ++i) cand_[i] = {work_[i], static_cast<int32_t>(i)};
  }

  float max_logit = cand_.front().logit;
  if (!sorted)
    for (const auto& c : cand_) max_logit = std::max(max_logit, c.logit);
  KVS_CHECK(std::isfinite(max_logit), "logits have no finite maximum");

  // top-p and min-p each keep a prefix of the candidates in Before order, so applying both
  // keeps the shorter prefix whatever their order. Cutting with min-p first (O(n), no sort)
  // keeps llama.cpp's result: top-p still normalizes over every candidate that top-k left.
  double norm = 0.0;
  if (params_.top_p < 1.0f)
    for (const auto& c : cand_) norm += std::exp(c.logit - max_logit);

  size_t n = cand_.size();
  if (params_.min_p > 0.0f) {
    const float threshold = max_logit + std::log(params_.min_p);
    auto keep = [threshold](const Candidate& c) { return c.logit >= threshold; };
    if (sorted) {
      n = static_cast<size_t>(std::partition_point(cand_.begin(), cand_.end(), keep) -
                              cand_.begin());
    } else {
      n = static_cast<size_t>(std::partition(cand_.begin(), cand_.end(), keep) - cand_.begin());
    }
  }
  if (params_.top_p < 1.0f) n = top_p_cut(max_logit, norm, n);
  KVS_CHECK(n >= 1, "sampler cut every candidate");
  cand_.resize(n);
  return draw();
}

}  // namespace kvs
