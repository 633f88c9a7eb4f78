#pragma once
// Token sampler: repetition penalty, top-k, top-p, min-p, temperature and a seeded draw,
// applied in llama.cpp's default order so that settings mean the same as there.
#include <cstdint>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace kvs {

struct SamplingParams {
  float temperature = 0.8f;     // --temp; 0 = greedy (argmax, lowest token id on ties)
  int top_k = 40;               // 0 = off
  float top_p = 0.95f;          // 1 = off
  float min_p = 0.05f;          // 0 = off
  float repeat_penalty = 1.0f;  // 1 = off
  int repeat_last_n = 64;       // 0 = off, -1 = every accepted token
  uint64_t seed = 0;

  // Throws kvs::Error naming the CLI option, e.g. "--top-p must be in (0, 1], got 1.5".
  void validate() const;
};

class Sampler {
 public:
  // Throws kvs::Error when params are invalid.
  Sampler(SamplingParams params, int n_vocab);

  // logits has n_vocab entries; they are not modified.
  int32_t sample(std::span<const float> logits);
  // Feeds the repetition penalty: call for prompt tokens and for every generated token.
  void accept(int32_t token);
  // Forgets accepted tokens and restarts the random stream from the seed.
  void reset();

  const SamplingParams& params() const { return params_; }

 private:
  struct Candidate {
    float logit;
    int32_t id;
  };

  void apply_repeat_penalty();
  int32_t argmax() const;
  void top_k(int k);
  size_t top_p_cut(float max_logit, double norm, size_t n);
  int32_t draw();

  SamplingParams params_;
  int n_vocab_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;  // ring buffer of the last repeat_last_n accepted tokens
  size_t history_next_ = 0;
  std::vector<float> work_;        // penalized logits, [n_vocab]
  std::vector<Candidate> cand_;    // surviving candidates; a sorted prefix where noted
  std::vector<double> weights_;    // draw weights, parallel to cand_
  std::vector<int32_t> distinct_;  // scratch for the repetition penalty
};

}  // namespace kvs
