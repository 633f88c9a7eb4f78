// kvsieve compare end to end on stories260K: outputs, resume, exit codes.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/cli.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using test::run_cli;
namespace fs = std::filesystem;

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::vector<std::string> tiny_args(const std::string& out) {
  return {"compare",
          "-m",
          KVS_STORIES,
          "--suite",
          test::fixture("compare/tiny.json"),
          "--plans",
          "knorm,streaming",
          "--budgets",
          "0.25",
          "--text",
          test::shared_data("text/botchan.txt"),
          "--out",
          out,
          "-t",
          "1",
          "--no-plots"};
}

TEST(CompareCli, WritesResultsAndResumes) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  test::TempDir dir;
  const std::string out = dir / "run";
  auto r = run_cli(tiny_args(out));
  ASSERT_EQ(r.code, 0) << r.err;
  // The 4096-token needle does not fit the 512-token model and is skipped, with a warning.
  EXPECT_NE(r.err.find("skipped niah length 4096"), std::string::npos) << r.err;
  // Terminal table: one line per plan variant, full first.
  EXPECT_NE(r.out.find("full"), std::string::npos);
  EXPECT_NE(r.out.find("knorm@0.25"), std::string::npos);
  EXPECT_NE(r.out.find("streaming@0.25"), std::string::npos);
  for (const char* f : {"results.json", "results.csv", "report.md"})
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  const auto j = read_json(out + "/results.json");
  EXPECT_TRUE(j["complete"].get<bool>());
  ASSERT_EQ(j["rows"].size(), 5u * 3u);  // 2 passkey + 1 niah + ppl + fidelity, 3 variants
  EXPECT_EQ(j["summary"].size(), 3u);
  for (const auto& row : j["rows"]) {
    EXPECT_TRUE(row.contains("plan") && row.contains("params") && row.contains("model"));
    EXPECT_EQ(row["model"]["sha256"].get<std::string>().size(), 64u);
    EXPECT_TRUE(fs::exists(out + "/cells/" + row["id"].get<std::string>() + ".json"));
  }
  const size_t n_files = std::distance(fs::directory_iterator(out + "/cells"), {});
  EXPECT_EQ(n_files, 15u);

  // A second run reuses every completed cell and gives the same results.
  r = run_cli(tiny_args(out));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("reused 15 completed cells"), std::string::npos) << r.err;
  EXPECT_EQ(read_json(out + "/results.json")["rows"], j["rows"]);

  // A changed plan set runs only the new cells.
  auto args = tiny_args(out);
  args[6] = "knorm,streaming,h2o";
  r = run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("reused 15 completed cells"), std::string::npos) << r.err;
  EXPECT_EQ(read_json(out + "/results.json")["rows"].size(), 20u);
}

TEST(CompareCli, BadInputsAndUsage) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  test::TempDir dir;
  auto args = tiny_args(dir / "out");
  // Unknown suite name: exit 1, message names it and lists the shipped suites.
  auto a = args;
  a[4] = "no-such-suite";
  auto r = run_cli(a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("no-such-suite"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("quick"), std::string::npos) << r.err;
  // Unknown plan.
  a = args;
  a[6] = "knorm,bogus";
  r = run_cli(a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bogus"), std::string::npos) << r.err;
  // A budget outside (0, 1] that is not a token count.
  a = args;
  a[8] = "1.5";
  r = run_cli(a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("1.5"), std::string::npos) << r.err;
  // Missing text file.
  a = args;
  a[10] = dir / "missing.txt";
  r = run_cli(a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("missing.txt"), std::string::npos) << r.err;
  // Malformed suite: the message names the file and key.
  dir.write("bad.json",
            R"({"text": "x", "tasks": [{"task": "passkey", "lengths": [300], "depths": [2]}]})");
  a = args;
  a[4] = dir / "bad.json";
  r = run_cli(a);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("bad.json"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("depths"), std::string::npos) << r.err;
  // Usage errors: exit 2.
  EXPECT_EQ(run_cli({"compare", "-m", KVS_STORIES, "--plans", "knorm", "--out", dir / "o"}).code,
            2);
  EXPECT_EQ(run_cli({"compare", "-m", KVS_STORIES, "--suite", "quick", "--out", dir / "o"}).code,
            2);
  EXPECT_EQ(run_cli({"compare", "-m", KVS_STORIES, "--suite", "quick", "--plans", "knorm"}).code,
            2);
}

}  // namespace
}  // namespace kvs
