// Session invariants on a real model: chunking, threads and prefix reuse never change logits.
#include <gtest/gtest.h>

#include "engine/engine.h"
#include "engine/session.h"
#include "support/paths.h"

namespace kvs {
namespace {

std::unique_ptr<Engine> load(const std::string& path, int threads) {
  EngineOptions eo;
  eo.threads = threads;
  return Engine::load(path, eo);
}

std::vector<int32_t> sample_tokens(const Engine& e) {
  return e.tokenizer().encode(
      "Once upon a time, there was a little dog named Max. Max liked to run in the park with his "
      "friend, a cat "
      "named Tom. One day they found a big box under a tree.",
      true, false);
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

class SessionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SessionTest, ChunkSizeAndThreadsDoNotChangeLogits) {
  KVS_REQUIRE_FILE(GetParam());
  auto e1 = load(GetParam(), 1);
  auto e2 = load(GetParam(), 2);
  const auto toks = sample_tokens(*e1);
  const int64_t n = static_cast<int64_t>(toks.size());
  SessionOptions big;
  SessionOptions small;
  small.n_batch = 5;
  Session a(*e1, big), b(*e1, small), c(*e2, small);
  const auto la = a.eval(toks, n), lb = b.eval(toks, n), lc = c.eval(toks, n);
  expect_close(la, lb, 1e-4f);
  expect_close(lb, lc, 1e-4f);
}

TEST_P(SessionTest, TruncateThenContinueEqualsFreshEvaluation) {
  KVS_REQUIRE_FILE(GetParam());
  auto e = load(GetParam(), 1);
  const auto toks = sample_tokens(*e);
  const size_t split = toks.size() / 2;
  std::vector<int32_t> head(toks.begin(), toks.begin() + split);
  std::vector<int32_t> tail(toks.begin() + split, toks.end());
  Session s(*e, SessionOptions{});
  s.eval(toks, 1);
  ASSERT_TRUE(s.truncate(static_cast<int64_t>(split)));
  EXPECT_EQ(s.n_past(), static_cast<int64_t>(split));
  EXPECT_EQ(s.history(), head);
  const auto resumed = s.eval(tail, static_cast<int64_t>(tail.size()));
  Session fresh(*e, SessionOptions{});
  fresh.eval(head, 0);
  expect_close(resumed, fresh.eval(tail, static_cast<int64_t>(tail.size())), 1e-5f);
}

TEST_P(SessionTest, ContextOverflowIsAnErrorAndLeavesTheSessionUsable) {
  KVS_REQUIRE_FILE(GetParam());
  auto e = load(GetParam(), 1);
  const auto toks = sample_tokens(*e);
  SessionOptions so;
  so.n_ctx = 16;
  Session s(*e, so);
  EXPECT_THROW(s.eval(toks, 1), Error);
  EXPECT_EQ(s.n_past(), 0);
  std::vector<int32_t> few(toks.begin(), toks.begin() + 8);
  EXPECT_EQ(s.eval(few, 1).size(), static_cast<size_t>(e->config().n_vocab));
}

INSTANTIATE_TEST_SUITE_P(Models, SessionTest,
                         ::testing::Values(KVS_STORIES, KVS_SMOLLM2, KVS_GEMMA3),
                         [](const auto& info) { return std::to_string(info.index); });

// Gemma 3's local layers drop keys older than the window: a session that slid past it
// cannot be truncated back to before the window, and says so.
TEST(SessionSlidingWindow, TruncateBeforeDroppedKeysIsRefused) {
  KVS_REQUIRE_FILE(KVS_GEMMA3);
  auto e = load(KVS_GEMMA3, 2);
  const int window = e->config().sliding_window;
  ASSERT_GT(window, 0);
  std::vector<int32_t> toks(window + 40, 1000);
  toks[0] = e->tokenizer().special().bos;
  Session s(*e, SessionOptions{});
  s.eval(toks, 1);
  // Local layers hold window-1 keys, global layers every token.
  const size_t n = toks.size();
  EXPECT_LE(s.cache().bytes_in_use(), s.full_cache_bytes(static_cast<int64_t>(n)));
  size_t slots = 0;
  for (int il = 0; il < e->config().n_layer; ++il)
    slots += (e->config().is_swa(il) ? window - 1 : n) * static_cast<size_t>(e->config().n_head_kv);
  EXPECT_EQ(s.cache().bytes_in_use(), slots * s.cache().slot_bytes(0));
  // A query at position n-5 needs keys from n-5-window+1 on; the local layers dropped them.
  EXPECT_FALSE(s.truncate(static_cast<int64_t>(n) - 5));
  EXPECT_FALSE(s.truncate(10));
  EXPECT_EQ(s.n_past(), static_cast<int64_t>(n));
  EXPECT_TRUE(s.truncate(static_cast<int64_t>(n)));  // nothing to drop
}

}  // namespace
}  // namespace kvs
