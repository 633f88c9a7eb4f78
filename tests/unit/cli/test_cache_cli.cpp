// `--cache PLAN` on the command line: the JSON statistics of a managed cache, and bad plans
// (files, keys, names) as one-line errors with exit code 1.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <numeric>

#include "models/formats/gguf_reader.h"
#include "support/cli.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using json = nlohmann::json;
using test::run_cli;

const char* kPrompt =
    "Once upon a time, there was a little dog named Max. Max liked to run in the park with his "
    "friend, a cat named Tom. One day they found a big box under a tree.";

json generate_json(const std::vector<std::string>& extra) {
  std::vector<std::string> args = {"generate", "-m",     KVS_STORIES, "-p", kPrompt, "-n",
                                   "10",       "--temp", "0",         "-t", "1",     "--json"};
  args.insert(args.end(), extra.begin(), extra.end());
  const auto r = run_cli(args);
  EXPECT_EQ(r.code, 0) << r.err;
  const json j = json::parse(r.out, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.out;
  return j.is_discarded() ? json::object() : j;
}

TEST(CacheCli, Knorm50JsonReportsBytesPeakTokensPerLayerAndTime) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto gguf = open_gguf(KVS_STORIES);
  const int64_t n_layer = gguf->metadata().get_int("llama.block_count");
  const int64_t n_kv = gguf->metadata().get_int(
      "llama.attention.head_count_kv", gguf->metadata().get_int("llama.attention.head_count"));
  const json j = generate_json({"--cache", "knorm-50"});
  ASSERT_TRUE(j.contains("kv_bytes_in_use")) << j.dump();
  const auto in_use = j["kv_bytes_in_use"].get<int64_t>();
  const auto full = j["kv_bytes_full"].get<int64_t>();
  const auto peak = j["kv_peak_bytes"].get<int64_t>();
  EXPECT_GT(in_use, 0);
  EXPECT_LT(in_use, full);
  // Half the prompt was kept, then the decoded tokens were added (no decode compression).
  EXPECT_LT(in_use, full * 3 / 4);
  EXPECT_GE(peak, j["kv_bytes_allocated"].get<int64_t>());
  EXPECT_GE(peak, in_use);
  // The peak was reached before compression: the whole prompt was held.
  const int64_t n_prompt = j["n_prompt"].get<int64_t>();
  const int64_t n_past = n_prompt + j["n_generated"].get<int64_t>() - 1;
  ASSERT_GT(n_past, 0);
  EXPECT_GE(peak, full * n_prompt / n_past);
  ASSERT_TRUE(j["kv_tokens_per_layer"].is_array());
  ASSERT_EQ(static_cast<int64_t>(j["kv_tokens_per_layer"].size()), n_layer);
  int64_t tokens = 0;
  for (const auto& t : j["kv_tokens_per_layer"]) {
    // Each layer's heads keep ceil(n_prompt / 2) prompt tokens plus the decoded ones.
    EXPECT_EQ(t.get<int64_t>(), n_kv * ((n_prompt + 1) / 2 + n_past - n_prompt)) << j.dump();
    tokens += t.get<int64_t>();
  }
  // Bytes in use are the kept slots, at the bytes per slot of the full cache.
  EXPECT_EQ(in_use * n_layer * n_kv * n_past, full * tokens);
  ASSERT_TRUE(j.contains("cache_seconds")) << j.dump();
  EXPECT_TRUE(j["cache_seconds"].is_number());
  EXPECT_GE(j["cache_seconds"].get<double>(), 0.0);
  EXPECT_GE(j["cache_compressions"].get<int64_t>(), 1);
  EXPECT_EQ(j["cache_plan"]["policy"], "knorm");
}

TEST(CacheCli, FullPlanMatchesNoPlan) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const json plain = generate_json({});
  const json full = generate_json({"--cache", "full"});
  EXPECT_EQ(plain["text"], full["text"]);
  EXPECT_EQ(full["kv_bytes_in_use"], full["kv_bytes_full"]);
  EXPECT_EQ(plain["kv_bytes_in_use"], full["kv_bytes_in_use"]);
  EXPECT_FALSE(plain.contains("cache_seconds"));  // no manager, no manager time
}

TEST(CacheCli, BadPlanFileExits1NamingTheFileAndKey) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir("kvs_cache_cli");
  dir.write("typo.json", R"({"policy": "knorm", "budget": 0.5, "sinkz": 4})");
  auto r = run_cli(
      {"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "--cache", dir / "typo.json"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(dir / "typo.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'sinkz'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
  // A key inside an override is checked against the model when the session starts.
  dir.write("layer.json", R"({"policy": "knorm", "budget": 0.5, "layers": {"0-99": "full"}})");
  r = run_cli(
      {"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "--cache", dir / "layer.json"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(dir / "layer.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("'layers.0-99'"), std::string::npos) << r.err;
  // Not JSON at all.
  dir.write("broken.json", "{\"policy\": ");
  r = run_cli(
      {"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "--cache", dir / "broken.json"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find(dir / "broken.json"), std::string::npos) << r.err;
}

TEST(CacheCli, UnknownPlanNameExits1ListingShippedPlans) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto r =
      run_cli({"generate", "-m", KVS_STORIES, "-p", "Once", "-n", "2", "--cache", "knorm-55"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("'knorm-55'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("knorm-50"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("streaming-512"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
