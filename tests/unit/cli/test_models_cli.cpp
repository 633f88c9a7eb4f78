#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "support/cli.h"

namespace kvs::test {
namespace {

namespace fs = std::filesystem;

// The child kvsieve inherits the environment of this process.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/kvs_models_cli_XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
};

TEST(ModelsCli, ListsTheShippedRegistry) {
  TempDir cache;
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path.string());
  const CliResult r = run_cli({"models"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* name : {"smollm2", "gemma3-270m", "stories260k"})
    EXPECT_NE(r.out.find(name), std::string::npos) << r.out;
  // An empty cache: the downloadable models are absent, at their cache path.
  std::string row = "absent   ";
  row += (cache.path / "SmolLM2-135M-Instruct.Q4_1.gguf").string();
  EXPECT_NE(r.out.find(row), std::string::npos) << r.out;
}

TEST(ModelsCli, JsonListing) {
  TempDir cache;
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path.string());
  std::ofstream(cache.path / "SmolLM2-135M-Instruct.Q4_1.gguf") << "x";
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
    EXPECT_EQ(e.at("path"), (cache.path / "SmolLM2-135M-Instruct.Q4_1.gguf").string());
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
  ScopedEnv env("KVSIEVE_MODEL_DIR", cache.path.string());
  const fs::path file = cache.path / "SmolLM2-135M-Instruct.Q4_1.gguf";
  std::ofstream(file) << "x";
  const CliResult r = run_cli({"pull", "smollm2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, file.string() + "\n");
}

TEST(ModelsCli, MalformedRegistryFileIsNamed) {
  TempDir configs;
  fs::create_directories(configs.path / "models");
  std::ofstream(configs.path / "models" / "broken.json") << R"({"name": "broken"})";
  ScopedEnv env("KVSIEVE_CONFIG_DIR", configs.path.string());
  const CliResult r = run_cli({"models"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("broken.json: key 'format': missing"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs::test
