// `kvsieve inspect` end to end: real file, missing file, corrupt file, JSON output.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/cli.h"
#include "tests/support/paths.h"

namespace kvs {
namespace {

int count_lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

TEST(InspectCli, Stories260K) {
  const std::string path = KVS_STORIES;
  KVS_REQUIRE_FILE(path);
  const auto r = test::run_cli({"inspect", path});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("llama"), std::string::npos);
  EXPECT_NE(r.out.find("blk.0.attn_q.weight"), std::string::npos);
  EXPECT_NE(r.out.find("llama.block_count = 5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vocab size = 512"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[512, 64]"), std::string::npos) << r.out;  // token_embd, PyTorch order
  EXPECT_NE(r.out.find("48 tensors"), std::string::npos) << r.out;
  // The token list is summarized, never dumped.
  EXPECT_EQ(r.out.find("<0x41>"), std::string::npos);
}

TEST(InspectCli, Json) {
  const std::string path = KVS_STORIES;
  KVS_REQUIRE_FILE(path);
  const auto r = test::run_cli({"inspect", path, "--json", "--all-metadata"});
  ASSERT_EQ(r.code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["architecture"], "llama");
  EXPECT_EQ(j["hparams"]["llama.block_count"], 5);
  EXPECT_EQ(j["tokenizer"]["vocab_size"], 512);
  EXPECT_EQ(j["tokenizer"]["special_ids"]["bos_token_id"], 1);
  EXPECT_EQ(j["totals"]["count"], 48);
  EXPECT_EQ(j["totals"]["types"]["F32"], 48);
  EXPECT_EQ(j["tensors"][0]["name"], "token_embd.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], nlohmann::json({512, 64}));
  EXPECT_EQ(j["tensors"][0]["bytes"], 131072);
  EXPECT_EQ(j["other_metadata"]["tokenizer.ggml.tokens"]["count"], 512);  // abridged
}

TEST(InspectCli, MissingFileExits1WithPath) {
  const std::string path = "/nonexistent/dir/model.gguf";
  const auto r = test::run_cli({"inspect", path});
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

TEST(InspectCli, CorruptFileExits1WithOneLine) {
  char tmpl[] = "/tmp/kvs_inspect_XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string path = dir + "/corrupt.gguf";
  {
    std::ofstream f(path, std::ios::binary);
    // A valid header that promises 2^62 metadata pairs.
    const char header[] = {'G', 'G', 'U', 'F', 3, 0, 0, 0, 0, 0, 0, 0,
                           0,   0,   0,   0,   0, 0, 0, 0, 0, 0, 0, 0x40};
    f.write(header, sizeof(header));
  }
  const auto r = test::run_cli({"inspect", path});
  std::filesystem::remove_all(dir);
  EXPECT_EQ(r.code, 1);
  EXPECT_TRUE(r.out.empty()) << r.out;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("n_kv"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace kvs
