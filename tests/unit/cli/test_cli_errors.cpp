// The error paths of every command, run through the binary: the exit code (1 bad input,
// 2 usage), exactly one error line on stderr that names the offending file, key, option or
// value, nothing on stdout, and no output file left behind.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/cli.h"
#include "support/paths.h"
#include "support/scoped_env.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using test::run_cli;

struct ErrorCase {
  ErrorCase(std::string n, std::vector<std::string> a, int c, std::vector<std::string> nd,
            std::string ab = "")
      : name(std::move(n)),
        args(std::move(a)),
        code(c),
        needles(std::move(nd)),
        absent(std::move(ab)) {}
  std::string name;                  // gtest name
  std::vector<std::string> args;     // "@D" -> scratch directory, "@S" -> stories260K.gguf
  int code;                          // 1 bad input, 2 usage
  std::vector<std::string> needles;  // each must appear in the error line (after expansion)
  std::string absent;                // an output path that must not exist afterwards
};

struct ScratchDir {
  fs::path path;
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

void PrintTo(const ErrorCase& c, std::ostream* os) {
  *os << c.name;
}

// Scratch files shared by every case: bad models, plans, suites and texts.
const fs::path& scratch() {
  static const ScratchDir dir{[] {
    const fs::path d = fs::temp_directory_path() / ("kvs_cli_errors_" + std::to_string(getpid()));
    fs::create_directories(d / "emptydir");
    fs::create_directories(d / "badcfg");
    fs::create_directories(d / "nonempty");
    auto put = [&](const fs::path& p, const std::string& s) {
      std::ofstream(d / p, std::ios::binary) << s;
    };
    put("empty.gguf", "");
    put("junk.gguf", std::string("JUNK") + std::string(4000, '\x5a'));
    put("badcfg/config.json", "{\"architectures\":");
    put("nonempty/keep.txt", "not a conversion");
    put("afile", "a regular file, so nothing can be created under it");
    put("text.txt", "hello world");
    put("long.txt", [] {
      std::string s;
      for (int i = 0; i < 200; ++i) s += "Once upon a time there was a little girl named Lily. ";
      return s;
    }());
    put("badplan.json", "{\"policy\":");
    put("unkplan.json", "{\"policy\": \"nosuch\"}");
    put("budgetplan.json", "{\"policy\": \"knorm\", \"budget\": -4}");
    put("badsuite.json", "{");
    put("notasksuite.json", "{\"name\": \"x\", \"text\": \"text.txt\"}");
    if (fs::exists(KVS_STORIES)) {
      // The first KiB of a real model: a valid header whose tensors lie past the end.
      std::ifstream in(KVS_STORIES, std::ios::binary);
      std::string head(1024, '\0');
      in.read(head.data(), static_cast<std::streamsize>(head.size()));
      put("trunc.gguf", head);
    }
    return d;
  }()};
  return dir.path;
}

std::string expand(const std::string& s) {
  std::string r = s;
  for (const auto& [key, value] :
       {std::pair<std::string, std::string>{"@D", scratch().string()}, {"@S", KVS_STORIES}}) {
    for (size_t p = r.find(key); p != std::string::npos; p = r.find(key, p + value.size()))
      r.replace(p, key.size(), value);
  }
  return r;
}

bool uses_stories(const ErrorCase& c) {
  for (const auto& a : c.args)
    if (a.find("@S") != std::string::npos || a.find("trunc.gguf") != std::string::npos) return true;
  return false;
}

using test::error_lines;

std::vector<ErrorCase> cases() {
  const std::string S = "@S", D = "@D";
  // A model error every model-taking command must report the same way.
  std::vector<ErrorCase> v = {
      // The command line itself.
      {"NoCommand", {}, 2, {"subcommand is required"}},
      {"UnknownCommand", {"nosuchcmd"}, 2, {"unknown command 'nosuchcmd'", "generate"}},
      {"UnknownGlobalOption", {"--bogus"}, 2, {"--bogus"}},
      {"UnknownOption",
       {"generate", "-m", S, "-p", "a", "--bogus"},
       2,
       {"--bogus", "kvsieve generate --help"}},
      {"MissingModelOption", {"generate", "-p", "a"}, 2, {"--model"}},
      {"WordForANumber", {"generate", "-m", S, "-p", "a", "-n", "x"}, 2, {"--n-predict", "x"}},
      {"MissingOptionValue", {"generate", "-m", S, "-p"}, 2, {"--prompt"}},

      // Models: files that do not exist or are not models.
      {"ModelMissing",
       {"generate", "-m", "/nonexistent/m.gguf", "-p", "a"},
       1,
       {"/nonexistent/m.gguf"}},
      {"ModelUnknownName", {"generate", "-m", "nosuchmodel", "-p", "a"}, 1, {"nosuchmodel"}},
      {"ModelEmpty",
       {"generate", "-m", D + "/empty.gguf", "-p", "a"},
       1,
       {D + "/empty.gguf", "0 bytes"}},
      {"ModelJunk",
       {"generate", "-m", D + "/junk.gguf", "-p", "a"},
       1,
       {D + "/junk.gguf", "not a GGUF file"}},
      {"ModelTruncated",
       {"generate", "-m", D + "/trunc.gguf", "-p", "a"},
       1,
       {D + "/trunc.gguf", "offset"}},
      {"ModelDirWithoutConfig",
       {"generate", "-m", D + "/emptydir", "-p", "a"},
       1,
       {"emptydir/config.json", "missing"}},
      {"ModelDirBadConfig",
       {"generate", "-m", D + "/badcfg", "-p", "a"},
       1,
       {"badcfg/config.json", "JSON"}},

      // generate: every option value out of range, before the model loads.
      {"GenerateThreads", {"generate", "-m", S, "-p", "a", "-t", "-3"}, 1, {"--threads", "-3"}},
      {"GenerateCtxNegative",
       {"generate", "-m", S, "-p", "a", "-c", "-5"},
       1,
       {"--ctx-size", "-5"}},
      {"GenerateCtxHuge",
       {"generate", "-m", S, "-p", "a", "-c", "100000000"},
       1,
       {"--ctx-size 100000000", "at most"}},
      {"GenerateBatch", {"generate", "-m", S, "-p", "a", "-b", "0"}, 1, {"--batch-size", "0"}},
      {"GenerateDevice",
       {"generate", "-m", S, "-p", "a", "--device", "gpu"},
       1,
       {"--device", "'gpu'"}},
      {"GenerateAttention",
       {"generate", "-m", S, "-p", "a", "--attention", "nosuch"},
       1,
       {"attention backend 'nosuch'", "reference"}},
      {"GenerateTemp", {"generate", "-m", S, "-p", "a", "--temp", "-1"}, 1, {"--temp", "-1"}},
      {"GenerateTempNan", {"generate", "-m", S, "-p", "a", "--temp", "nan"}, 1, {"--temp", "nan"}},
      {"GenerateTopK", {"generate", "-m", S, "-p", "a", "--top-k", "-1"}, 1, {"--top-k", "-1"}},
      {"GenerateTopPZero", {"generate", "-m", S, "-p", "a", "--top-p", "0"}, 1, {"--top-p", "0"}},
      {"GenerateTopPAboveOne",
       {"generate", "-m", S, "-p", "a", "--top-p", "1.5"},
       1,
       {"--top-p", "1.5"}},
      {"GenerateMinP", {"generate", "-m", S, "-p", "a", "--min-p", "2"}, 1, {"--min-p", "2"}},
      {"GenerateRepeatPenalty",
       {"generate", "-m", S, "-p", "a", "--repeat-penalty", "0"},
       1,
       {"--repeat-penalty", "0"}},
      {"GenerateRepeatLastN",
       {"generate", "-m", S, "-p", "a", "--repeat-last-n", "-2"},
       1,
       {"--repeat-last-n", "-2"}},
      {"GenerateNPredict", {"generate", "-m", S, "-p", "a", "-n", "-5"}, 1, {"--n-predict", "-5"}},
      {"GenerateEmptyStop", {"generate", "-m", S, "-p", "a", "--stop", ""}, 1, {"--stop"}},
      {"GeneratePromptFileMissing",
       {"generate", "-m", S, "-f", "/nonexistent/p.txt"},
       1,
       {"/nonexistent/p.txt"}},
      {"GeneratePromptTooLong",
       {"generate", "-m", S, "-f", D + "/long.txt", "-c", "16"},
       1,
       {"context holds 16", "--ctx-size"}},
      {"GenerateInvalidUtf8", {"generate", "-m", S, "-p", "bad \xff\xfe"}, 1, {"UTF-8"}},
      {"GenerateNoChatTemplate",
       {"generate", "-m", S, "-p", "a", "--chat"},
       1,
       {"no chat template", "--chat-template"}},
      {"GenerateUnknownChatTemplate",
       {"generate", "-m", S, "-p", "a", "--chat", "--chat-template", "nosuch"},
       1,
       {"--chat-template", "'nosuch'"}},
      {"GeneratePlanMissing",
       {"generate", "-m", S, "-p", "a", "--cache", "nosuchplan"},
       1,
       {"'nosuchplan'", "knorm-50"}},
      {"GeneratePlanBadJson",
       {"generate", "-m", S, "-p", "a", "--cache", D + "/badplan.json"},
       1,
       {D + "/badplan.json", "JSON"}},
      {"GeneratePlanUnknownPolicy",
       {"generate", "-m", S, "-p", "a", "--cache", D + "/unkplan.json"},
       1,
       {D + "/unkplan.json", "policy", "'nosuch'"}},
      {"GeneratePlanBadBudget",
       {"generate", "-m", S, "-p", "a", "--cache", D + "/budgetplan.json"},
       1,
       {D + "/budgetplan.json", "budget"}},
      {"GenerateNoPrompt", {"generate", "-m", S}, 2, {"-p TEXT"}},
      {"GenerateTwoPrompts",
       {"generate", "-m", S, "-p", "a", "-f", D + "/text.txt"},
       2,
       {"only one of"}},
      {"GenerateSystemWithoutChat",
       {"generate", "-m", S, "-p", "a", "--system", "s"},
       2,
       {"--system", "--chat"}},
      {"GenerateTemplateWithoutChat",
       {"generate", "-m", S, "-p", "a", "--chat-template", "chatml"},
       2,
       {"--chat-template", "--chat"}},

      // chat
      {"ChatModelMissing",
       {"chat", "-m", "/nonexistent/m.gguf", "-p", "a"},
       1,
       {"/nonexistent/m.gguf"}},
      {"ChatTemp", {"chat", "-m", S, "-p", "a", "--temp", "-1"}, 1, {"--temp", "-1"}},
      {"ChatNPredict", {"chat", "-m", S, "-p", "a", "-n", "-5"}, 1, {"--n-predict", "-5"}},
      {"ChatNoTemplate", {"chat", "-m", S, "-p", "a"}, 1, {"no chat template"}},
      {"ChatUnknownTemplate",
       {"chat", "-m", S, "-p", "a", "--chat-template", "nosuch"},
       1,
       {"'nosuch'"}},

      // bench
      {"BenchModelTruncated", {"bench", "-m", D + "/trunc.gguf"}, 1, {D + "/trunc.gguf"}},
      {"BenchPrompt", {"bench", "-m", S, "-p", "-5"}, 1, {"-p", "-5"}},
      {"BenchGen", {"bench", "-m", S, "-n", "-1"}, 1, {"-n", "-1"}},
      {"BenchDepth", {"bench", "-m", S, "-d", "-1"}, 1, {"-d", "-1"}},
      {"BenchReps", {"bench", "-m", S, "-r", "0"}, 1, {"-r", "0"}},
      {"BenchThreads", {"bench", "-m", S, "-t", "-1"}, 1, {"--threads", "-1"}},
      {"BenchPlanMissing",
       {"bench", "-m", S, "--cache", "nosuchplan", "-r", "1"},
       1,
       {"'nosuchplan'"}},
      {"BenchNothingToRun", {"bench", "-m", S, "-p", "0", "-n", "0"}, 2, {"nothing to run"}},
      {"BenchCtxSize", {"bench", "-m", S, "-c", "4096"}, 2, {"-d", "--ctx-size"}},

      // perplexity
      {"PerplexityModelJunk",
       {"perplexity", "-m", D + "/junk.gguf", "-f", D + "/long.txt"},
       1,
       {D + "/junk.gguf"}},
      {"PerplexityTextMissing",
       {"perplexity", "-m", S, "-f", "/nonexistent/t.txt"},
       1,
       {"/nonexistent/t.txt"}},
      {"PerplexityTextTooShort",
       {"perplexity", "-m", S, "-f", D + "/empty.gguf"},
       1,
       {"at least 2 tokens"}},
      {"PerplexityMaxTokens",
       {"perplexity", "-m", S, "-f", D + "/long.txt", "--max-tokens", "-1"},
       1,
       {"--max-tokens", "-1"}},
      {"PerplexityCtx",
       {"perplexity", "-m", S, "-f", D + "/long.txt", "-c", "-1"},
       1,
       {"--ctx-size", "-1"}},
      {"PerplexityNoFile", {"perplexity", "-m", S}, 2, {"--file"}},

      // compare
      {"CompareModelMissing",
       {"compare", "-m", "/nonexistent/m.gguf", "--suite", "quick", "--plans", "knorm-50", "--text",
        D + "/long.txt", "--out", D + "/cmp"},
       1,
       {"/nonexistent/m.gguf"},
       D + "/cmp"},
      {"CompareSuiteMissing",
       {"compare", "-m", S, "--suite", "nosuchsuite", "--plans", "knorm-50", "--out", D + "/cmp"},
       1,
       {"'nosuchsuite'", "quick"},
       D + "/cmp"},
      {"CompareSuiteBadJson",
       {"compare", "-m", S, "--suite", D + "/badsuite.json", "--plans", "knorm-50", "--out",
        D + "/cmp"},
       1,
       {D + "/badsuite.json", "JSON"},
       D + "/cmp"},
      {"CompareSuiteNoTasks",
       {"compare", "-m", S, "--suite", D + "/notasksuite.json", "--plans", "knorm-50", "--out",
        D + "/cmp"},
       1,
       {D + "/notasksuite.json", "tasks"},
       D + "/cmp"},
      {"ComparePlanMissing",
       {"compare", "-m", S, "--suite", "quick", "--plans", "nosuchplan", "--out", D + "/cmp"},
       1,
       {"'nosuchplan'"},
       D + "/cmp"},
      {"CompareBudgetZero",
       {"compare", "-m", S, "--suite", "quick", "--plans", "knorm-50", "--budgets", "0", "--out",
        D + "/cmp"},
       1,
       {"--budgets", "0"},
       D + "/cmp"},
      {"CompareBudgetAboveOne",
       {"compare", "-m", S, "--suite", "quick", "--plans", "knorm-50", "--budgets", "1.5", "--out",
        D + "/cmp"},
       1,
       {"--budgets", "1.5"},
       D + "/cmp"},
      {"CompareTextMissing",
       {"compare", "-m", S, "--suite", "quick", "--plans", "knorm-50", "--text",
        "/nonexistent/t.txt", "--out", D + "/cmp"},
       1,
       {"/nonexistent/t.txt"},
       D + "/cmp"},
      {"CompareOutUncreatable",
       {"compare", "-m", S, "--suite", "quick", "--plans", "knorm-50", "--text", D + "/long.txt",
        "--out", D + "/afile/cmp"},
       1,
       {D + "/afile/cmp", "--out"}},
      {"CompareNoOut",
       {"compare", "-m", S, "--suite", "quick", "--plans", "knorm-50"},
       2,
       {"--out"}},

      // profile-heads
      {"ProfileMethod",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--method", "bogus"},
       1,
       {"--method", "'bogus'"},
       D + "/p.tsv"},
      {"ProfileSamples",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--samples", "0"},
       1,
       {"--samples", "0"},
       D + "/p.tsv"},
      {"ProfileSegment",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--segment", "0"},
       1,
       {"--segment", "0"},
       D + "/p.tsv"},
      {"ProfileLength",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--method", "retrieval", "--length", "0"},
       1,
       {"--length", "0"},
       D + "/p.tsv"},
      {"ProfileRepeats",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--repeats", "1"},
       1,
       {"--repeats", "1"},
       D + "/p.tsv"},
      {"ProfileTop",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--top", "-1"},
       1,
       {"--top", "-1"},
       D + "/p.tsv"},
      {"ProfileFraction",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--fraction", "1.5"},
       1,
       {"--fraction", "1.5"},
       D + "/p.tsv"},
      {"ProfileThreshold",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--threshold", "-1"},
       1,
       {"--threshold", "-1"},
       D + "/p.tsv"},
      {"ProfileNormalize",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--normalize", "x"},
       1,
       {"--normalize", "'x'"},
       D + "/p.tsv"},
      {"ProfileTextMissing",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--method", "retrieval", "--text",
        "/nonexistent/hay.txt"},
       1,
       {"/nonexistent/hay.txt"},
       D + "/p.tsv"},
      {"ProfileDoesNotFit",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "-c", "64", "--segment", "32"},
       1,
       {"does not fit"},
       D + "/p.tsv"},
      {"ProfileOutUncreatable",
       {"profile-heads", "-m", S, "-o", D + "/afile/p.tsv", "--method", "random"},
       1,
       {D + "/afile"}},
      {"ProfileFractionAndThreshold",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--fraction", "0.2", "--threshold", "0.5"},
       2,
       {"--fraction", "--threshold"},
       D + "/p.tsv"},
      {"ProfileWithPlan",
       {"profile-heads", "-m", S, "-o", D + "/p.tsv", "--cache", "full"},
       2,
       {"--cache"},
       D + "/p.tsv"},
      {"ProfileNoOutput", {"profile-heads", "-m", S}, 2, {"--output"}},

      // calibrate-qfilter
      {"CalibrateTextMissing",
       {"calibrate-qfilter", "-m", S, "-f", "/nonexistent/t.txt", "-o", D + "/q.json"},
       1,
       {"/nonexistent/t.txt"},
       D + "/q.json"},
      {"CalibrateSamples",
       {"calibrate-qfilter", "-m", S, "-f", D + "/long.txt", "-o", D + "/q.json", "--samples", "0"},
       1,
       {"--samples", "0"},
       D + "/q.json"},
      {"CalibrateSeqLen",
       {"calibrate-qfilter", "-m", S, "-f", D + "/long.txt", "-o", D + "/q.json", "--seq-len", "1"},
       1,
       {"--seq-len", "1"},
       D + "/q.json"},
      {"CalibrateTextTooShort",
       {"calibrate-qfilter", "-m", S, "-f", D + "/text.txt", "-o", D + "/q.json"},
       1,
       {D + "/text.txt", "--seq-len"},
       D + "/q.json"},
      {"CalibrateOutUncreatable",
       {"calibrate-qfilter", "-m", S, "-f", D + "/long.txt", "-o", D + "/afile/q.json", "--samples",
        "1", "--seq-len", "16"},
       1,
       {D + "/afile"}},
      {"CalibrateWithPlan",
       {"calibrate-qfilter", "-m", S, "-f", D + "/long.txt", "-o", D + "/q.json", "--cache",
        "full"},
       2,
       {"--cache"},
       D + "/q.json"},
      {"CalibrateNoOutput", {"calibrate-qfilter", "-m", S, "-f", D + "/long.txt"}, 2, {"--output"}},

      // convert
      {"ConvertInputMissing",
       {"convert", "/nonexistent/m.gguf", D + "/hf"},
       1,
       {"/nonexistent/m.gguf"},
       D + "/hf"},
      {"ConvertInputJunk",
       {"convert", D + "/junk.gguf", D + "/hf"},
       1,
       {D + "/junk.gguf"},
       D + "/hf"},
      {"ConvertDtype",
       {"convert", S, D + "/hf", "--dtype", "q4_0"},
       1,
       {"--dtype", "'q4_0'"},
       D + "/hf"},
      {"ConvertOutUncreatable", {"convert", S, D + "/afile/hf"}, 1, {D + "/afile/hf"}},
      {"ConvertNonEmptyOut", {"convert", S, D + "/nonempty"}, 1, {D + "/nonempty", "--force"}},
      {"ConvertNoArgs", {"convert"}, 2, {"required"}},

      // quantize
      {"QuantizeInputMissing",
       {"quantize", "/nonexistent/m.gguf", D + "/q.gguf", "--type", "F16"},
       1,
       {"/nonexistent/m.gguf"},
       D + "/q.gguf"},
      {"QuantizeType",
       {"quantize", S, D + "/q.gguf", "--type", "Q9_9"},
       1,
       {"--type", "Q9_9"},
       D + "/q.gguf"},
      {"QuantizeUnsupportedType",
       {"quantize", S, D + "/q.gguf", "--type", "Q4_K"},
       1,
       {"cannot quantize to Q4_K"},
       D + "/q.gguf"},
      {"QuantizeOutUncreatable",
       {"quantize", S, D + "/afile/q.gguf", "--type", "F16"},
       1,
       {D + "/afile/q.gguf"}},
      {"QuantizeNoType", {"quantize", S, D + "/q.gguf"}, 2, {"--type"}, D + "/q.gguf"},

      // inspect, tokenize, models, pull
      {"InspectMissing", {"inspect", "/nonexistent/m.gguf"}, 1, {"/nonexistent/m.gguf"}},
      {"InspectTruncated", {"inspect", D + "/trunc.gguf"}, 1, {D + "/trunc.gguf"}},
      {"InspectBadConfig", {"inspect", D + "/badcfg"}, 1, {"badcfg/config.json"}},
      {"InspectNoPath", {"inspect"}, 2, {"required"}},
      {"TokenizeModelJunk", {"tokenize", "-m", D + "/junk.gguf", "-p", "a"}, 1, {D + "/junk.gguf"}},
      {"TokenizeInvalidUtf8", {"tokenize", "-m", S, "-p", "\xff"}, 1, {"UTF-8"}},
      {"TokenizeFileMissing",
       {"tokenize", "-m", S, "-f", "/nonexistent/t.txt"},
       1,
       {"/nonexistent/t.txt"}},
      {"TokenizeNoText", {"tokenize", "-m", S}, 2, {"-p TEXT"}},
      {"TokenizeTwoTexts", {"tokenize", "-m", S, "-p", "a", "--stdin"}, 2, {"exactly one"}},
      {"ModelsUnknownOption", {"models", "--bogus"}, 2, {"--bogus"}},
      {"PullUnknownName", {"pull", "nosuchmodel"}, 1, {"'nosuchmodel'", "smollm2"}},
      {"PullNoName", {"pull"}, 2, {"name"}},
  };
  return v;
}

class CliErrors : public testing::TestWithParam<ErrorCase> {};

TEST_P(CliErrors, ExitCodeAndOneLineNamingTheCulprit) {
  const ErrorCase& c = GetParam();
  if (uses_stories(c)) {
    KVS_REQUIRE_FILE(KVS_STORIES);
  }
  std::vector<std::string> args;
  for (const auto& a : c.args) args.push_back(expand(a));
  const std::string absent = c.absent.empty() ? "" : expand(c.absent);
  if (!absent.empty()) fs::remove_all(absent);

  const auto r = run_cli(args);
  EXPECT_EQ(r.code, c.code) << r.err;
  const std::vector<std::string> lines = error_lines(r.err);
  ASSERT_EQ(lines.size(), 1u) << "stderr:\n" << r.err;
  const std::string& line = lines[0];
  EXPECT_EQ(line.rfind(c.code == 2 ? "kvsieve: usage error: " : "kvsieve: error: ", 0), 0u) << line;
  for (const auto& n : c.needles)
    EXPECT_NE(line.find(expand(n)), std::string::npos) << "'" << expand(n) << "' not in: " << line;
  EXPECT_TRUE(r.out.empty()) << "stdout: " << r.out;
  if (!absent.empty()) {
    EXPECT_FALSE(fs::exists(absent)) << absent << " was written";
  }
}

INSTANTIATE_TEST_SUITE_P(Sweep, CliErrors, testing::ValuesIn(cases()),
                         [](const testing::TestParamInfo<ErrorCase>& i) { return i.param.name; });

// The KV cache is sized before allocation against the memory limit (physical memory, a cgroup
// limit, or KVSIEVE_MEMORY_LIMIT): too large a context is refused with the figures and a way
// out; a bounded cache plan fits.
TEST(CliMemory, KvCacheOverTheLimitIsRefusedBeforeAllocation) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::ScopedEnv env("KVSIEVE_MEMORY_LIMIT", "1000000");  // 1 MB; 2048 tokens need 2.5 MiB
  auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "-c", "2048"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(
      r.err.find("the KV cache for a context of 2048 tokens needs 2.5 MiB, more than 80% of "
                 "KVSIEVE_MEMORY_LIMIT (976.6 KiB); use a smaller --ctx-size or a cache plan"),
      std::string::npos)
      << r.err;
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "-c", "256"});
  EXPECT_EQ(r.code, 0) << r.err;
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "-c", "2048", "--cache",
               "streaming-256-sinks4"});
  EXPECT_EQ(r.code, 0) << r.err;
}

TEST(CliMemory, BadMemoryLimitIsNamed) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::ScopedEnv env("KVSIEVE_MEMORY_LIMIT", "lots");
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("KVSIEVE_MEMORY_LIMIT: expected a positive number of bytes, got 'lots'"),
            std::string::npos)
      << r.err;
}

}  // namespace
}  // namespace kvs

namespace kvs {
namespace {

// KVSIEVE_DUMP_TENSORS (the op-by-op comparison with llama.cpp): every intermediate lands in
// one file per name and layer, rows of floats; a directory that cannot be made is named.
TEST(CliDump, TensorDumpWritesEveryLayerAndNamesABadDirectory) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const fs::path dir = scratch() / "dump";
  fs::remove_all(dir);
  {
    test::ScopedEnv env("KVSIEVE_DUMP_TENSORS", dir.string());
    const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "1",
                            "--temp", "0", "-t", "1"});
    ASSERT_EQ(r.code, 0) << r.err;
  }
  // stories260K: 5 layers, n_embd 64; "Once upon a time" is 5 tokens with BOS; one prefill.
  for (int il = 0; il < 5; ++il)
    for (const char* name : {"attn_norm", "kqv_out", "ffn_out", "l_out"})
      EXPECT_EQ(fs::file_size(dir / (std::string(name) + "-" + std::to_string(il) + ".f32")),
                5u * 64u * 4u)
          << name << " " << il;
  EXPECT_EQ(fs::file_size(dir / "result_output.f32"), 512u * 4u);  // the last row's logits
  test::ScopedEnv env("KVSIEVE_DUMP_TENSORS", (scratch() / "afile" / "dump").string());
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("KVSIEVE_DUMP_TENSORS"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
