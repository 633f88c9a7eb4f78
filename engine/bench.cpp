#include "engine/bench.h"

#include <chrono>
#include <cmath>
#include <random>

#include "kernels/core/error.h"

namespace kvs {

std::string BenchTest::name() const {
  std::string s = n_prompt > 0 ? "pp" + std::to_string(n_prompt) : "tg" + std::to_string(n_gen);
  if (depth > 0) s += "@d" + std::to_string(depth);
  return s;
}

void mean_stddev(const std::vector<double>& x, double& mean, double& stddev) {
  mean = stddev = 0.0;
  if (x.empty()) return;
  for (double v : x) mean += v;
  mean /= static_cast<double>(x.size());
  if (x.size() < 2) return;
  double ss = 0.0;
  for (double v : x) ss += (v - mean) * (v - mean);
  stddev = std::sqrt(ss / static_cast<double>(x.size() - 1));
}

BenchResult run_bench(const Engine& engine, const SessionOptions& opts, const BenchTest& test,
                      int reps, uint64_t seed, const std::function<bool()>& should_stop) {
  if ((test.n_prompt > 0) == (test.n_gen > 0))
    throw Error("a bench test is either pp (prompt tokens) or tg (generated tokens)");
  if (test.n_prompt < 0 || test.n_gen < 0 || test.depth < 0 || reps <= 0)
    throw Error("bench sizes must be positive");
  const int64_t timed = test.n_prompt > 0 ? test.n_prompt : test.n_gen;
  const int64_t need = static_cast<int64_t>(test.depth) + timed * reps;
  if (need > (1 << 24)) throw Error("bench needs " + std::to_string(need) + " tokens of context");
  SessionOptions so = opts;
  so.n_ctx = std::max<int64_t>(so.n_ctx, need);
  const int n_vocab = engine.config().n_vocab;
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, n_vocab - 1);
  auto random_tokens = [&](int64_t n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (auto& x : t) x = tok(rng);
    return t;
  };

  Session session(engine, so);
  if (test.depth > 0) session.eval(random_tokens(test.depth), 1);
  BenchResult r;
  r.test = test;
  using clock = std::chrono::steady_clock;
  for (int rep = 0; rep < reps; ++rep) {
    if (should_stop && should_stop()) break;
    // Start each repetition at exactly `depth` where the cache allows it.
    if (test.depth == 0) {
      session.reset();
    } else if (!session.truncate(test.depth)) {
      ++r.continued;
    }
    const double mgr0 = session.manager() ? session.manager()->stats().seconds : 0.0;
    double secs = 0.0;
    if (test.n_prompt > 0) {
      const auto tokens = random_tokens(test.n_prompt);
      const auto t0 = clock::now();
      session.eval(tokens, 1);
      secs = std::chrono::duration<double>(clock::now() - t0).count();
    } else {
      const auto tokens = random_tokens(test.n_gen);
      const auto t0 = clock::now();
      for (int i = 0; i < test.n_gen; ++i) session.eval(std::span(&tokens[i], 1), 1);
      secs = std::chrono::duration<double>(clock::now() - t0).count();
    }
    r.tokens_per_s.push_back(static_cast<double>(timed) / secs);
    r.timed_seconds += secs;
    if (session.manager()) r.manager_seconds += session.manager()->stats().seconds - mgr0;
  }
  mean_stddev(r.tokens_per_s, r.mean, r.stddev);
  r.kv_bytes_in_use = session.kv_bytes_in_use();
  r.kv_bytes_full = session.full_cache_bytes(session.n_past());
  return r;
}

}  // namespace kvs
