#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "support/cli.h"
#include "support/scoped_env.h"
#include "support/temp_dir.h"

namespace kvs::test {
namespace {

namespace fs = std::filesystem;

TEST(ModelsCli, ListsTheShippedRegistry) {
  TempDir cache;
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path());
  const CliResult r = run_cli({"models"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name : {"smollm2", "gemma3-270m", "stories260k"})
    EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  // An empty cache: the downloadable models are absent, at their cache path.
  std::string row = "absent   ";
  row += cache / "SmolLM2-135M-Instruct.Q4_1.gguf";
  EXPECT_NE(r.out.find(row), std::string::npos) << r.out;
}

TEST(ModelsCli, JsonListing) {
  TempDir cache;
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path());
  cache.write("SmolLM2-135M-Instruct.Q4_1.gguf", "x");
  const CliResult r = run_cli({"models", "--json"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  bool seen = false;
  for (const auto& e : j) {
    if (e.at("name") != "smollm2") continue;
    seen = true;
    EXPECT_EQ(e.at("present"), true);
    EXPECT_EQ(e.at("source"), "pypi");
    EXPECT_EQ(e.at("path"), cache / "SmolLM2-135M-Instruct.Q4_1.gguf");
  }
  EXPECT_TRUE(seen) << r.out;
}

TEST(ModelsCli, PullUnknownModelFails) {
  const CliResult r = run_cli({"pull", "nosuchmodel"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("unknown model 'nosuchmodel'"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(ModelsCli, PullWithoutANameIsAUsageError) {
  EXPECT_EQ(run_cli({"pull"}).code, 2);
}

TEST(ModelsCli, PresentModelIsNotDownloadedAgain) {
  TempDir cache;
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path());
  const std::string file = cache / "SmolLM2-135M-Instruct.Q4_1.gguf";
  cache.write("SmolLM2-135M-Instruct.Q4_1.gguf", "x");
  const CliResult r = run_cli({"pull", "smollm2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, file + "\n");
}

TEST(ModelsCli, MalformedRegistryFileIsNamed) {
  TempDir configs;
  fs::create_directories(configs / "models");
  configs.write("models/broken.json", R"({"name": "broken"})");
  ScopedEnv env("KVSIEVE_CONFIG_DIR", configs.path());
  const CliResult r = run_cli({"models"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("broken.json: key 'format': missing"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs::test
