#pragma once
// Built-in chat templates. Rather than embedding a Jinja interpreter, kvsieve recognizes the
// template families that its target models use and renders them in C++, byte for byte as
// the Hugging Face Jinja templates do (including their whitespace trimming and errors).
//
// The rendered text contains the BOS text where the template has one (Gemma, Llama 2/3), so
// tokenize it without adding another BOS, and with special-token texts recognized.
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace kvs {

enum class ChatFamily { ChatML, Gemma, Llama2, Llama3 };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (others pass through where HF allows)
  std::string content;
};

// What a model's own template adds beyond its family.
struct ChatTemplate {
  ChatFamily family = ChatFamily::ChatML;
  // ChatML templates such as SmolLM2's and Qwen2.5's insert a fixed system message when the
  // conversation does not start with one; empty when the template has none.
  std::string default_system;
};

// Recognizes the family by its marker tokens; nullopt when none matches. Llama 2 needs both
// "[INST]" and "<<SYS>>": Mistral's "[INST]" templates space turns differently.
// Llama 3.1+ templates (tools, "Cutting Knowledge Date" system preamble) are detected as
// Llama3 and rendered in the Llama 3.0 layout.
std::optional<ChatFamily> detect_chat_family(std::string_view jinja);

// "chatml", "gemma", "llama2", "llama3" (the --chat-template values); anything else throws.
ChatFamily chat_family_from_name(std::string_view name);
std::string_view chat_family_name(ChatFamily family);

// Family plus template-specific details (the ChatML default system message) of a model's
// Jinja template. Throws kvs::Error when it is not one of the built-in families.
ChatTemplate chat_template_from_jinja(std::string_view jinja);

// The template to use: override_name (the --chat-template value) if not empty, else the
// model's template (tokenizer.chat_template), else kvs::Error suggesting --chat-template.
// An override of the model's own family keeps the model's details.
ChatTemplate resolve_chat_template(std::string_view override_name,
                                   std::optional<std::string_view> model_jinja);

// Renders messages as the family's HF template does. bos_text is what the template's
// bos_token renders as (the vocabulary's BOS piece); empty = the family's usual one.
// Throws kvs::Error where the HF template raises (roles not alternating user/assistant).
std::string apply_chat_template(const ChatTemplate& tmpl, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, const std::string& bos_text = "");
std::string apply_chat_template(ChatFamily family, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, const std::string& bos_text = "");

// Text that ends an assistant turn: generation stops when it appears.
std::string_view end_of_turn_text(ChatFamily family);

}  // namespace kvs
