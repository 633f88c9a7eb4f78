// `kvsieve profile-heads` on stories260K (5 layers x 4 KV heads): the TSV it writes has the
// model's shape and loads into a plan, the JSON carries the raw scores and parameters, and
// bad usage / bad input exit 2 / 1 with one clear line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "support/cli.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using json = nlohmann::json;
using test::run_cli;

// Rows of tab-separated numbers.
std::vector<std::vector<double>> read_tsv(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::vector<double>> rows;
  std::string line;
  while (std::getline(f, line)) {
    std::vector<double> row;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, '\t')) row.push_back(std::stod(cell));
    rows.push_back(row);
  }
  return rows;
}

void expect_profile_shape(const std::string& path, size_t n_layer, size_t n_kv) {
  const auto rows = read_tsv(path);
  ASSERT_EQ(rows.size(), n_layer) << path;
  for (const auto& r : rows) {
    ASSERT_EQ(r.size(), n_kv) << path;
    for (double v : r) {
      EXPECT_GE(v, 0.0);
      EXPECT_LE(v, 1.0);
    }
  }
}

json read_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f, nullptr, false);
}

TEST(ProfileHeadsCli, RazorWritesTheModelsShapeAndRawScores) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_heads");
  const auto r = run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "razor", "--samples", "2",
                          "--segment", "48", "-t", "1", "-o", dir / "p.tsv", "--json",
                          dir / "raw.json", "--seed", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_profile_shape(dir / "p.tsv", 5, 4);
  EXPECT_NE(r.out.find("rank"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("5 retrieval heads by fraction"), std::string::npos) << r.out;  // 20 / 4
  const json j = read_json(dir / "raw.json");
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["method"], "razor");
  EXPECT_TRUE(j["kvsieve_version"].is_string());
  EXPECT_EQ(j["model"]["path"], KVS_STORIES);
  EXPECT_EQ(j["params"]["samples"], 2);
  EXPECT_EQ(j["params"]["segment"], 48);
  EXPECT_EQ(j["params"]["repeats"], 4);
  EXPECT_EQ(j["params"]["seed"], 3);
  ASSERT_EQ(j["per_query_head"]["echo"].size(), 5u);
  EXPECT_EQ(j["per_query_head"]["induction"][0].size(), 8u);  // query heads
  EXPECT_EQ(j["per_kv_head"]["echo"][0].size(), 4u);
  EXPECT_EQ(j["retrieval_heads"]["heads"].size(), 5u);
  // Scores are attention masses (stories260K is too small for strong induction heads).
  double best = 0.0;
  for (const auto& row : j["per_kv_head"]["induction"])
    for (const auto& v : row) best = std::max(best, v.get<double>());
  for (const auto& row : j["per_kv_head"]["echo"])
    for (const auto& v : row) best = std::max(best, v.get<double>());
  EXPECT_GT(best, 0.0);
  EXPECT_LE(best, 1.0);

  // The profile drives a duo plan on the same model.
  dir.write("plan.json", R"({"policy": "duo", "params": {"sinks": 4}, "budget": 24, "recent": 8,
      "head_profile": ")" + (dir / "p.tsv") +
                             R"(", "retrieval": {"fraction": 0.25}})");
  const auto g = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "4",
                          "--temp", "0", "-t", "1", "--cache", dir / "plan.json"});
  EXPECT_EQ(g.code, 0) << g.err;
}

TEST(ProfileHeadsCli, RandomIsDeterministicPerSeedAndRetrievalRuns) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_heads");
  for (const char* name : {"a.tsv", "b.tsv"})
    ASSERT_EQ(run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "random", "--seed", "9",
                       "-o", dir / name})
                  .code,
              0);
  ASSERT_EQ(
      run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "random", "-o", dir / "c.tsv"}).code,
      0);
  expect_profile_shape(dir / "a.tsv", 5, 4);
  EXPECT_EQ(read_tsv(dir / "a.tsv"), read_tsv(dir / "b.tsv"));
  EXPECT_NE(read_tsv(dir / "a.tsv"), read_tsv(dir / "c.tsv"));

  const std::string text = test::shared_data("text/botchan.txt");
  KVS_REQUIRE_FILE(text);
  const auto r = run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "retrieval", "--samples",
                          "2", "--length", "256", "-t", "1", "--text", text, "-o", dir / "r.tsv",
                          "--json", dir / "r.json", "--threshold", "0.5"});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_profile_shape(dir / "r.tsv", 5, 4);
  const json j = read_json(dir / "r.json");
  EXPECT_EQ(j["method"], "retrieval");
  EXPECT_EQ(j["params"]["length"], 256);
  EXPECT_EQ(j["params"]["prompts"].size(), 2u);
  EXPECT_EQ(j["retrieval_heads"]["threshold"], 0.5);
  EXPECT_EQ(j["per_query_head"]["needle_value_mass"].size(), 5u);
}

TEST(ProfileHeadsCli, PlotIsWrittenOrExplained) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_heads");
  const auto r = run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "random", "-o",
                          dir / "p.tsv", "--plot", dir / "img/heads.png"});
  ASSERT_EQ(r.code, 0) << r.err;
  expect_profile_shape(dir / "p.tsv", 5, 4);
  if (std::filesystem::exists(dir / "img/heads.png")) {
    std::ifstream f(dir / "img/heads.png", std::ios::binary);
    char sig[8] = {};
    f.read(sig, 8);
    EXPECT_EQ(std::string(sig + 1, 3), "PNG");
  } else {
    EXPECT_NE(r.err.find("no plot"), std::string::npos) << r.err;
  }
}

TEST(ProfileHeadsCli, UsageErrorsExit2BadValuesExit1) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_heads");
  auto r = run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "bogus", "-o", dir / "p.tsv"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
  EXPECT_EQ(run_cli({"profile-heads", "-m", KVS_STORIES}).code, 2);  // no -o
  EXPECT_EQ(run_cli({"profile-heads", "-m", KVS_STORIES, "-o", dir / "p.tsv", "--fraction", "0.2",
                     "--threshold", "0.5"})
                .code,
            2);
  EXPECT_EQ(
      run_cli({"profile-heads", "-m", KVS_STORIES, "-o", dir / "p.tsv", "--fraction", "1.5"}).code,
      1);
  EXPECT_EQ(
      run_cli({"profile-heads", "-m", KVS_STORIES, "-o", dir / "p.tsv", "--cache", "full"}).code,
      2);
  r = run_cli({"profile-heads", "-m", KVS_STORIES, "--method", "retrieval", "--text",
               "/nonexistent/hay.txt", "-o", dir / "p.tsv"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/hay.txt"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir / "p.tsv"));
  // A razor probe that cannot fit the context.
  r = run_cli(
      {"profile-heads", "-m", KVS_STORIES, "-c", "64", "--segment", "32", "-o", dir / "p.tsv"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("does not fit"), std::string::npos) << r.err;
}

// A profile made for another model is refused by the plan, naming the file and both shapes.
TEST(ProfileHeadsCli, ProfileOfAnotherShapeIsRefused) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_heads");
  dir.write("other.tsv", "0.9\t0.1\t0.2\n0.3\t0.8\t0.4\n");  // 2 x 3; stories260K is 5 x 4
  dir.write("plan.json",
            R"({"policy": "duo", "budget": 24, "head_profile": ")" + (dir / "other.tsv") + R"("})");
  const auto r = run_cli({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "2", "-t",
                          "1", "--cache", dir / "plan.json"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(dir / "other.tsv"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("2 x 3"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("5 layers x 4 KV heads"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
