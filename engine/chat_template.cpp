#include "engine/chat_template.h"

#include <fmt/format.h>

#include <array>
#include <cstdint>

#include "kernels/core/error.h"

namespace kvs {

namespace {

constexpr std::string_view kFamilyNames = "chatml, gemma, llama2, llama3";

// Python's str.isspace(), which Jinja's |trim and str.strip() use: more than ASCII blanks.
bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// Decodes the UTF-8 sequence at s[0..len); false when it is not one well-formed code point.
bool decode_utf8(std::string_view s, uint32_t& cp) {
  const auto b = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  if (s.empty()) return false;
  size_t n;
  if (b(0) < 0x80) {
    cp = b(0);
    return s.size() == 1;
  } else if ((b(0) & 0xE0) == 0xC0) {
    n = 2;
    cp = b(0) & 0x1F;
  } else if ((b(0) & 0xF0) == 0xE0) {
    n = 3;
    cp = b(0) & 0x0F;
  } else if ((b(0) & 0xF8) == 0xF0) {
    n = 4;
    cp = b(0) & 0x07;
  } else {
    return false;
  }
  if (s.size() != n) return false;
  for (size_t i = 1; i < n; ++i) {
    if ((b(i) & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (b(i) & 0x3F);
  }
  return true;
}

size_t utf8_length(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

std::string trim(std::string_view s) {
  uint32_t cp = 0;
  while (!s.empty()) {
    const size_t n = std::min(utf8_length(static_cast<uint8_t>(s[0])), s.size());
    if (!decode_utf8(s.substr(0, n), cp) || !is_py_space(cp)) break;
    s.remove_prefix(n);
  }
  while (!s.empty()) {
    size_t start = s.size() - 1;
    while (start > 0 && s.size() - start < 4 && (static_cast<uint8_t>(s[start]) & 0xC0) == 0x80)
      --start;
    if (!decode_utf8(s.substr(start), cp) || !is_py_space(cp)) break;
    s.remove_suffix(s.size() - start);
  }
  return std::string(s);
}

// The literal default system message of a ChatML template: the body of a Jinja string
// literal '<|im_start|>system\n...<|im_end|>'. A body with an unescaped quote belongs to an
// expression ('...system\n' + messages[0]['content'] + '...'), not to a default.
std::string chatml_default_system(std::string_view jinja) {
  constexpr std::string_view head = "<|im_start|>system";
  for (size_t pos = jinja.find(head); pos != std::string_view::npos;
       pos = jinja.find(head, pos + 1)) {
    if (pos == 0) continue;
    const char quote = jinja[pos - 1];
    if (quote != '\'' && quote != '"') continue;
    size_t i = pos + head.size();
    // GGUF files carry real newlines, tokenizer_config.json-derived text carries "\n".
    if (jinja.substr(i, 1) == "\n") {
      i += 1;
    } else if (jinja.substr(i, 2) == "\\n") {
      i += 2;
    } else {
      continue;
    }
    const size_t end = jinja.find("<|im_end|>", i);
    if (end == std::string_view::npos) continue;
    const std::string_view body = jinja.substr(i, end - i);
    std::string text;
    bool literal = true;
    for (size_t k = 0; k < body.size() && literal; ++k) {
      const char c = body[k];
      if (c == quote) {
        literal = false;
      } else if (c == '\\' && k + 1 < body.size()) {
        const char e = body[++k];
        text += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
      } else {
        text += c;
      }
    }
    if (literal && !text.empty()) return text;
  }
  return "";
}

[[noreturn]] void alternation_error(ChatFamily family) {
  throw Error(fmt::format(
      "chat messages must alternate user/assistant after an optional system message ({} "
      "template)",
      chat_family_name(family)));
}

std::string render_chatml(const ChatTemplate& t, std::span<const ChatMessage> messages,
                          bool add_generation_prompt) {
  std::string out;
  if (!t.default_system.empty() && !messages.empty() && messages[0].role != "system")
    out += "<|im_start|>system\n" + t.default_system + "<|im_end|>\n";
  for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

std::string render_gemma(std::span<const ChatMessage> messages, bool add_generation_prompt,
                         const std::string& bos) {
  std::string out = bos;
  std::string first_user_prefix;
  if (!messages.empty() && messages[0].role == "system") {
    first_user_prefix = messages[0].content + "\n\n";
    messages = messages.subspan(1);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if ((m.role == "user") != (i % 2 == 0)) alternation_error(ChatFamily::Gemma);
    const std::string& role = m.role == "assistant" ? std::string("model") : m.role;
    out += "<start_of_turn>" + role + "\n" + (i == 0 ? first_user_prefix : "") + trim(m.content) +
           "<end_of_turn>\n";
  }
  if (add_generation_prompt) out += "<start_of_turn>model\n";
  return out;
}

std::string render_llama3(std::span<const ChatMessage> messages, bool add_generation_prompt,
                          const std::string& bos) {
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i == 0) out += bos;
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" +
           trim(messages[i].content) + "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// The Llama 2 template has no generation prompt: a prompt ends with " [/INST]" anyway.
std::string render_llama2(std::span<const ChatMessage> messages, const std::string& bos) {
  std::string out;
  std::optional<std::string> system;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    messages = messages.subspan(1);
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if ((m.role == "user") != (i % 2 == 0)) alternation_error(ChatFamily::Llama2);
    // The template strips after prepending the system block, so only the user text's end
    // is stripped then.
    const std::string content =
        i == 0 && system ? "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + m.content : m.content;
    if (m.role == "user") {
      out += bos;
      out += "[INST] ";
      out += trim(content);
      out += " [/INST]";
    } else if (m.role == "assistant") {
      out += ' ';
      out += trim(content);
      out += " </s>";
    }
  }
  return out;
}

std::string_view default_bos(ChatFamily family) {
  switch (family) {
    case ChatFamily::ChatML:
      return "";
    case ChatFamily::Gemma:
      return "<bos>";
    case ChatFamily::Llama2:
      return "<s>";
    case ChatFamily::Llama3:
      return "<|begin_of_text|>";
  }
  return "";
}

}  // namespace

std::optional<ChatFamily> detect_chat_family(std::string_view jinja) {
  const auto has = [&](std::string_view s) { return jinja.find(s) != std::string_view::npos; };
  if (has("<|im_start|>")) return ChatFamily::ChatML;
  if (has("<start_of_turn>")) return ChatFamily::Gemma;
  if (has("<|start_header_id|>")) return ChatFamily::Llama3;
  if (has("[INST]") && has("<<SYS>>")) return ChatFamily::Llama2;
  return std::nullopt;
}

ChatFamily chat_family_from_name(std::string_view name) {
  if (name == "chatml") return ChatFamily::ChatML;
  if (name == "gemma") return ChatFamily::Gemma;
  if (name == "llama2") return ChatFamily::Llama2;
  if (name == "llama3") return ChatFamily::Llama3;
  throw Error(fmt::format("--chat-template must be one of {}, got '{}'", kFamilyNames, name));
}

std::string_view chat_family_name(ChatFamily family) {
  switch (family) {
    case ChatFamily::ChatML:
      return "chatml";
    case ChatFamily::Gemma:
      return "gemma";
    case ChatFamily::Llama2:
      return "llama2";
    case ChatFamily::Llama3:
      return "llama3";
  }
  return "?";
}

ChatTemplate chat_template_from_jinja(std::string_view jinja) {
  const auto family = detect_chat_family(jinja);
  if (!family)
    throw Error(
        fmt::format("the model's chat template is not one of the built-in families ({}); pass "
                    "--chat-template NAME to choose one",
                    kFamilyNames));
  ChatTemplate t;
  t.family = *family;
  if (t.family == ChatFamily::ChatML) t.default_system = chatml_default_system(jinja);
  return t;
}

ChatTemplate resolve_chat_template(std::string_view override_name,
                                   std::optional<std::string_view> model_jinja) {
  const bool model_has = model_jinja && !model_jinja->empty();
  if (!override_name.empty()) {
    const ChatFamily family = chat_family_from_name(override_name);
    if (model_has && detect_chat_family(*model_jinja) == family)
      return chat_template_from_jinja(*model_jinja);
    return ChatTemplate{family, ""};
  }
  if (!model_has)
    throw Error(fmt::format("the model has no chat template; pass --chat-template NAME ({})",
                            kFamilyNames));
  return chat_template_from_jinja(*model_jinja);
}

std::string apply_chat_template(const ChatTemplate& tmpl, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, const std::string& bos_text) {
  const std::string bos = bos_text.empty() ? std::string(default_bos(tmpl.family)) : bos_text;
  switch (tmpl.family) {
    case ChatFamily::ChatML:
      return render_chatml(tmpl, messages, add_generation_prompt);
    case ChatFamily::Gemma:
      return render_gemma(messages, add_generation_prompt, bos);
    case ChatFamily::Llama2:
      return render_llama2(messages, bos);
    case ChatFamily::Llama3:
      return render_llama3(messages, add_generation_prompt, bos);
  }
  KVS_CHECK(false, "unhandled chat family");
  return {};
}

std::string apply_chat_template(ChatFamily family, std::span<const ChatMessage> messages,
                                bool add_generation_prompt, const std::string& bos_text) {
  return apply_chat_template(ChatTemplate{family, ""}, messages, add_generation_prompt, bos_text);
}

std::string_view end_of_turn_text(ChatFamily family) {
  switch (family) {
    case ChatFamily::ChatML:
      return "<|im_end|>";
    case ChatFamily::Gemma:
      return "<end_of_turn>";
    case ChatFamily::Llama2:
      return "</s>";
    case ChatFamily::Llama3:
      return "<|eot_id|>";
  }
  return "";
}

}  // namespace kvs
