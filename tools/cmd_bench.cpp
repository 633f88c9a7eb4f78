// kvsieve bench: prompt-processing and token-generation throughput, modelled on llama-bench.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/bench.h"
#include "kernels/core/error.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct BenchArgs {
  ModelOptions model;
  std::vector<int> n_prompt = {512};
  std::vector<int> n_gen = {128};
  std::vector<int> depth = {0};
  int reps = 5;
  int64_t seed = 1;
  bool json = false;
};

void check_sizes(const std::vector<int>& v, const char* opt, bool zero_ok) {
  for (int x : v)
    if (x < 0 || (x == 0 && !zero_ok) || x > (1 << 22))
      throw Error(std::string(opt) + ": " + std::to_string(x) +
                  " is not a valid size (0 to 4194304)");
}

void run_bench_cmd(BenchArgs& a) {
  install_interrupt_handler();
  check_sizes(a.n_prompt, "-p", true);
  check_sizes(a.n_gen, "-n", true);
  check_sizes(a.depth, "-d", true);
  if (a.reps <= 0) throw Error("-r: repetitions must be positive, got " + std::to_string(a.reps));
  if (a.model.ctx != 0)
    throw UsageError("bench sizes the context itself: give depths with -d, not --ctx-size");
  check_model_options(a.model);
  auto engine = load_engine(a.model);
  const SessionOptions so = session_options(a.model);
  std::vector<BenchTest> tests;
  for (int d : a.depth) {
    for (int p : a.n_prompt)
      if (p > 0) tests.push_back({p, 0, d});
    for (int n : a.n_gen)
      if (n > 0) tests.push_back({0, n, d});
  }
  if (tests.empty()) throw UsageError("nothing to run: every -p and -n is 0");
  // Untimed warm-up: page in the weights and wake the thread pool.
  {
    SessionOptions w = so;
    w.n_ctx = 8;
    Session s(*engine, w);
    const int32_t t = 0;
    s.eval(std::span(&t, 1), 1);
  }
  const std::string model_name =
      std::filesystem::path(engine->weights().path()).filename().string();
  const std::string cache = a.model.cache.empty() ? "full" : a.model.cache;
  const int threads = engine->pool().size();
  nlohmann::json out = nlohmann::json::array();
  if (!a.json) {
    std::printf("| model | threads | attention | cache | test | t/s | kv MiB | manager %% |\n");
    std::printf("|---|---:|---|---|---|---:|---:|---:|\n");
    std::fflush(stdout);
  }
  for (const BenchTest& t : tests) {
    if (interrupted()) break;
    spdlog::info("bench {}: {} repetitions", t.name(), a.reps);
    const BenchResult r = run_bench(*engine, so, t, a.reps, static_cast<uint64_t>(a.seed),
                                    [] { return interrupted(); });
    if (r.tokens_per_s.empty()) break;
    const double mgr = r.timed_seconds > 0 ? r.manager_seconds / r.timed_seconds : 0.0;
    if (r.continued > 0)
      spdlog::info("{}: {} repetitions started past depth {} (the cache was compressed)", t.name(),
                   r.continued, t.depth);
    if (a.json) {
      nlohmann::json j;
      j["model"] = model_name;
      j["test"] = t.name();
      j["n_prompt"] = t.n_prompt;
      j["n_gen"] = t.n_gen;
      j["depth"] = t.depth;
      j["threads"] = threads;
      j["attention"] = a.model.attention;
      j["cache"] = cache;
      j["reps"] = r.tokens_per_s.size();
      j["tokens_per_s"] = r.mean;
      j["stddev"] = r.stddev;
      j["samples"] = r.tokens_per_s;
      j["kv_bytes_in_use"] = r.kv_bytes_in_use;
      j["kv_bytes_full"] = r.kv_bytes_full;
      j["manager_seconds"] = r.manager_seconds;
      j["manager_fraction"] = mgr;
      j["kvsieve_version"] = KVSIEVE_VERSION;
      out.push_back(j);
    } else {
      std::printf("| %s | %d | %s | %s | %s | %.2f ± %.2f | %.1f | %.2f |\n", model_name.c_str(),
                  threads, a.model.attention.c_str(), cache.c_str(), t.name().c_str(), r.mean,
                  r.stddev, static_cast<double>(r.kv_bytes_in_use) / (1024.0 * 1024.0),
                  100.0 * mgr);
      std::fflush(stdout);
    }
  }
  if (a.json) std::printf("%s\n", out.dump(2).c_str());
  std::fflush(stdout);
  if (interrupted())
    std::fprintf(stderr, "kvsieve: interrupted; the table covers the tests finished so far\n");
}

void setup_bench(CLI::App& app) {
  static BenchArgs a;
  add_model_options(app, a.model);
  app.add_option("-p,--n-prompt", a.n_prompt, "Prompt sizes for pp tests (0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-n,--n-gen", a.n_gen, "Generated tokens for tg tests (0: none)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-d,--depth", a.depth, "Tokens already in the cache before each test")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("-r,--repetitions", a.reps, "Repetitions per test")->capture_default_str();
  app.add_option("-s,--seed", a.seed, "Seed of the random token ids")->capture_default_str();
  app.add_flag("--json", a.json, "Print a JSON list, one object per test");
  app.callback([] { run_bench_cmd(a); });
}

}  // namespace

KVS_COMMAND(bench, "Prompt-processing and generation throughput (like llama-bench)", setup_bench);

}  // namespace kvs::cli
