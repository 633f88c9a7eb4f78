// kvsieve chat: a conversation on stdin/stdout with the model's chat template. Each turn
// reuses the cached prefix of the conversation and evaluates only the new tokens.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>

#include "kernels/core/error.h"
#include "tools/chat_prompt.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {
namespace {

struct ChatArgs {
  ModelOptions model;
  SamplingOptions sampling;
  std::string system;
  std::string chat_template;
  std::string prompt;
  int n_predict = -1;
};

void run_chat(const ChatArgs& a) {
  install_interrupt_handler();
  // Every option is checked before the model loads.
  if (a.n_predict < -1)
    throw Error("--n-predict must be >= -1, got " + std::to_string(a.n_predict));
  (void)a.sampling.params();
  auto engine = load_engine(a.model);
  const ChatTemplate tmpl = resolve_model_chat_template(*engine, a.chat_template);
  Session session(*engine, session_options(a.model));
  std::vector<ChatMessage> msgs;
  if (!a.system.empty()) msgs.push_back({"system", a.system});
  const bool tty = isatty(STDIN_FILENO) != 0;
  const bool one_shot = !a.prompt.empty();
  if (tty && !one_shot)
    std::fprintf(stderr, "chat with %s; /reset starts over, Ctrl-D quits\n",
                 engine->config().name.c_str());

  for (;;) {
    std::string line;
    if (one_shot) {
      line = a.prompt;
    } else {
      if (tty) std::fprintf(stderr, "> ");
      if (!std::getline(std::cin, line)) break;
      if (line.empty()) continue;
      if (line == "/reset") {
        msgs.resize(a.system.empty() ? 0 : 1);
        session.reset();
        continue;
      }
    }
    msgs.push_back({"user", line});
    const std::vector<int32_t> all = tokenize_chat(*engine, tmpl, msgs);
    // Reuse the longest cached prefix; keep at least one token to evaluate.
    const auto& hist = session.history();
    size_t common = 0;
    while (common < hist.size() && common + 1 < all.size() && hist[common] == all[common]) ++common;
    if (!session.truncate(static_cast<int64_t>(common))) {
      session.reset();
      common = 0;
    }
    GenerateOptions go;
    go.n_predict = a.n_predict;
    go.sampling = a.sampling.params();
    go.stop.emplace_back(end_of_turn_text(tmpl.family));
    const std::span<const int32_t> fresh(all.data() + common, all.size() - common);
    GenerateStats st = generate(
        session, fresh, go,
        [](std::string_view piece) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
        },
        {}, [] { return interrupted(); });
    std::fputc('\n', stdout);
    std::fflush(stdout);
    spdlog::debug("turn: {} new prompt tokens, {} generated, {:.1f} tok/s, stop {}", fresh.size(),
                  st.n_generated, st.decode_tps(), st.stop_reason);
    msgs.push_back({"assistant", st.text});
    if (one_shot || st.stop_reason == "interrupted" || st.stop_reason == "context") {
      if (st.stop_reason == "context") std::fprintf(stderr, "kvsieve: the context is full (-c)\n");
      break;
    }
  }
}

void setup_chat(CLI::App& app) {
  static ChatArgs a;
  add_model_options(app, a.model);
  add_sampling_options(app, a.sampling);
  app.add_option("--system", a.system, "System message");
  app.add_option("--chat-template", a.chat_template,
                 "Chat template family: chatml, gemma, llama2, llama3");
  app.add_option("-p,--prompt", a.prompt, "Send one message, print the answer and exit");
  app.add_option("-n,--n-predict", a.n_predict, "Maximum tokens per answer (-1: until end of turn)")
      ->capture_default_str();
  app.callback([] { run_chat(a); });
}

}  // namespace

KVS_COMMAND(chat, "Chat with a model using its chat template", setup_chat);

}  // namespace kvs::cli
