// kvsieve perplexity: perplexity of a text file under a cache plan.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/perplexity.h"
#include "kernels/core/error.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct PerplexityArgs {
  ModelOptions model;
  std::string file;
  int64_t max_tokens = 0;
  bool json = false;
};

void run_perplexity(const PerplexityArgs& a) {
  install_interrupt_handler();
  if (a.max_tokens < 0)
    throw Error("--max-tokens must be >= 0 (0: the whole text), got " +
                std::to_string(a.max_tokens));
  check_model_options(a.model);
  const std::string text = read_prompt("", a.file, false, true);
  auto engine = load_engine(a.model);
  std::vector<int32_t> tokens = engine->tokenizer().encode(text, true, false);
  if (a.max_tokens > 0 && static_cast<int64_t>(tokens.size()) > a.max_tokens)
    tokens.resize(a.max_tokens);
  spdlog::info("{}: {} tokens", a.file, tokens.size());
  Progress bar("perplexity");
  const PerplexityResult r = perplexity(
      *engine, session_options(a.model), tokens, [&](int64_t d, int64_t t) { bar.update(d, t); },
      [] { return interrupted(); });
  bar.finish();
  if (a.json) {
    nlohmann::json j;
    j["model"] = engine->weights().path();
    j["file"] = a.file;
    j["perplexity"] = r.perplexity;
    j["mean_nll"] = r.mean_nll;
    j["n_tokens"] = r.n_tokens;
    j["n_scored"] = r.n_scored;
    j["n_chunks"] = r.n_chunks;
    j["streamed"] = r.streamed;
    j["seconds"] = r.seconds;
    j["kv_peak_bytes"] = r.kv_peak_bytes;
    j["kv_bytes_in_use"] = r.kv_bytes_in_use;
    j["kv_bytes_full"] = r.kv_bytes_full;
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("perplexity %.4f over %lld scored tokens (%lld chunks%s)\n", r.perplexity,
                static_cast<long long>(r.n_scored), static_cast<long long>(r.n_chunks),
                r.streamed ? ", streamed" : "");
  }
  std::fflush(stdout);
  if (interrupted())
    std::fprintf(stderr, "kvsieve: interrupted; the figures cover the tokens scored so far\n");
}

void setup_perplexity(CLI::App& app) {
  static PerplexityArgs a;
  add_model_options(app, a.model);
  app.add_option("-f,--file", a.file, "Text file to evaluate")->required();
  app.add_option("--max-tokens", a.max_tokens,
                 "Evaluate at most this many tokens of the text (0: all)");
  app.add_flag("--json", a.json, "Print one JSON object");
  app.callback([] { run_perplexity(a); });
}

}  // namespace

KVS_COMMAND(perplexity, "Perplexity of a text file, optionally under a KV cache plan",
            setup_perplexity);

}  // namespace kvs::cli
