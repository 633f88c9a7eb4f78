#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/cli.h"
#include "support/paths.h"

namespace kvs {
namespace {

using test::run_cli;

TEST(BenchCli, JsonListsEveryTestWithMeanAndSpread) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r = run_cli({"bench", "-m", KVS_STORIES, "-p", "32", "-n", "8", "-d", "0,64", "-r", "3",
                    "-t", "1", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  const char* names[] = {"pp32", "tg8", "pp32@d64", "tg8@d64"};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(j[i]["test"], names[i]);
    EXPECT_EQ(j[i]["threads"], 1);
    EXPECT_EQ(j[i]["reps"], 3);
    EXPECT_EQ(j[i]["samples"].size(), 3u);
    EXPECT_GT(j[i]["tokens_per_s"].get<double>(), 0.0);
    EXPECT_GE(j[i]["stddev"].get<double>(), 0.0);
    EXPECT_EQ(j[i]["cache"], "full");
  }
  // The full cache after a tg test at depth 64 holds depth + 8 tokens (truncated back each
  // repetition): exactly what a full cache of 72 tokens takes.
  EXPECT_EQ(j[3]["kv_bytes_in_use"], j[3]["kv_bytes_full"]);
  EXPECT_EQ(j[3]["manager_seconds"].get<double>(), 0.0);
}

TEST(BenchCli, CachePlanShrinksTheCacheAndReportsManagerTime) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r = run_cli({"bench", "-m", KVS_STORIES, "-p", "0", "-n", "4", "-d", "200", "-r", "2", "-t",
                    "1", "--cache", "knorm-50", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["test"], "tg4@d200");
  EXPECT_EQ(j[0]["cache"], "knorm-50");
  // 100 of 200 prompt tokens kept, then 2 x 4 decoded: well under the 208-token full cache.
  EXPECT_LT(j[0]["kv_bytes_in_use"].get<double>(), 0.6 * j[0]["kv_bytes_full"].get<double>());
}

TEST(BenchCli, TableAndBadOptions) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  auto r = run_cli({"bench", "-m", KVS_STORIES, "-p", "16", "-n", "0", "-r", "1", "-t", "1"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp16 |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("tg"), std::string::npos) << r.out;
  r = run_cli({"bench", "-m", KVS_STORIES, "-r", "0"});
  EXPECT_EQ(r.code, 1);  // a value out of range is bad input
  EXPECT_NE(r.err.find("-r"), std::string::npos) << r.err;
  r = run_cli({"bench", "-m", KVS_STORIES, "-p", "0", "-n", "0"});
  EXPECT_EQ(r.code, 2);
  r = run_cli({"bench", "-m", KVS_STORIES, "-d", "-5"});
  EXPECT_EQ(r.code, 1);
  r = run_cli({"bench", "-m", KVS_STORIES, "-c", "4096"});
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("-d"), std::string::npos) << r.err;
  r = run_cli({"bench", "-m", "/nonexistent/model.gguf"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/model.gguf"), std::string::npos) << r.err;
  r = run_cli({"bench", "-m", KVS_STORIES, "--cache", "no-such-plan", "-r", "1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no-such-plan"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
