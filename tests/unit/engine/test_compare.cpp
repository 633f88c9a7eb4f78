// Probe generators, scoring, suites, plan variants and a tiny compare run on stories260K.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/compare.h"
#include "engine/compare_report.h"
#include "engine/fidelity.h"
#include "engine/perplexity.h"
#include "engine/probe_eval.h"
#include "engine/tasks.h"
#include "kernels/core/error.h"
#include "support/paths.h"

namespace kvs {
namespace {

using json = nlohmann::json;

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class CompareStories : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!test::exists(KVS_STORIES) || !test::exists(test::shared_data("text/botchan.txt"))) return;
    EngineOptions eo;
    eo.threads = 1;  // ctest runs tests in parallel on a small machine
    engine_ = Engine::load(KVS_STORIES, eo).release();
    text_ = new std::string(read_text(test::shared_data("text/botchan.txt")));
    hay_ = new Haystack(engine_->tokenizer(), *text_, "botchan.txt");
  }
  static void TearDownTestSuite() {
    delete hay_;
    delete text_;
    delete engine_;
    hay_ = nullptr;
    text_ = nullptr;
    engine_ = nullptr;
  }
  void SetUp() override {
    KVS_REQUIRE_FILE(KVS_STORIES);
    KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  }
  const Tokenizer& tok() const { return engine_->tokenizer(); }

  static Engine* engine_;
  static std::string* text_;
  static Haystack* hay_;
};
Engine* CompareStories::engine_ = nullptr;
std::string* CompareStories::text_ = nullptr;
Haystack* CompareStories::hay_ = nullptr;

TEST(ScoreAnswer, FirstDigitRunMustMatchExactly) {
  EXPECT_TRUE(score_answer("12345", " 12345."));
  EXPECT_TRUE(score_answer("12345", "The pass key is 12345 and"));
  EXPECT_FALSE(score_answer("12345", " 1234."));
  EXPECT_FALSE(score_answer("12345", " 123456"));
  EXPECT_FALSE(score_answer("12345", " 99 then 12345"));  // only the first run counts
  EXPECT_FALSE(score_answer("12345", "no digits"));
  EXPECT_FALSE(score_answer("12345", ""));
}

TEST_F(CompareStories, ProbeHasTheRequestedLengthAndNeedleDepth) {
  for (const char* kind : {"passkey", "niah"}) {
    for (double depth : {0.0, 0.25, 0.5, 0.75, 1.0}) {
      ProbeSpec spec{kind, 400, depth, 7};
      const Probe p = make_probe(tok(), *hay_, spec);
      ASSERT_EQ(static_cast<int64_t>(p.context.size()), 400) << kind << " " << depth;
      EXPECT_EQ(p.answer.size(), std::string(kind) == "passkey" ? 5u : 7u);
      // The needle's tokens are in the context, and its value decodes to the answer.
      std::string value;
      for (int64_t i = p.value_begin; i < p.value_end; ++i)
        value += tok().token_text(p.context[i], false);
      EXPECT_NE(value.find(p.answer), std::string::npos) << value;
      EXPECT_LE(p.needle_begin, p.value_begin);
      EXPECT_LE(p.value_end, p.needle_end);
      // Depth: the filler before the needle is about depth of all filler (sentence-snapped).
      const std::vector<int32_t> instr = tok().encode(
          std::string(kind) == "passkey"
              ? "There is an important info hidden inside a lot of irrelevant text. Find it and "
                "memorize it. I will quiz you about the important information there.\n"
              : "Some special magic numbers are hidden within the following text. Make sure to "
                "memorize them. I will quiz you about the numbers afterwards.\n",
          true, false);
      const int64_t n_fill =
          400 - static_cast<int64_t>(instr.size()) - (p.needle_end - p.needle_begin);
      const int64_t before = p.needle_begin - static_cast<int64_t>(instr.size());
      EXPECT_NEAR(static_cast<double>(before), depth * n_fill, 48.0) << kind << " " << depth;
      if (depth == 0.0) {
        EXPECT_EQ(before, 0);
      }
      if (depth == 1.0) {
        EXPECT_EQ(p.needle_end, 400);
      }
      const std::string q = tok().decode(p.question, false);
      EXPECT_NE(q.find('?'), std::string::npos);
    }
  }
}

TEST_F(CompareStories, ProbesAreDeterministicPerSeedAndDifferAcrossSeeds) {
  const Probe a = make_probe(tok(), *hay_, {"passkey", 300, 0.5, 11});
  const Probe b = make_probe(tok(), *hay_, {"passkey", 300, 0.5, 11});
  const Probe c = make_probe(tok(), *hay_, {"passkey", 300, 0.5, 12});
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_NE(a.context, c.context);
}

TEST_F(CompareStories, BadProbeSpecsAreErrors) {
  EXPECT_THROW(make_probe(tok(), *hay_, {"passkey", 64, 0.5, 0}), Error);  // too short
  EXPECT_THROW(make_probe(tok(), *hay_, {"passkey", 400, 1.5, 0}), Error);
  EXPECT_THROW(make_probe(tok(), *hay_, {"riddle", 400, 0.5, 0}), Error);
  EXPECT_THROW(Haystack(tok(), "too short", "x.txt"), Error);
}

TEST_F(CompareStories, FidelityOfTheFullCacheAgainstItselfIsExact) {
  std::vector<int32_t> toks = tok().encode(text_->substr(0, 3000), true, false);
  toks.resize(200);
  const std::span<const int32_t> ctx(toks.data(), 160), cont(toks.data() + 160, 40);
  SessionOptions so;
  FidelityReference ref;
  const FidelityResult r0 = teacher_forced(*engine_, so, ctx, cont, nullptr, &ref);
  EXPECT_EQ(r0.steps, 39);
  const FidelityResult r1 = teacher_forced(*engine_, so, ctx, cont, &ref);
  EXPECT_EQ(r1.mean_kl, 0.0);
  EXPECT_EQ(r1.top1_agreement, 1.0);
  // A quarter of the cache changes the distribution.
  so.plan = std::make_shared<const CachePlan>(
      parse_cache_plan(json{{"policy", "knorm"}, {"budget", 0.25}}, "test"));
  const FidelityResult r2 = teacher_forced(*engine_, so, ctx, cont, &ref);
  EXPECT_GT(r2.mean_kl, 1e-4);
  EXPECT_LT(r2.top1_agreement, 1.0);
  EXPECT_LT(r2.kv_bytes_context, r2.kv_bytes_full_context / 3);
}

TEST_F(CompareStories, QuestionIsNotCompressedUnlessAsked) {
  const Probe p = make_probe(tok(), *hay_, {"passkey", 300, 0.5, 3});
  SessionOptions so;
  so.n_ctx = 400;
  so.plan = std::make_shared<const CachePlan>(
      parse_cache_plan(json{{"policy", "knorm"}, {"budget", 0.25}}, "test"));
  const ProbeOutcome a = answer_probe(*engine_, so, p, false, 4);
  const ProbeOutcome b = answer_probe(*engine_, so, p, true, 4);
  EXPECT_EQ(a.compressions, 1);  // the context only
  EXPECT_EQ(b.compressions, 1);  // context and question together
  EXPECT_LT(a.kv_bytes_in_use, a.kv_bytes_full / 3);
  EXPECT_GT(b.kv_bytes_full, a.kv_bytes_full);  // the question was in the compressed part
}

TEST(CompareSuite, ParsesAndRejectsBadSuites) {
  const json good = json::parse(R"({"name": "t", "text": "x.txt", "seed": 3, "tasks": [
      {"task": "passkey", "lengths": [256, 512], "depths": [0, 1], "samples": 2},
      {"task": "perplexity", "ctx": 128, "tokens": 512, "batch": 32},
      {"task": "fidelity", "ctx": 128, "tokens": 16}]})");
  const CompareSuite s = parse_compare_suite(good, "t.json");
  ASSERT_EQ(s.tasks.size(), 3u);
  EXPECT_EQ(s.tasks[0].samples, 2);
  EXPECT_EQ(s.tasks[1].batch, 32);
  EXPECT_EQ(s.seed, 3u);
  auto bad = [](const std::string& text, const std::string& needle) {
    try {
      parse_compare_suite(json::parse(text), "bad.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("bad.json"), std::string::npos) << e.what();
    }
  };
  bad(R"({"text": "x", "tasks": [{"task": "riddle"}]})", "unknown task");
  bad(R"({"text": "x", "tasks": [{"task": "passkey", "lengths": [256], "depths": [1.5]}]})",
      "depths");
  bad(R"({"text": "x", "tasks": [{"task": "passkey", "lengths": [8], "depths": [0.5]}]})",
      "lengths");
  bad(R"({"text": "x", "tasks": [{"task": "perplexity", "ctx": 128, "tokens": 512, "typo": 1}]})",
      "typo");
  bad(R"({"tasks": [{"task": "perplexity", "ctx": 128, "tokens": 512}]})", "text");
  bad(R"({"text": "x", "tasks": []})", "tasks");
  bad(R"({"text": "x", "tasks": [], "colour": 1})", "colour");
}

TEST(CompareSuite, PlanVariantsPutFullFirstAndApplyBudgets) {
  const auto v = expand_plans({"knorm", "streaming", "knorm"}, {0.25, 0.5});
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v[0].label, "full");
  EXPECT_EQ(v[1].label, "knorm@0.25");
  EXPECT_EQ(v[1].plan["budget"], 0.25);
  EXPECT_EQ(v[4].label, "streaming@0.5");
  EXPECT_THROW(expand_plans({"knorm"}, {}), Error);  // a bare policy needs a budget
  EXPECT_THROW(expand_plans({"knorm"}, {1.5}), Error);
  EXPECT_THROW(expand_plans({"no-such-plan"}, {0.5}), Error);
  const auto shipped = expand_plans({"knorm-50"}, {});
  ASSERT_EQ(shipped.size(), 2u);
  EXPECT_EQ(shipped[1].label, "knorm-50");
  EXPECT_EQ(shipped[1].budget, 0.5);
}

TEST(CompareSuite, CellsCoverEveryPointAndSkipWhatDoesNotFit) {
  const CompareSuite s = parse_compare_suite(json::parse(R"({"text": "x", "tasks": [
      {"task": "passkey", "lengths": [256, 4096], "depths": [0, 0.5, 1], "samples": 2},
      {"task": "fidelity", "ctx": 128, "tokens": 16}]})"),
                                             "t.json");
  const auto variants = expand_plans({"knorm"}, {0.5});
  std::vector<std::string> skipped;
  const auto cells = enumerate_cells(s, variants, 1024, &skipped);
  EXPECT_EQ(cells.size(), (3u * 2u + 1u) * 2u);
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_NE(skipped[0].find("4096"), std::string::npos);
  std::set<std::string> ids;
  for (const auto& c : cells) ids.insert(c.id);
  EXPECT_EQ(ids.size(), cells.size());
  // Every plan sees the same probe seed at a point; points differ.
  EXPECT_EQ(cells[0].params["seed"], cells[1].params["seed"]);
  EXPECT_NE(cells[0].params["seed"], cells[2].params["seed"]);
}

TEST_F(CompareStories, TinyRunIsDeterministicAndSelfDescribing) {
  const CompareSuite s = parse_compare_suite(json::parse(R"({"text": "botchan.txt", "seed": 1,
      "tasks": [{"task": "passkey", "lengths": [300], "depths": [0.5], "samples": 1},
                {"task": "perplexity", "ctx": 256, "tokens": 512, "batch": 64},
                {"task": "fidelity", "ctx": 192, "tokens": 16}]})"),
                                             "tiny.json");
  const auto variants = expand_plans({"knorm"}, {0.25});
  CompareRunOptions ro;
  ro.text_path = "botchan.txt";
  ro.model = {{"name", "stories260K"}, {"sha256", "x"}};
  CompareRunner runner(*engine_, s, variants, ro, *text_);
  const auto cells = enumerate_cells(s, variants, 512, nullptr);
  ASSERT_EQ(cells.size(), 6u);
  std::vector<json> rows;
  for (const auto& c : cells) rows.push_back(*runner.run(c));
  for (const auto& r : rows) {
    EXPECT_EQ(r["version"], KVSIEVE_VERSION);
    EXPECT_TRUE(r.contains("plan"));
    EXPECT_TRUE(r["params"].contains("text"));
  }
  // Full cache: fidelity is exact; knorm at 25% keeps a quarter of the context.
  EXPECT_EQ(rows[4]["metrics"]["mean_kl"], 0.0);
  EXPECT_EQ(rows[4]["metrics"]["top1_agreement"], 1.0);
  EXPECT_NEAR(rows[5]["metrics"]["kv_fraction"].get<double>(), 0.25, 0.02);
  EXPECT_GT(rows[5]["metrics"]["mean_kl"].get<double>(), 0.0);
  // Perplexity of the full variant equals the perplexity tool's.
  std::vector<int32_t> toks = engine_->tokenizer().encode("", true, false);
  const auto body = engine_->tokenizer().encode(*text_, false, false);
  toks.insert(toks.end(), body.begin(), body.begin() + (512 - static_cast<int64_t>(toks.size())));
  SessionOptions so;
  so.n_ctx = 256;
  so.n_batch = 64;
  EXPECT_DOUBLE_EQ(rows[2]["metrics"]["perplexity"].get<double>(),
                   perplexity(*engine_, so, toks).perplexity);
  // Compressing during evaluation changes perplexity.
  EXPECT_NE(rows[3]["metrics"]["perplexity"], rows[2]["metrics"]["perplexity"]);
  // The same cell again gives the same row (timings aside).
  json again = *runner.run(cells[1]);
  EXPECT_EQ(again["metrics"]["generated"], rows[1]["metrics"]["generated"]);
  EXPECT_EQ(again["metrics"]["kv_bytes_in_use"], rows[1]["metrics"]["kv_bytes_in_use"]);

  const json summary = summarize_compare(rows);
  ASSERT_EQ(summary.size(), 2u);
  EXPECT_EQ(summary[0]["plan"], "full");
  EXPECT_EQ(summary[0]["passkey_n"], 1);
  EXPECT_EQ(summary[1]["top1_agreement"], rows[5]["metrics"]["top1_agreement"]);
  const std::string table = compare_table(summary);
  EXPECT_NE(table.find("knorm@0.25"), std::string::npos);
  const std::string csv = compare_csv(rows);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 7);  // header + 6 rows
}

TEST(CompareReport, SummaryAveragesAccuracyPerPlan) {
  std::vector<json> rows;
  for (int i = 0; i < 4; ++i)
    rows.push_back(
        {{"plan_label", "a"},
         {"policy", "knorm"},
         {"budget", 0.5},
         {"task", "passkey"},
         {"params", {{"length", 256 * (1 + i % 2)}}},
         {"metrics", {{"correct", i < 3}, {"kv_fraction", 0.5}, {"kv_bytes_in_use", 1 << 20}}}});
  const json s = summarize_compare(rows);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_DOUBLE_EQ(s[0]["passkey_accuracy"].get<double>(), 0.75);
  EXPECT_EQ(s[0]["passkey_n"], 4);
  EXPECT_EQ(s[0]["max_length"], 512);
  EXPECT_DOUBLE_EQ(s[0]["kv_mib_at_max_length"].get<double>(), 1.0);
  EXPECT_TRUE(s[0]["perplexity"].is_null());
  const std::string csv = compare_csv(
      {json{{"id", "x,y"}, {"params", json::object()}, {"metrics", {{"generated", "a \"b\""}}}}});
  EXPECT_NE(csv.find("\"x,y\""), std::string::npos);
  EXPECT_NE(csv.find("\"a \"\"b\"\"\""), std::string::npos);
}

}  // namespace
}  // namespace kvs
