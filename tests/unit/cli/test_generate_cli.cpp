// generate / chat on the command line: product on stdout, one-line errors with exit 1,
// usage errors with exit 2.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>

#include "models/formats/gguf_reader.h"
#include "models/formats/gguf_writer.h"
#include "support/cli.h"
#include "support/paths.h"

namespace kvs {
namespace {

using test::run_cli;

const std::string kWant =
    ", there was a little girl named Lily. She loved to play outside in the park. One day, she saw "
    "a big, red ball.";

int count_lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// A copy of stories260K with metadata edited and tensors dropped, in a temp dir.
std::string mutated_stories(const std::string& name,
                            const std::function<void(GgufWriter&)>& extra_meta,
                            const std::string& skip_key, const std::string& skip_tensor) {
  auto src = open_gguf(KVS_STORIES);
  GgufWriter w;
  for (const auto& [k, v] : src->metadata().entries())
    if (k != skip_key && k != "general.alignment") w.add(k, v);
  extra_meta(w);
  for (const auto& t : src->tensors()) {
    if (t.name == skip_tensor) continue;
    w.add_tensor(t.name, t.dtype, std::vector<int64_t>(t.ne.begin(), t.ne.begin() + t.n_dims),
                 t.data, t.nbytes);
  }
  const std::string path = std::filesystem::temp_directory_path() / ("kvs_" + name + ".gguf");
  w.write(path);
  return path;
}

TEST(GenerateCli, StoriesGreedyOnStdoutOnly) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "40",
                          "--temp", "0", "-t", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, kWant.size()), kWant);
  EXPECT_EQ(r.out.find("[I]"), std::string::npos) << "logs leaked to stdout";
  EXPECT_NE(r.err.find("loaded"), std::string::npos);
}

TEST(GenerateCli, JsonHasTextCountsSpeedsAndKvBytes) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "12",
                          "--temp", "0", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count_lines(r.out), 1);
  for (const char* key :
       {"\"text\"", "\"n_prompt\":5", "\"n_generated\":12", "\"prefill_tokens_per_s\"",
        "\"decode_tokens_per_s\"", "\"kv_bytes_in_use\"", "\"kv_bytes_full\""})
    EXPECT_NE(r.out.find(key), std::string::npos) << key << " in " << r.out;
}

TEST(GenerateCli, StopStringEndsGeneration) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "60",
                          "--temp", "0", "--stop", "Lily"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, ", there was a little girl named \n");
}

TEST(GenerateCli, PromptLongerThanContextIsAnError) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "Once upon a time ";
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", prompt, "-c", "32"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("context holds 32"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err) - count_lines(r.err.substr(0, r.err.find("kvsieve: error"))), 1);
  EXPECT_EQ(r.out, "");
}

TEST(GenerateCli, InvalidSamplingValuesNameTheOption) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--temp", "-1"}, "--temp"},   {{"--top-p", "1.5"}, "--top-p"},
      {{"--top-p", "0"}, "--top-p"},  {{"--min-p", "2"}, "--min-p"},
      {{"--top-k", "-3"}, "--top-k"}, {{"--repeat-penalty", "0"}, "--repeat-penalty"},
  };
  for (const auto& [args, name] : cases) {
    std::vector<std::string> cmd = {"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "4"};
    cmd.insert(cmd.end(), args.begin(), args.end());
    const auto r = run_cli(cmd);
    EXPECT_EQ(r.code, 1) << name;
    EXPECT_NE(r.err.find(name), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "") << name;
  }
}

// --device: an unknown name is bad input (exit 1); cuda with a cache plan is refused in one line
// on any machine (no device here, or plans not running on the device there).
TEST(GenerateCli, DeviceErrorsNameTheOption) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "4", "--device", "gpu"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--device must be cpu, cuda or auto, got 'gpu'"), std::string::npos)
      << r.err;
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "4", "--device", "cuda",
               "--cache", "knorm-50"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--device cuda"), std::string::npos) << r.err;
  EXPECT_EQ(count_lines(r.err.substr(r.err.find("kvsieve: error"))), 1) << r.err;
  EXPECT_EQ(r.out, "");
  // auto (the default) and cpu generate the golden text wherever they run.
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "30", "--temp", "0",
               "--device", "cpu"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.rfind(kWant.substr(0, 40), 0), 0u) << r.out;
}

TEST(GenerateCli, UnknownChatTemplateAndMissingTemplate) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r =
      run_cli({"generate", "-m", KVS_STORIES, "-p", "hi", "--chat", "--chat-template", "vicuna"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("vicuna"), std::string::npos) << r.err;
  // stories260K has no chat template at all.
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", "hi", "--chat"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--chat-template"), std::string::npos) << r.err;
  // A template that is not one of the built-in families.
  const std::string odd = mutated_stories(
      "oddtmpl",
      [](GgufWriter& w) {
        w.add_string("tokenizer.chat_template",
                     "{% for m in messages %}### {{ m['content'] }}{% endfor %}");
      },
      "", "");
  r = run_cli({"generate", "-m", odd, "-p", "hi", "--chat"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("built-in"), std::string::npos) << r.err;
}

TEST(GenerateCli, InconsistentHyperParametersAndMissingTensors) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const std::string heads = mutated_stories(
      "heads7", [](GgufWriter& w) { w.add_u32("llama.attention.head_count", 7); },
      "llama.attention.head_count", "");
  auto r = run_cli({"generate", "-m", heads, "-p", "Once", "-n", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("llama.attention.head_count"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(heads), std::string::npos) << r.err;

  const std::string kv = mutated_stories(
      "kv3", [](GgufWriter& w) { w.add_u32("llama.attention.head_count_kv", 3); },
      "llama.attention.head_count_kv", "");
  r = run_cli({"generate", "-m", kv, "-p", "Once", "-n", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("head_count_kv"), std::string::npos) << r.err;

  const std::string missing = mutated_stories(
      "missing", [](GgufWriter&) {}, "", "blk.3.ffn_up.weight");
  r = run_cli({"generate", "-m", missing, "-p", "Once", "-n", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("blk.3.ffn_up.weight"), std::string::npos) << r.err;

  const std::string arch = mutated_stories(
      "arch", [](GgufWriter& w) { w.add_string("general.architecture", "mamba"); },
      "general.architecture", "");
  r = run_cli({"generate", "-m", arch, "-p", "Once", "-n", "2"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unsupported architecture 'mamba'"), std::string::npos) << r.err;
  for (const auto& p : {heads, kv, missing, arch}) std::filesystem::remove(p);
}

TEST(GenerateCli, UsageErrorsExitTwo) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  EXPECT_EQ(run_cli({"generate", "-m", KVS_STORIES}).code, 2);  // no prompt
  EXPECT_EQ(run_cli({"generate", "-m", KVS_STORIES, "-p", "a", "-f", "b"}).code, 2);
  EXPECT_EQ(run_cli({"generate", "-p", "a"}).code, 2);  // no model
  EXPECT_EQ(run_cli({"generate", "-m", KVS_STORIES, "-p", "a", "-n", "x"}).code, 2);
  EXPECT_EQ(run_cli({"nosuchcommand"}).code, 2);
}

TEST(GenerateCli, MissingModelAndInvalidUtf8) {
  auto r = run_cli({"generate", "-m", "/nonexistent/model.gguf", "-p", "hi"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  KVS_REQUIRE_FILE(KVS_STORIES);
  r = run_cli({"generate", "-m", KVS_STORIES, "-p", std::string("bad \xff\xfe utf8")});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;
}

TEST(ChatCli, OneShotAnswerEndsAtEndOfTurn) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const auto r = run_cli(
      {"chat", "-m", KVS_SMOLLM2, "-p", "What is 2+2?", "--temp", "0", "-n", "48", "-t", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find("<|im_end|>"), std::string::npos);
  EXPECT_EQ(r.out.find("<|im_start|>"), std::string::npos);
  EXPECT_FALSE(r.out.empty());
}

TEST(ChatCli, MultiTurnOnStdin) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const auto r = run_cli({"chat", "-m", KVS_SMOLLM2, "--temp", "0", "-n", "24", "-t", "1"},
                         "Hello!\nWhat did I just say?\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(count_lines(r.out), 2) << r.out;  // one answer line per turn
}

}  // namespace
}  // namespace kvs
