// kvsieve convert: exit codes, the --force rule, and stdout/stderr discipline.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/support/cli.h"
#include "tests/support/paths.h"
#include "tests/support/temp_dir.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;

TEST(ConvertCli, RefusesUnrelatedNonEmptyDirWithoutForce) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir d;
  const std::string out = d / "mine";
  fs::create_directories(out);
  std::ofstream(out + "/thesis.tex") << "precious";
  const auto r = run_cli({"convert", KVS_STORIES, out});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("--force"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));

  const auto f = run_cli({"convert", KVS_STORIES, out, "--force", "--dtype", "f16"});
  EXPECT_EQ(f.code, 0) << f.err;
  EXPECT_EQ(f.out, out + "\n");
  EXPECT_TRUE(fs::exists(out + "/config.json"));
  EXPECT_TRUE(fs::exists(out + "/thesis.tex"));
  EXPECT_NE(f.err.find("wrote 48 tensors"), std::string::npos) << f.err;
}

TEST(ConvertCli, BadDtypeIsBadInput) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir d;
  const auto r = run_cli({"convert", KVS_STORIES, d / "out", "--dtype", "q4_0"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("--dtype"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(d / "out"));
}

TEST(ConvertCli, MissingArgumentsAndBadInput) {
  EXPECT_EQ(run_cli({"convert"}).code, 2);
  TempDir d;
  std::ofstream(d / "junk.gguf") << "not a gguf";
  const auto r = run_cli({"convert", d / "junk.gguf", d / "out", "--dtype", "f32"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("junk.gguf"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
