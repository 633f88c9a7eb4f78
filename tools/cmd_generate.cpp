// kvsieve generate: text continuation (or one chat turn with --chat) from a prompt.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "engine/chat_template.h"
#include "kernels/core/error.h"
#include "tools/chat_prompt.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct GenerateArgs {
  ModelOptions model;
  SamplingOptions sampling;
  std::string prompt, file;
  bool use_stdin = false;
  int n_predict = 128;
  bool json = false;
  bool chat = false;
  std::string system;
  std::string chat_template;
  std::vector<std::string> stop;
  bool special = false;
  bool no_bos = false;
  bool ignore_eos = false;
};

void run_generate(const GenerateArgs& a) {
  install_interrupt_handler();
  // Every option is checked before the model loads.
  if (a.n_predict < -1)
    throw Error("--n-predict must be >= -1, got " + std::to_string(a.n_predict));
  for (const std::string& s : a.stop)
    if (s.empty()) throw Error("--stop: an empty stop string would stop before the first token");
  check_model_options(a.model);
  GenerateOptions go;
  go.n_predict = a.n_predict;
  go.sampling = a.sampling.params();
  go.stop = a.stop;
  const std::string text = read_prompt(a.prompt, a.file, a.use_stdin, true);
  auto engine = load_engine(a.model);
  Session session(*engine, session_options(a.model));
  const Tokenizer& tok = engine->tokenizer();

  go.ignore_eos = a.ignore_eos;
  std::vector<int32_t> prompt;
  if (a.chat) {
    const ChatTemplate tmpl = resolve_model_chat_template(*engine, a.chat_template);
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", text});
    prompt = tokenize_chat(*engine, tmpl, msgs);
    go.stop.emplace_back(end_of_turn_text(tmpl.family));
  } else {
    prompt = tok.encode(text, !a.no_bos, a.special);
  }
  if (prompt.empty()) throw Error("the prompt is empty after tokenization");
  spdlog::info("prompt: {} tokens, context {}", prompt.size(), session.n_ctx());

  Progress bar("prefill");
  const bool stream = !a.json;
  GenerateStats st = generate(
      session, prompt, go,
      [&](std::string_view piece) {
        if (stream) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        }
      },
      [&](int64_t done, int64_t total) { bar.update(done, total); }, [] { return interrupted(); });
  bar.finish();
  if (stream) {
    std::fputc('\n', stdout);
    std::fflush(stdout);
  }
  const size_t full = session.full_cache_bytes(session.n_past());
  spdlog::info(
      "prompt {} tokens at {:.1f} tok/s, generated {} tokens at {:.1f} tok/s, stop: {}, KV {:.2f} "
      "MiB",
      st.n_prompt, st.prefill_tps(), st.n_generated, st.decode_tps(), st.stop_reason,
      st.kv_bytes_in_use / 1048576.0);
  if (a.json) {
    nlohmann::json j;
    j["model"] = engine->weights().path();
    j["text"] = st.text;
    j["n_prompt"] = st.n_prompt;
    j["n_generated"] = st.n_generated;
    j["prefill_seconds"] = st.prefill_seconds;
    j["decode_seconds"] = st.decode_seconds;
    j["prefill_tokens_per_s"] = st.prefill_tps();
    j["decode_tokens_per_s"] = st.decode_tps();
    j["stop_reason"] = st.stop_reason;
    j["kv_bytes_in_use"] = st.kv_bytes_in_use;
    j["kv_bytes_allocated"] = st.kv_bytes_allocated;
    j["kv_bytes_full"] = full;
    j["kv_peak_bytes"] = session.kv_peak_bytes();
    nlohmann::json kept = nlohmann::json::array();
    for (int il = 0; il < engine->config().n_layer; ++il)
      kept.push_back(session.kv_tokens_in_layer(il));
    j["kv_tokens_per_layer"] = kept;
    if (const CacheManager* m = session.manager()) {
      j["cache_plan"] = m->plan().json;
      j["cache_seconds"] = m->stats().seconds;
      j["cache_compressions"] = m->stats().compressions;
    }
    j["n_ctx"] = session.n_ctx();
    j["threads"] = engine->pool().size();
    j["seed"] = go.sampling.seed;
    // Invalid UTF-8 from a model cannot break the JSON line.
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    std::fflush(stdout);
  }
  if (st.stop_reason == "interrupted") std::fprintf(stderr, "kvsieve: interrupted\n");
}

void setup_generate(CLI::App& app) {
  static GenerateArgs a;
  add_model_options(app, a.model);
  add_sampling_options(app, a.sampling);
  app.add_option("-p,--prompt", a.prompt, "Prompt text (verbatim)");
  app.add_option("-f,--file", a.file, "Read the prompt from a file");
  app.add_flag("--stdin", a.use_stdin, "Read the prompt from standard input");
  app.add_option("-n,--n-predict", a.n_predict,
                 "Tokens to generate (-1: until EOS or full context)")
      ->capture_default_str();
  app.add_flag("--json", a.json,
               "Print one JSON object with the text and statistics instead of streaming");
  CLI::Option* chat =
      app.add_flag("--chat", a.chat, "Wrap the prompt as a user turn in the model's chat template");
  app.add_option("--system", a.system, "System message (with --chat)")->needs(chat);
  app.add_option("--chat-template", a.chat_template,
                 "Chat template family: chatml, gemma, llama2, llama3 (with --chat)")
      ->needs(chat);
  app.add_option("--stop", a.stop, "Stop string (repeatable); not printed");
  app.add_flag("--special", a.special, "Parse special-token text in the prompt");
  app.add_flag("--no-bos", a.no_bos, "Do not add the BOS token");
  app.add_flag("--ignore-eos", a.ignore_eos, "Keep generating past end-of-generation tokens");
  app.callback([] { run_generate(a); });
}

}  // namespace

KVS_COMMAND(generate, "Generate text from a prompt", setup_generate);

}  // namespace kvs::cli
