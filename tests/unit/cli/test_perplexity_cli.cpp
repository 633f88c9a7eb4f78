#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/cli.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using test::run_cli;

TEST(PerplexityCli, ChunkedAndStreamedPastTheContext) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const std::string text = test::shared_data("text/tinyshakespeare.txt");
  KVS_REQUIRE_FILE(text);
  auto r = run_cli(
      {"perplexity", "-m", KVS_STORIES, "-f", text, "--max-tokens", "1200", "-c", "256", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["n_chunks"], 4);
  EXPECT_EQ(j["n_scored"], 4 * 128);  // predictions of the second half of each 256-token chunk
  const double chunked = j["perplexity"];
  EXPECT_GT(chunked, 1.0);
  EXPECT_LT(chunked, 512.0);  // better than uniform over the vocabulary

  // A bounded streaming cache with cache positions runs 1200 tokens through a 256 context.
  test::TempDir dir;
  dir.write(
      "plan.json",
      R"({"policy": "streaming", "params": {"sinks": 4}, "budget": 96, "compress": "chunk", "positions": "cache"})");
  r = run_cli({"perplexity", "-m", KVS_STORIES, "-f", text, "--max-tokens", "1200", "-c", "256",
               "-b", "32", "--cache", dir / "plan.json", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["streamed"].get<bool>());
  EXPECT_EQ(j["n_scored"], 1199);
  EXPECT_TRUE(std::isfinite(j["perplexity"].get<double>()));
  EXPECT_LT(j["kv_bytes_in_use"].get<double>(), j["kv_bytes_full"].get<double>());
}

TEST(PerplexityCli, BadInputs) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r = run_cli({"perplexity", "-m", KVS_STORIES, "-f", "/nonexistent/text.txt"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/text.txt"), std::string::npos) << r.err;
  test::TempDir dir;
  dir.write("empty.txt", "");
  r = run_cli({"perplexity", "-m", KVS_STORIES, "-f", dir / "empty.txt", "-c", "256"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("at least 2 tokens"), std::string::npos) << r.err;
  EXPECT_EQ(run_cli({"perplexity", "-m", KVS_STORIES}).code, 2);  // no -f
}

}  // namespace
}  // namespace kvs
