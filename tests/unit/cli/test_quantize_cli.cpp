#include <gtest/gtest.h>

#include "support/cli.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using test::run_cli;

TEST(QuantizeCli, F16CopyGeneratesTheSameStory) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  test::TempDir dir;
  auto r = run_cli({"quantize", KVS_STORIES, dir / "f16.gguf", "--type", "F16"});
  ASSERT_EQ(r.code, 0) << r.err;
  r = run_cli({"inspect", dir / "f16.gguf"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("F16"), std::string::npos);
  r = run_cli(
      {"generate", "-m", dir / "f16.gguf", "-p", "Once upon a time", "-n", "12", "--temp", "0"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, 30), ", there was a little girl name");
}

TEST(QuantizeCli, BadInputs) {
  test::TempDir dir;
  auto r = run_cli({"quantize", "/nonexistent/in.gguf", dir / "out.gguf", "--type", "F16"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("/nonexistent/in.gguf"), std::string::npos) << r.err;
  KVS_REQUIRE_FILE(KVS_STORIES);
  r = run_cli({"quantize", KVS_STORIES, dir / "out.gguf", "--type", "Q9_9"});
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("Q9_9"), std::string::npos) << r.err;
  r = run_cli({"quantize", KVS_STORIES, dir / "out.gguf", "--type", "Q4_K"});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("cannot quantize to Q4_K"), std::string::npos) << r.err;
  EXPECT_FALSE(test::exists(dir / "out.gguf"));  // nothing half-written
}

}  // namespace
}  // namespace kvs
