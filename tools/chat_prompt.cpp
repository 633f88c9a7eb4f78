#include "tools/chat_prompt.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/core/error.h"

namespace kvs::cli {

std::optional<std::string> model_chat_template(const Engine& engine) {
  const MetaMap& meta = engine.weights().metadata();
  if (meta.has("tokenizer.chat_template")) return meta.get_string("tokenizer.chat_template");
  const std::string dir = engine.weights().hf_dir();
  if (dir.empty()) return std::nullopt;
  const std::filesystem::path cfg = std::filesystem::path(dir) / "tokenizer_config.json";
  if (!std::filesystem::exists(cfg)) return std::nullopt;
  std::ifstream f(cfg);
  const nlohmann::json j = nlohmann::json::parse(f, nullptr, false);
  if (j.is_discarded()) throw Error(cfg.string() + ": malformed JSON");
  if (j.contains("chat_template") && j["chat_template"].is_string())
    return j["chat_template"].get<std::string>();
  return std::nullopt;
}

ChatTemplate resolve_model_chat_template(const Engine& engine, const std::string& override_name) {
  const std::optional<std::string> jinja = model_chat_template(engine);
  std::optional<std::string_view> view;
  if (jinja) view = *jinja;
  return resolve_chat_template(override_name, view);
}

std::vector<int32_t> tokenize_chat(const Engine& engine, const ChatTemplate& tmpl,
                                   std::span<const ChatMessage> msgs, bool add_generation_prompt) {
  const Tokenizer& tok = engine.tokenizer();
  const int32_t bos = tok.special().bos;
  const std::string bos_text = bos >= 0 ? tok.piece(bos) : "";
  const std::string text = apply_chat_template(tmpl, msgs, add_generation_prompt, bos_text);
  return tok.encode(text, false, true);
}

}  // namespace kvs::cli
