// `kvsieve tokenize`: output formats and exit codes.
#include <gtest/gtest.h>

#include "tests/support/cli.h"
#include "tests/support/paths.h"

namespace kvs {
namespace {

using test::run_cli;

TEST(TokenizeCli, IdsOnStories260K) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"tokenize", "-m", KVS_STORIES, "-p", "Once upon a time", "--ids"});
  EXPECT_EQ(r.code, 0) << r.err;
  // llama-tokenize --ids format; ids as SentencePiece gives them with tok512.model.
  EXPECT_EQ(r.out, "[1, 403, 407, 261, 378]\n");
  const auto nobos =
      run_cli({"tokenize", "-m", KVS_STORIES, "-p", "Once upon a time", "--ids", "--no-bos"});
  EXPECT_EQ(nobos.out, "[403, 407, 261, 378]\n");
}

TEST(TokenizeCli, OnePiecePerLine) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"tokenize", "-m", KVS_STORIES, "--stdin"}, "Once upon");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 16), "     1 -> '<s>'\n");
  EXPECT_NE(r.out.find(" -> ' Once'\n"), std::string::npos) << r.out;
}

TEST(TokenizeCli, MissingModelExitsOneNamingPath) {
  const std::string path = "/nonexistent/dir/model.gguf";
  const auto r = run_cli({"tokenize", "-m", path, "-p", "hi"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
}

TEST(TokenizeCli, InvalidUtf8PromptExitsOne) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r = run_cli({"tokenize", "-m", KVS_STORIES, "-p", "bad \xFF byte"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("UTF-8"), std::string::npos) << r.err;
}

TEST(TokenizeCli, TextSourceIsRequiredAndUnique) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  EXPECT_EQ(run_cli({"tokenize", "-m", KVS_STORIES}).code, 2);
  EXPECT_EQ(run_cli({"tokenize", "-m", KVS_STORIES, "-p", "a", "--stdin"}).code, 2);
}

}  // namespace
}  // namespace kvs
