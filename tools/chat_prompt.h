#pragma once
// Chat prompts: the model's template (tokenizer.chat_template, or tokenizer_config.json in an
// HF directory) or a --chat-template override, and templated conversations as tokens.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "engine/chat_template.h"
#include "engine/engine.h"

namespace kvs::cli {

// The model's jinja chat template text, if it has one.
std::optional<std::string> model_chat_template(const Engine& engine);
// override_name: a family name from --chat-template, or "" to use the model's template.
ChatTemplate resolve_model_chat_template(const Engine& engine, const std::string& override_name);
// Templated conversation, tokenized with special-token text parsed (the template carries BOS).
std::vector<int32_t> tokenize_chat(const Engine& engine, const ChatTemplate& tmpl,
                                   std::span<const ChatMessage> msgs,
                                   bool add_generation_prompt = true);

}  // namespace kvs::cli
