#include "tools/common.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>
#include <sstream>

#include "engine/model_registry.h"
#include "kernels/core/error.h"

namespace kvs::cli {
namespace {

std::atomic<int> g_interrupts{0};

void on_sigint(int) {
  if (g_interrupts.fetch_add(1) >= 1) _exit(130);
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

SamplingParams SamplingOptions::params() const {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repeat_penalty = repeat_penalty;
  p.repeat_last_n = repeat_last_n;
  p.seed = seed >= 0 ? static_cast<uint64_t>(seed) : std::random_device{}();
  p.validate();
  return p;
}

void add_model_options(CLI::App& app, ModelOptions& o) {
  app.add_option("-m,--model", o.model,
                 "Model: a GGUF file, an HF directory, or a name from `kvsieve models`")
      ->required();
  app.add_option("-t,--threads", o.threads, "Threads (0 or unset: all cores)");
  app.add_option("-c,--ctx-size", o.ctx,
                 "Context size in tokens (0 or unset: min(training context, 4096))");
  app.add_option("-b,--batch-size", o.batch, "Prefill chunk size in tokens")->capture_default_str();
  app.add_option("--attention", o.attention, "Attention backend")->capture_default_str();
  app.add_option(
         "--device", o.device,
         "cpu, cuda or auto (cuda when a device is present; plans that evict run on the cpu)")
      ->capture_default_str();
  app.add_option("--cache", o.cache,
                 "KV cache plan: a JSON file or a shipped plan name (configs/cache/NAME.json)");
}

void add_sampling_options(CLI::App& app, SamplingOptions& o) {
  app.add_option("--temp", o.temp, "Temperature (0 = greedy)")->capture_default_str();
  app.add_option("--top-k", o.top_k, "Top-k (0 = off)")->capture_default_str();
  app.add_option("--top-p", o.top_p, "Top-p in (0, 1] (1 = off)")->capture_default_str();
  app.add_option("--min-p", o.min_p, "Min-p in [0, 1] (0 = off)")->capture_default_str();
  app.add_option("--repeat-penalty", o.repeat_penalty, "Repetition penalty (1 = off)")
      ->capture_default_str();
  app.add_option("--repeat-last-n", o.repeat_last_n, "Tokens the repetition penalty looks back on")
      ->capture_default_str();
  app.add_option("-s,--seed", o.seed, "Random seed (default: random)");
}

void check_model_options(const ModelOptions& o) {
  if (o.threads < 0) throw Error("--threads must be >= 0, got " + std::to_string(o.threads));
  if (o.ctx < 0) throw Error("--ctx-size must be >= 0, got " + std::to_string(o.ctx));
  if (o.batch <= 0) throw Error("--batch-size must be positive, got " + std::to_string(o.batch));
  if (o.device != "auto" && o.device != "cpu" && o.device != "cuda")
    throw Error("--device must be cpu, cuda or auto, got '" + o.device + "'");
}

std::unique_ptr<Engine> load_engine(const ModelOptions& o) {
  check_model_options(o);
  EngineOptions eo;
  eo.threads = o.threads;
  eo.attention = o.attention;
  eo.device = o.device;
  return Engine::load(resolve_model(o.model).string(), eo);
}

SessionOptions session_options(const ModelOptions& o) {
  check_model_options(o);
  SessionOptions so;
  so.n_ctx = o.ctx;
  so.n_batch = o.batch;
  so.device = o.device;
  if (!o.cache.empty()) so.plan = std::make_shared<CachePlan>(load_cache_plan(o.cache));
  return so;
}

std::string read_prompt(const std::string& prompt, const std::string& file, bool use_stdin,
                        bool required) {
  const int given = (!prompt.empty() ? 1 : 0) + (!file.empty() ? 1 : 0) + (use_stdin ? 1 : 0);
  if (given > 1) throw UsageError("give only one of -p, -f and --stdin");
  if (given == 0) {
    if (required) throw UsageError("no text: give -p TEXT, -f FILE or --stdin");
    return {};
  }
  if (!prompt.empty()) return prompt;
  if (use_stdin) return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream f(file, std::ios::binary);
  if (!f) throw Error(file + ": cannot open the text file (-f)");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void create_directories_or_throw(const std::filesystem::path& dir, const std::string& what) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec)
    throw Error(dir.string() + ": cannot create the directory for " + what + ": " + ec.message());
}

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
}

bool interrupted() {
  return g_interrupts.load() > 0;
}

Progress::Progress(std::string label)
    : label_(std::move(label)), tty_(isatty(STDERR_FILENO) != 0), start_(now_seconds()) {}

void Progress::update(int64_t done, int64_t total) {
  if (!tty_ || total <= 0) return;
  const double frac = static_cast<double>(done) / total;
  const int width = 30;
  const int fill = static_cast<int>(frac * width);
  const double elapsed = now_seconds() - start_;
  const double eta = frac > 0 ? elapsed / frac - elapsed : 0.0;
  std::fprintf(stderr, "\r%s [%.*s%*s] %lld/%lld  %.1fs ETA %.1fs ", label_.c_str(), fill,
               "##############################", width - fill, "", static_cast<long long>(done),
               static_cast<long long>(total), elapsed, eta);
  std::fflush(stderr);
  shown_ = true;
}

void Progress::finish() {
  if (shown_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
}

std::string read_whole_file(const std::string& path, const std::string& what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open " + what);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace kvs::cli
