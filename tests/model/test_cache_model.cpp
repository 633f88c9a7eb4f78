// The cache manager on real models: `full` is bit-exact with no manager; 50% budgets keep
// generation fluent while really halving the bytes in use; a streaming plan bounds the peak
// memory of a long prompt; "positions": "cache" streams past the trained context.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "cache/plan.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/session.h"
#include "support/paths.h"

namespace kvs {
namespace {

// Loaded once per test process. stories260K is too small to gain from threads (its 2300-step
// decode test is dominated by thread hand-offs), the others use 2.
std::shared_ptr<const Engine> engine(const std::string& path) {
  static std::map<std::string, std::shared_ptr<const Engine>> loaded;
  auto& e = loaded[path];
  if (!e) {
    EngineOptions eo;
    eo.threads = path == KVS_STORIES ? 1 : 2;
    e = Engine::load(path, eo);
  }
  return e;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// About n tokens of real text (BOS first), from `offset` characters into the file (past the
// Project Gutenberg header).
std::vector<int32_t> text_tokens(const Engine& e, const std::string& file, size_t n,
                                 size_t offset = 4000) {
  const std::string text = read_text(file);
  std::vector<int32_t> toks = e.tokenizer().encode(text.substr(offset, n * 8), true, false);
  if (toks.size() > n) toks.resize(n);
  return toks;
}

std::shared_ptr<const CachePlan> inline_plan(const std::string& text) {
  return std::make_shared<CachePlan>(parse_cache_plan(nlohmann::json::parse(text), "inline"));
}

SessionOptions with_plan(std::shared_ptr<const CachePlan> plan, int n_ctx = 0, int n_batch = 256) {
  SessionOptions so;
  so.plan = std::move(plan);
  so.n_ctx = n_ctx;
  so.n_batch = n_batch;
  return so;
}

int32_t argmax(const float* logits, int n) {
  return static_cast<int32_t>(std::max_element(logits, logits + n) - logits);
}

double log_prob(const float* logits, int n, int32_t id) {
  const float mx = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  return static_cast<double>(logits[id]) - mx - std::log(sum);
}

// ---- (a) full == no manager, bit for bit ----

class FullPlanModel : public ::testing::TestWithParam<std::string> {};

TEST_P(FullPlanModel, LogitsAndGreedyTokensAreBitExactWithoutAManager) {
  KVS_REQUIRE_FILE(GetParam());
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  const auto e = engine(GetParam());
  const auto toks = text_tokens(*e, test::shared_data("text/botchan.txt"), 200);
  ASSERT_EQ(toks.size(), 200u);
  const int64_t n = static_cast<int64_t>(toks.size());
  Session plain(*e, with_plan(nullptr, 0, 64));
  Session full(*e, with_plan(std::make_shared<CachePlan>(load_cache_plan("full")), 0, 64));
  const auto a = plain.eval(toks, n), b = full.eval(toks, n);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "logit " << i;
  EXPECT_EQ(plain.cache().bytes_in_use(), full.cache().bytes_in_use());

  GenerateOptions go;
  go.n_predict = 24;
  go.sampling.temperature = 0.0f;
  go.ignore_eos = true;
  Session g1(*e, with_plan(nullptr));
  Session g3(*e, with_plan(std::make_shared<CachePlan>(load_cache_plan("full"))));
  const std::vector<int32_t>& prompt = toks;
  const GenerateStats s1 = generate(g1, prompt, go, {});
  const GenerateStats s3 = generate(g3, prompt, go, {});
  EXPECT_EQ(s1.tokens, s3.tokens);
  EXPECT_EQ(s1.text, s3.text);
  EXPECT_EQ(s1.tokens.size(), 24u);
}

INSTANTIATE_TEST_SUITE_P(Models, FullPlanModel, ::testing::Values(KVS_STORIES, KVS_SMOLLM2),
                         [](const auto& info) { return info.index == 0 ? "stories" : "smollm2"; });

// ---- (b) 50% budgets stay fluent and halve the bytes ----
//
// Fluency proxy. Scoring a plan's own greedy text under the full cache is fooled by
// repetition, which the full model, reading it back, finds likely: a 3% sliding window that
// produced "I, I, I, I, ..." scored -1.10 nats/token and a 10% random cache's
// "ampampamp..." -1.54, both above the full cache's own -1.47. So the plan is scored on the
// full cache's greedy continuation instead (teacher-forced through the compressed cache:
// the log-likelihood of the reference text, the usual measure of a cache's loss), and then
// generates freely, which must not degenerate into a repeated token or a handful of tokens.

constexpr int kFluentPrompt = 1000, kFluentGen = 64;
// Calibration (2026-12-02, greedy, 1000 botchan tokens, 64 reference tokens), mean log-prob
// of the reference text: SmolLM2 full cache -1.38; knorm-50 -1.85, snapkv-50 -1.38, h2o-50
// -1.53; a 3% window -2.44 and a 10% random cache -2.74 (both fail). With 32 reference tokens
// the figures moved by up to 0.3 when the arithmetic changed by an ulp (ggml-exact RoPE and
// SiLU moved knorm-50 from 0.32 to 0.78 below the full cache), so the reference is 64 tokens.
// Gemma 3 full -0.95, and the 3% window -0.94 and 10% random -0.90 as well: only 3 of its 18
// layers are global (the sliding-window ones are never compressed), so on Gemma this check
// guards against breakage, not against a lossy policy.
constexpr double kLogProbMargin = 0.75;
constexpr int kMaxRun = 4;        // longest run of one token in the free generation
constexpr int kMinDistinct = 10;  // distinct tokens among the 32 generated
// The free generation uses the repetition penalty the README gives for SmolLM2: plain greedy
// decoding of a 135M model loops whatever the cache (the full cache's own greedy text here is
// "you are the master of the house," three times, 10 distinct tokens), so without it the check
// would flip on 1e-6 changes of the attention arithmetic rather than on a damaged cache.
constexpr float kFreePenalty = 1.15f;

// The prompt and the full cache's greedy continuation with its mean log-prob.
struct Baseline {
  std::shared_ptr<const Engine> e;
  std::vector<int32_t> prompt;
  std::vector<int32_t> tokens;
  double mean_log_prob = 0.0;
};

// Greedy decoding; `penalty` > 1 applies llama.cpp's repetition penalty to the tokens generated
// so far (positive logits divided by it, negative ones multiplied).
std::vector<int32_t> greedy_tokens(Session& s, std::vector<float> logits, int n,
                                   double* mean_lp = nullptr, float penalty = 1.0f) {
  const int n_vocab = s.engine().config().n_vocab;
  std::vector<int32_t> out;
  double lp = 0.0;
  for (int i = 0; i < n; ++i) {
    if (penalty != 1.0f)
      for (int32_t t : std::set<int32_t>(out.begin(), out.end())) {
        float& x = logits[static_cast<size_t>(t)];
        x = x > 0.0f ? x / penalty : x * penalty;
      }
    const int32_t id = argmax(logits.data(), n_vocab);
    lp += log_prob(logits.data(), n_vocab, id);
    out.push_back(id);
    if (i + 1 < n) logits = s.eval(std::span<const int32_t>(&id, 1), 1);
  }
  if (mean_lp != nullptr) *mean_lp = lp / n;
  return out;
}

const Baseline& baseline(const std::string& model) {
  static std::map<std::string, Baseline> cache;
  auto it = cache.find(model);
  if (it != cache.end()) return it->second;
  Baseline& b = cache[model];
  b.e = engine(model);
  b.prompt = text_tokens(*b.e, test::shared_data("text/botchan.txt"), kFluentPrompt);
  Session s(*b.e, with_plan(nullptr, kFluentPrompt + 2 * kFluentGen + 8));
  b.tokens = greedy_tokens(s, s.eval(b.prompt, 1), kFluentGen, &b.mean_log_prob);
  return b;
}

int longest_run(const std::vector<int32_t>& t) {
  int best = 0, run = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    run = i > 0 && t[i] == t[i - 1] ? run + 1 : 1;
    best = std::max(best, run);
  }
  return best;
}

struct FluentModel {
  const char* name;
  std::string path;
};

void PrintTo(const FluentModel& m, std::ostream* os) {
  *os << m.name;
}

// One test per model (one process under ctest) so that the full-cache baseline is computed
// once for the three plans.
class HalfBudgetModel : public ::testing::TestWithParam<FluentModel> {};

TEST_P(HalfBudgetModel, StaysFluentWithHalfTheBytes) {
  const FluentModel& m = GetParam();
  KVS_REQUIRE_FILE(m.path);
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  const Baseline& b = baseline(m.path);
  ASSERT_EQ(b.prompt.size(), static_cast<size_t>(kFluentPrompt));
  const ModelConfig& cfg = b.e->config();
  const int n_vocab = cfg.n_vocab;
  for (const char* plan : {"knorm-50", "snapkv-50", "h2o-50"}) {
    SCOPED_TRACE(plan);
    Session s(*b.e, with_plan(std::make_shared<CachePlan>(load_cache_plan(plan)),
                              kFluentPrompt + 2 * kFluentGen + 8));
    const std::vector<float> first = s.eval(b.prompt, 1);
    ASSERT_GE(s.manager()->stats().compressions, 1);

    // Bytes right after the prompt's compression. Sliding-window layers are bounded by their
    // window and never compressed: the 0.55 bound applies to the global layers.
    size_t global_in_use = 0, global_full = 0;
    for (int il = 0; il < cfg.n_layer; ++il) {
      const size_t per_token = static_cast<size_t>(cfg.n_head_kv) * s.cache().slot_bytes(il);
      if (cfg.is_swa(il)) {
        EXPECT_LE(s.cache().bytes_in_use(il), cfg.sliding_window * per_token);
        continue;
      }
      global_in_use += s.cache().bytes_in_use(il);
      global_full += kFluentPrompt * per_token;
    }
    EXPECT_LE(static_cast<double>(global_in_use), 0.55 * static_cast<double>(global_full));
    EXPECT_LE(s.cache().bytes_in_use(), s.full_cache_bytes(kFluentPrompt));
    if (cfg.sliding_window == 0) {
      EXPECT_LE(static_cast<double>(s.cache().bytes_in_use()),
                0.55 * static_cast<double>(s.full_cache_bytes(kFluentPrompt)));
    }

    // The full cache's continuation, read through the compressed cache.
    double lp = log_prob(first.data(), n_vocab, b.tokens[0]);
    const std::vector<int32_t> head(b.tokens.begin(), b.tokens.end() - 1);
    const auto logits = s.eval(head, static_cast<int64_t>(head.size()));
    for (size_t i = 1; i < b.tokens.size(); ++i)
      lp += log_prob(logits.data() + (i - 1) * n_vocab, n_vocab, b.tokens[i]);
    lp /= static_cast<double>(b.tokens.size());

    // Then free generation after it.
    const std::vector<int32_t> own =
        greedy_tokens(s, s.eval(std::span<const int32_t>(&b.tokens.back(), 1), 1), kFluentGen,
                      nullptr, kFreePenalty);
    const std::string text = b.e->tokenizer().decode(own, false);
    const std::set<int32_t> distinct(own.begin(), own.end());
    std::printf(
        "[ fluency  ] %s %s: reference text %.3f nats/token (full cache %.3f), %zu KiB "
        "of %zu after the prompt; then: %s\n",
        m.name, plan, lp, b.mean_log_prob, global_in_use / 1024, global_full / 1024, text.c_str());
    EXPECT_GT(lp, b.mean_log_prob - kLogProbMargin);
    EXPECT_LE(longest_run(own), kMaxRun) << text;
    EXPECT_GE(static_cast<int>(distinct.size()), kMinDistinct) << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Models, HalfBudgetModel,
                         ::testing::Values(FluentModel{"smollm2", KVS_SMOLLM2},
                                           FluentModel{"gemma3", KVS_GEMMA3}),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- (c) long prompts with bounded memory ----

// An 8k-token prompt in a context of 8192 (about 30 s on 2 cores: the reference attention
// over 512 + 256 slots is cheap, the weights are not).
constexpr int kLongPrompt = 8000, kLongBatch = 256;

TEST(CacheModelLong, StreamingChunkPlanBoundsThePeakOfALongPrompt) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  KVS_REQUIRE_FILE(test::shared_data("text/tinyshakespeare.txt"));
  const auto e = engine(KVS_SMOLLM2);
  const auto toks = text_tokens(*e, test::shared_data("text/tinyshakespeare.txt"), kLongPrompt, 0);
  ASSERT_EQ(toks.size(), static_cast<size_t>(kLongPrompt));
  const auto plan = std::make_shared<CachePlan>(load_cache_plan("streaming-512"));
  ASSERT_EQ(plan->when, CompressWhen::Chunk);
  Session s(*e, with_plan(plan, 8192, kLongBatch));
  const ModelConfig& cfg = e->config();
  const size_t slot = s.cache().slot_bytes(0);
  const size_t bound =
      static_cast<size_t>(cfg.n_layer) * cfg.n_head_kv * (512 + plan->margin + kLongBatch) * slot;
  size_t worst = 0;
  int64_t first_over = -1;  // tokens done when the peak first passed the bound
  s.eval(toks, 1, [&](int64_t done, int64_t) {
    worst = std::max(worst, s.cache().bytes_allocated());
    if (first_over < 0 && s.cache().peak_bytes_allocated() > bound) first_over = done;
  });
  EXPECT_EQ(first_over, -1) << "the peak passed the bound after " << first_over << " tokens";
  // The peak over the whole prompt, not only at the end.
  EXPECT_LE(s.cache().peak_bytes_allocated(), bound)
      << "peak " << s.cache().peak_bytes_allocated() / (slot * cfg.n_layer * cfg.n_head_kv)
      << " slots per head, bound " << 512 + plan->margin + kLongBatch;
  EXPECT_LE(worst, bound);
  EXPECT_EQ(s.cache().bytes_in_use(),
            static_cast<size_t>(cfg.n_layer) * cfg.n_head_kv * 512 * slot);
  EXPECT_LT(s.cache().peak_bytes_allocated(), s.full_cache_bytes(kLongPrompt) / 4);
  // The 4 sinks and the newest tokens are what is left.
  const int32_t* pos = s.cache().positions(cfg.n_layer - 1, 0);
  for (int32_t p = 0; p < 4; ++p) EXPECT_EQ(pos[p], p);
  EXPECT_EQ(pos[511], kLongPrompt - 1);
}

TEST(CacheModelLong, CachePositionsStreamPastTheTrainedContext) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto e = engine(KVS_STORIES);
  const ModelConfig& cfg = e->config();
  const int total = std::max(2300, cfg.n_ctx_train + 200);
  const auto plan = inline_plan(R"({"policy": "streaming", "budget": 64, "sinks": 4,
      "positions": "cache", "compress": "chunk", "margin": 16})");
  Session s(*e, with_plan(plan, 0, 64));
  const auto prompt =
      e->tokenizer().encode("Once upon a time, there was a little girl.", true, false);
  GenerateOptions go;
  go.n_predict = total - static_cast<int>(prompt.size());
  go.sampling.temperature = 0.0f;
  go.ignore_eos = true;
  const GenerateStats st = generate(s, prompt, go, {});
  EXPECT_EQ(st.stop_reason, "length");
  EXPECT_EQ(s.n_past(), total - 1);  // the last token is sampled, not evaluated
  EXPECT_GT(s.n_past(), cfg.n_ctx_train);
  // Bounded: every head holds at most budget + margin slots, however long the text.
  const size_t per_head = 64 + 16;
  size_t bound = 0;
  for (int il = 0; il < cfg.n_layer; ++il)
    bound += per_head * cfg.n_head_kv * s.cache().slot_bytes(il);
  EXPECT_LE(s.cache().bytes_allocated(), bound);
  EXPECT_LE(s.cache().peak_bytes_allocated(), 2 * bound);
  for (int il = 0; il < cfg.n_layer; ++il)
    for (int h = 0; h < cfg.n_head_kv; ++h) {
      EXPECT_LE(s.cache().len(il, h), static_cast<int32_t>(per_head));
      EXPECT_EQ(s.cache().positions(il, h)[0], 0);  // the sinks stay
    }
  // Still text, not a collapse into one repeated token.
  EXPECT_LE(longest_run(st.tokens), 16);
}

}  // namespace
}  // namespace kvs
