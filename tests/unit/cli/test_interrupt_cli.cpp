// Ctrl-C: the command stops at the next token or cell, reports what it did so far, leaves only
// complete output files, and exits 130.
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

namespace fs = std::filesystem;
using test::CliProcess;

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str(), nullptr, false);
}

bool contains(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

// Generation that would run for minutes (a 200k context, no EOS), interrupted mid-stream.
TEST(InterruptCli, GenerateStopsPrintsStatisticsAndExits130) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  CliProcess p({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "-1", "--ignore-eos",
                "-c", "200000", "--temp", "0", "-t", "1"});
  ASSERT_TRUE(p.wait_for([&] { return p.out().size() > 200; }, 30)) << p.err();
  p.signal(SIGINT);
  const auto r = p.finish(30);
  EXPECT_EQ(r.code, 130) << r.err;
  EXPECT_EQ(r.out.substr(0, 30), ", there was a little girl name");
  EXPECT_EQ(r.out.back(), '\n');  // the stream is closed with its newline
  EXPECT_TRUE(contains(r.err, "stop: interrupted")) << r.err;
  EXPECT_TRUE(contains(r.err, "kvsieve: interrupted")) << r.err;
}

TEST(InterruptCli, GenerateJsonStillPrintsTheObject) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  CliProcess p({"generate", "-m", KVS_STORIES, "-p", "Once upon a time", "-n", "-1", "--ignore-eos",
                "-c", "200000", "--temp", "0", "-t", "1", "--json"});
  ASSERT_TRUE(p.wait_for([&] { return contains(p.err(), "prompt:"); }, 30)) << p.err();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  p.signal(SIGINT);
  const auto r = p.finish(30);
  EXPECT_EQ(r.code, 130) << r.err;
  const auto j = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << r.out;
  EXPECT_EQ(j["stop_reason"], "interrupted");
  EXPECT_GT(j["n_generated"].get<int64_t>(), 0);
}

// compare: interrupted after some cells, it writes the partial results (marked incomplete)
// and no temporary file; the same command then reuses those cells and completes.
TEST(InterruptCli, CompareLeavesCompleteCellsAndResumes) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  test::TempDir dir;
  const std::string out = dir / "cmp";
  const std::vector<std::string> args = {"compare",   "-m",
                                         KVS_STORIES, "--suite",
                                         "quick",     "--plans",
                                         "knorm-50",  "--no-plots",
                                         "-t",        "1",
                                         "--out",     out,
                                         "--text",    test::shared_data("text/botchan.txt")};
  size_t cells_at_stop = 0;
  {
    CliProcess p(args);
    const auto n_cells = [&] {
      std::error_code ec;
      if (!fs::is_directory(out + "/cells", ec)) return size_t{0};
      return static_cast<size_t>(std::distance(fs::directory_iterator(out + "/cells"), {}));
    };
    ASSERT_TRUE(p.wait_for([&] { return n_cells() >= 2; }, 60)) << p.err();
    p.signal(SIGINT);
    const auto r = p.finish(60);
    EXPECT_EQ(r.code, 130) << r.err;
    EXPECT_TRUE(contains(r.err, "kvsieve: interrupted after")) << r.err;
    for (const auto& e : fs::recursive_directory_iterator(out))
      EXPECT_FALSE(contains(e.path().filename().string(), ".tmp")) << e.path();
    const auto j = read_json(out + "/results.json");
    ASSERT_TRUE(j.is_object());
    EXPECT_FALSE(j["complete"].get<bool>());
    cells_at_stop = n_cells();
    EXPECT_EQ(j["rows"].size(), cells_at_stop);
  }
  const auto r = test::run_cli(args);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(contains(r.err, "reused " + std::to_string(cells_at_stop) + " completed cells"))
      << r.err;
  const auto j = read_json(out + "/results.json");
  EXPECT_TRUE(j["complete"].get<bool>());
}

}  // namespace
}  // namespace kvs
