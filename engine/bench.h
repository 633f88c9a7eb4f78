#pragma once
// Throughput benchmark modelled on llama-bench: prompt processing (pp: one evaluation of
// n_prompt tokens) and token generation (tg: n_gen evaluations of one token), each optionally
// after `depth` tokens already in the cache, repeated and summarized as mean and standard
// deviation of tokens/s. Tokens are pseudo-random ids (content does not change the work).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/session.h"

namespace kvs {

struct BenchTest {
  int n_prompt = 0;  // > 0: a pp test
  int n_gen = 0;     // > 0: a tg test (exactly one of n_prompt, n_gen is set)
  int depth = 0;     // tokens evaluated (untimed) before the timed part
  // "pp512", "tg128", "tg128@d4096"
  std::string name() const;
};

struct BenchResult {
  BenchTest test;
  std::vector<double> tokens_per_s;  // [reps]
  double mean = 0.0;
  double stddev = 0.0;  // sample standard deviation (0 for one repetition)
  // Cache state after the last repetition and the time the cache manager spent in the timed
  // parts (a fraction of their wall time).
  size_t kv_bytes_in_use = 0;
  size_t kv_bytes_full = 0;
  double manager_seconds = 0.0;
  double timed_seconds = 0.0;
  int continued = 0;  // repetitions that started past `depth` (see run_bench)
};

// Runs one test `reps` times in a session built from `opts` (its n_ctx is raised to fit). The
// session is filled to `depth` once; each repetition starts from there (the cache is reset or
// truncated back), except where a cache plan already evicted tokens: a compressed cache cannot
// be rewound, so repetition i then starts at depth + i * timed tokens (counted in `continued`).
// should_stop is polled between repetitions.
BenchResult run_bench(const Engine& engine, const SessionOptions& opts, const BenchTest& test,
                      int reps, uint64_t seed, const std::function<bool()>& should_stop = {});

// Mean and sample standard deviation.
void mean_stddev(const std::vector<double>& x, double& mean, double& stddev);

}  // namespace kvs
