#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

SamplingParams plain(float temperature = 1.0f) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 1234;
  return p;
}

std::vector<float> log_probs(const std::vector<float>& probs) {
  std::vector<float> l;
  for (float p : probs) l.push_back(std::log(p));
  return l;
}

std::map<int32_t, int> histogram(Sampler& s, const std::vector<float>& logits, int draws) {
  std::map<int32_t, int> h;
  for (int i = 0; i < draws; ++i) ++h[s.sample(logits)];
  return h;
}

std::vector<float> random_logits(int n, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (auto& x : l) x = d(g);
  return l;
}

int32_t argmax(const std::vector<float>& l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

TEST(Sampler, GreedyTakesArgmaxAndLowestIdOnTies) {
  Sampler s(plain(0.0f), 5);
  EXPECT_EQ(s.sample(std::vector<float>{0.1f, 2.0f, 2.0f, -1.0f, 1.9f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-3.0f, -2.0f, -2.5f, -9.0f, -2.0f}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{0.0f, 0.0f, 0.0f, 0.0f, 5.0f}), 4);
}

TEST(Sampler, GreedyIgnoresCutsAndSeed) {
  SamplingParams p;  // defaults: top-k/top-p/min-p on
  p.temperature = 0.0f;
  for (uint64_t seed : {1u, 2u, 3u}) {
    p.seed = seed;
    Sampler s(p, 1000);
    const auto l = random_logits(1000, 7);
    EXPECT_EQ(s.sample(l), argmax(l));
  }
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferentTokens) {
  SamplingParams p;  // the defaults, so every stage takes part
  p.temperature = 1.5f;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = 99;
  const auto l = random_logits(500, 3);
  auto run = [&](uint64_t seed) {
    p.seed = seed;
    Sampler s(p, 500);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) out.push_back(s.sample(l));
    return out;
  };
  EXPECT_EQ(run(99), run(99));
  EXPECT_NE(run(99), run(100));
}

TEST(Sampler, ResetReplaysTheSameStream) {
  SamplingParams p = plain(1.0f);
  p.repeat_penalty = 1.3f;
  Sampler s(p, 50);
  const auto l = random_logits(50, 11);
  std::vector<int32_t> first, second;
  for (int i = 0; i < 50; ++i) {
    first.push_back(s.sample(l));
    s.accept(first.back());
  }
  s.reset();
  for (int i = 0; i < 50; ++i) {
    second.push_back(s.sample(l));
    s.accept(second.back());
  }
  EXPECT_EQ(first, second);
}

TEST(Sampler, TopKOneEqualsGreedy) {
  SamplingParams p = plain(2.0f);
  p.top_k = 1;
  Sampler s(p, 4096);
  for (uint32_t seed = 0; seed < 20; ++seed) {
    const auto l = random_logits(4096, seed);
    EXPECT_EQ(s.sample(l), argmax(l)) << "logits seed " << seed;
  }
}

TEST(Sampler, TopKKeepsOnlyTheKBest) {
  SamplingParams p = plain(5.0f);  // hot, so that excluded tokens would show up
  p.top_k = 3;
  Sampler s(p, 6);
  const std::vector<float> l = {1.0f, 4.0f, 0.5f, 3.0f, 3.5f, 2.0f};
  const auto h = histogram(s, l, 3000);
  EXPECT_EQ(std::set<int32_t>({1, 3, 4}), [&] {
    std::set<int32_t> ids;
    for (auto& [id, n] : h) ids.insert(id);
    return ids;
  }());
}

TEST(Sampler, TemperatureOneFollowsTheDistribution) {
  Sampler s(plain(1.0f), 2);
  const auto h = histogram(s, log_probs({0.25f, 0.75f}), 8000);
  EXPECT_NEAR(h.at(1) / 8000.0, 0.75, 0.03);
}

TEST(Sampler, TopPKeepsTheSmallestNucleus) {
  SamplingParams p = plain(1.0f);
  p.top_p = 0.75f;  // 0.5 < 0.75 <= 0.5 + 0.3: tokens 0 and 1
  Sampler s(p, 4);
  const auto h = histogram(s, log_probs({0.5f, 0.3f, 0.15f, 0.05f}), 4000);
  EXPECT_EQ(h.count(2), 0u);
  EXPECT_EQ(h.count(3), 0u);
  // Renormalized over the nucleus: 0.5 / 0.8.
  EXPECT_NEAR(h.at(0) / 4000.0, 0.625, 0.03);
}

TEST(Sampler, TopPIncludesTheTokenThatCrossesTheThreshold) {
  SamplingParams p = plain(1.0f);
  p.top_p = 0.51f;
  Sampler s(p, 3);
  const auto h = histogram(s, log_probs({0.5f, 0.3f, 0.2f}), 2000);
  EXPECT_GT(h.at(1), 0);
  EXPECT_EQ(h.count(2), 0u);
}

TEST(Sampler, MinPDropsTokensBelowAFractionOfTheBest) {
  SamplingParams p = plain(1.0f);
  p.min_p = 0.2f;  // threshold 0.1: 0.15 stays, 0.05 goes
  Sampler s(p, 4);
  const auto h = histogram(s, log_probs({0.5f, 0.3f, 0.15f, 0.05f}), 4000);
  EXPECT_GT(h.at(2), 0);
  EXPECT_EQ(h.count(3), 0u);
}

// Reference: llama.cpp's chain on a full sort (top-k, top-p, min-p), returning the set of
// tokens that may be drawn.
std::set<int32_t> reference_allowed(const std::vector<float>& l, const SamplingParams& p) {
  std::vector<int32_t> ids(l.size());
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(),
            [&](int32_t a, int32_t b) { return l[a] > l[b] || (l[a] == l[b] && a < b); });
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < ids.size()) ids.resize(p.top_k);
  const double mx = l[ids[0]];
  if (p.top_p < 1.0f) {
    double norm = 0.0, cum = 0.0;
    for (int32_t id : ids) norm += std::exp(l[id] - mx);
    size_t keep = ids.size();
    for (size_t i = 0; i < ids.size(); ++i) {
      cum += std::exp(l[ids[i]] - mx) / norm;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
    ids.resize(keep);
  }
  if (p.min_p > 0.0f) {
    const float threshold = static_cast<float>(mx) + std::log(p.min_p);
    std::erase_if(ids, [&](int32_t id) { return l[id] < threshold; });
  }
  return {ids.begin(), ids.end()};
}

TEST(Sampler, CutsOnALargeVocabMatchTheFullSortReference) {
  struct Case {
    int top_k;
    float top_p, min_p;
  };
  const std::vector<Case> cases = {
      {0, 0.9f, 0.0f}, {0, 0.5f, 0.02f}, {0, 1.0f, 0.3f}, {50, 0.95f, 0.05f}, {7, 0.6f, 0.0f}};
  const int n_vocab = 20000;
  for (size_t c = 0; c < cases.size(); ++c) {
    // A few strong tokens on a wide flat tail: the nucleus needs more than one sorted chunk.
    auto l = random_logits(n_vocab, static_cast<uint32_t>(100 + c));
    for (int i = 0; i < 300; ++i) l[static_cast<size_t>(i * 61)] += 6.0f;
    SamplingParams p = plain(1.0f);
    p.top_k = cases[c].top_k;
    p.top_p = cases[c].top_p;
    p.min_p = cases[c].min_p;
    const auto allowed = reference_allowed(l, p);
    ASSERT_FALSE(allowed.empty());
    Sampler s(p, n_vocab);
    std::set<int32_t> seen;
    for (int i = 0; i < 1500; ++i) seen.insert(s.sample(l));
    for (int32_t id : seen) EXPECT_TRUE(allowed.count(id)) << "case " << c << " drew " << id;
    if (allowed.size() <= 20) {
      EXPECT_EQ(seen, allowed) << "case " << c;
    }
  }
}

TEST(Sampler, RepeatPenaltyDividesPositiveAndMultipliesNegativeLogits) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 1.5f;
  Sampler s(p, 3);
  const std::vector<float> pos = {2.0f, 1.9f, -1.0f};
  EXPECT_EQ(s.sample(pos), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(pos), 1);  // 2.0 / 1.5 < 1.9

  Sampler neg(p, 3);
  const std::vector<float> l = {-1.0f, -1.2f, -5.0f};
  EXPECT_EQ(neg.sample(l), 0);
  neg.accept(0);
  EXPECT_EQ(neg.sample(l), 1);  // -1.0 * 1.5 < -1.2
}

TEST(Sampler, RepeatPenaltyAppliesOncePerDistinctToken) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 1.5f;
  Sampler s(p, 2);
  for (int i = 0; i < 5; ++i) s.accept(0);
  // Five occurrences would give 3.0 / 1.5^5 < 1.0; one division gives 2.0 > 1.0.
  EXPECT_EQ(s.sample(std::vector<float>{3.0f, 1.0f}), 0);
}

TEST(Sampler, RepeatPenaltyOnlySeesTheLastNTokens) {
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 2.0f;
  p.repeat_last_n = 2;
  Sampler s(p, 4);
  const std::vector<float> l = {3.0f, 2.0f, 0.0f, 0.0f};
  s.accept(0);
  EXPECT_EQ(s.sample(l), 1);
  s.accept(2);
  s.accept(3);  // token 0 has left the window
  EXPECT_EQ(s.sample(l), 0);
  s.reset();
  EXPECT_EQ(s.sample(l), 0);

  p.repeat_last_n = 0;
  Sampler off(p, 4);
  off.accept(0);
  EXPECT_EQ(off.sample(l), 0);
}

TEST(Sampler, DefaultsOnAGemmaSizedVocab) {
  const int n_vocab = 262144;
  SamplingParams p;
  p.seed = 5;
  Sampler s(p, n_vocab);
  auto l = random_logits(n_vocab, 1);
  l[4242] = 40.0f;  // dominant: min-p leaves only this one
  for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(l), 4242);
}

void expect_error(SamplingParams p, const std::string& needle) {
  try {
    p.validate();
    ADD_FAILURE() << "no error for " << needle;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
  EXPECT_THROW(Sampler(p, 10), Error);
}

TEST(Sampler, InvalidParamsNameTheOption) {
  SamplingParams p;
  p.temperature = -0.5f;
  expect_error(p, "--temp must be >= 0, got -0.5");
  p = {};
  p.temperature = NAN;
  expect_error(p, "--temp ");
  p = {};
  p.top_p = 1.5f;
  expect_error(p, "--top-p must be in (0, 1], got 1.5");
  p.top_p = 0.0f;
  expect_error(p, "--top-p");
  p = {};
  p.min_p = -0.1f;
  expect_error(p, "--min-p must be in [0, 1], got -0.1");
  p.min_p = 1.01f;
  expect_error(p, "--min-p");
  p = {};
  p.top_k = -1;
  expect_error(p, "--top-k must be >= 0, got -1");
  p = {};
  p.repeat_penalty = 0.0f;
  expect_error(p, "--repeat-penalty must be > 0, got 0");
  p = {};
  p.repeat_last_n = -2;
  expect_error(p, "--repeat-last-n");
  EXPECT_NO_THROW(SamplingParams{}.validate());
}

}  // namespace
}  // namespace kvs
