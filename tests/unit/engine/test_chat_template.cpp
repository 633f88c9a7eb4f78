// Expected strings are what transformers' apply_chat_template renders with each model's own
// Jinja template (checked with jinja2, trim_blocks + lstrip_blocks, as HF sets them).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "engine/chat_template.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

// SmolLM2-135M-Instruct's tokenizer.chat_template as stored in its GGUF (real newlines).
const std::string kSmolLM2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

// Qwen2.5-style: escaped newlines, the default in an else branch, the system message in an
// expression that must not be taken for a default.
const std::string kQwen =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + "
    "messages[0]['content'] + '<|im_end|>\\n' }}{%- else %}{{- '<|im_start|>system\\nYou are "
    "Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}{%- endif %}";

const std::string kGemma3 =
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n ... "
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}";

const std::string kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}";

const std::string kLlama2 =
    "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
    "system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{{ bos_token + '[INST] ' + "
    "content.strip() + ' [/INST]' }}";

using Msgs = std::vector<ChatMessage>;

const Msgs kSingle = {{"user", "Hi"}};
const Msgs kWithSystem = {{"system", "Be brief."}, {"user", "Hi"}};
const Msgs kMulti = {{"user", "  Hello there \n"},
                     {"assistant", " Hi! How can I help? "},
                     {"user", "Tell me a joke.\n"}};
const Msgs kMultiSystem = {{"system", " You are a pirate. "},
                           {"user", " Ahoy \t"},
                           {"assistant", "Arr."},
                           {"user", "Where is the gold?"}};

std::string render(const std::string& jinja, const Msgs& m, bool gen) {
  return apply_chat_template(chat_template_from_jinja(jinja), m, gen);
}

TEST(ChatTemplate, DetectsFamilies) {
  EXPECT_EQ(detect_chat_family(kSmolLM2), ChatFamily::ChatML);
  EXPECT_EQ(detect_chat_family(kQwen), ChatFamily::ChatML);
  EXPECT_EQ(detect_chat_family(kGemma3), ChatFamily::Gemma);
  EXPECT_EQ(detect_chat_family(kLlama3), ChatFamily::Llama3);
  EXPECT_EQ(detect_chat_family(kLlama2), ChatFamily::Llama2);
  EXPECT_EQ(detect_chat_family("{{ '[INST] ' + message['content'] + ' [/INST]' }}"),
            std::nullopt);  // Mistral: not Llama 2's layout
  EXPECT_EQ(detect_chat_family("{{ '<|user|>\\n' + message['content'] }}"), std::nullopt);
}

TEST(ChatTemplate, ExtractsTheChatMLDefaultSystemMessage) {
  EXPECT_EQ(chat_template_from_jinja(kSmolLM2).default_system,
            "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
  EXPECT_EQ(chat_template_from_jinja(kQwen).default_system,
            "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.");
  EXPECT_EQ(chat_template_from_jinja("{{'<|im_start|>' + message['role'] + '\\n'}}").default_system,
            "");
}

TEST(ChatTemplate, SmolLM2) {
  EXPECT_EQ(render(kSmolLM2, kSingle, true),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render(kSmolLM2, kWithSystem, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render(kSmolLM2, kMulti, false),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
            "Face<|im_end|>\n<|im_start|>user\n  Hello there \n<|im_end|>\n<|im_start|>assistant\n"
            " Hi! How can I help? <|im_end|>\n<|im_start|>user\nTell me a joke.\n<|im_end|>\n");
  EXPECT_EQ(render(kSmolLM2, kMultiSystem, true),
            "<|im_start|>system\n You are a pirate. <|im_end|>\n<|im_start|>user\n Ahoy "
            "\t<|im_end|>\n<|im_start|>assistant\nArr.<|im_end|>\n<|im_start|>user\nWhere is the "
            "gold?<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, PlainChatMLHasNoDefaultSystem) {
  EXPECT_EQ(apply_chat_template(ChatFamily::ChatML, kSingle, true),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
}

TEST(ChatTemplate, Gemma3) {
  const auto g = [](const Msgs& m, bool gen) {
    return apply_chat_template(ChatFamily::Gemma, m, gen, "<bos>");
  };
  EXPECT_EQ(g(kSingle, true), "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(g(kSingle, false), "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  EXPECT_EQ(g(kWithSystem, true),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(g(kMulti, true),
            "<bos><start_of_turn>user\nHello there<end_of_turn>\n<start_of_turn>model\nHi! How "
            "can I help?<end_of_turn>\n<start_of_turn>user\nTell me a "
            "joke.<end_of_turn>\n<start_of_turn>model\n");
  // The system text is not trimmed, the user text after it is.
  EXPECT_EQ(g(kMultiSystem, false),
            "<bos><start_of_turn>user\n You are a pirate. \n\nAhoy<end_of_turn>\n<start_of_turn>"
            "model\nArr.<end_of_turn>\n<start_of_turn>user\nWhere is the gold?<end_of_turn>\n");
}

TEST(ChatTemplate, Llama3) {
  const auto l = [](const Msgs& m, bool gen) {
    return apply_chat_template(ChatFamily::Llama3, m, gen, "<|begin_of_text|>");
  };
  EXPECT_EQ(l(kSingle, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(l(kWithSystem, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe "
            "brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
  EXPECT_EQ(l(kMulti, true),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHello "
            "there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I "
            "help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nTell me a "
            "joke.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(l(kMultiSystem, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a "
            "pirate.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAhoy<|eot_id|><|start_"
            "header_id|>assistant<|end_header_id|>\n\nArr.<|eot_id|><|start_header_id|>user<|"
            "end_header_id|>\n\nWhere is the gold?<|eot_id|>");
}

TEST(ChatTemplate, Llama2) {
  const auto l = [](const Msgs& m, bool gen) {
    return apply_chat_template(ChatFamily::Llama2, m, gen, "<s>");
  };
  EXPECT_EQ(l(kSingle, true), "<s>[INST] Hi [/INST]");
  EXPECT_EQ(l(kWithSystem, true), "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST]");
  EXPECT_EQ(l(kMulti, false),
            "<s>[INST] Hello there [/INST] Hi! How can I help? </s><s>[INST] Tell me a joke. "
            "[/INST]");
  // Stripping happens after the system block is prepended: the user's leading blank stays.
  EXPECT_EQ(l(kMultiSystem, true),
            "<s>[INST] <<SYS>>\n You are a pirate. \n<</SYS>>\n\n Ahoy [/INST] Arr. </s><s>[INST] "
            "Where is the gold? [/INST]");
}

TEST(ChatTemplate, TrimIsPythonStripIncludingUnicodeSpaces) {
  const Msgs m = {{"user", "\u3000wide space\u00a0"}, {"assistant", "\u2028ok\u0085"}};
  EXPECT_EQ(apply_chat_template(ChatFamily::Gemma, m, false),
            "<bos><start_of_turn>user\nwide space<end_of_turn>\n<start_of_turn>model\n"
            "ok<end_of_turn>\n");
  const Msgs accented = {{"user", "caf\u00e9 \u00e9"}};
  EXPECT_EQ(apply_chat_template(ChatFamily::Llama2, accented, false),
            "<s>[INST] caf\u00e9 \u00e9 [/INST]");
}

TEST(ChatTemplate, DefaultBosPerFamily) {
  EXPECT_EQ(apply_chat_template(ChatFamily::Gemma, kSingle, false),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n");
  EXPECT_EQ(apply_chat_template(ChatFamily::Llama2, kSingle, false), "<s>[INST] Hi [/INST]");
  EXPECT_EQ(apply_chat_template(ChatFamily::Llama3, kSingle, false).rfind("<|begin_of_text|>", 0),
            0u);
}

TEST(ChatTemplate, RolesMustAlternateWhereTheTemplateSaysSo) {
  const Msgs twice = {{"user", "a"}, {"user", "b"}};
  const Msgs assistant_first = {{"assistant", "x"}};
  for (ChatFamily f : {ChatFamily::Gemma, ChatFamily::Llama2}) {
    EXPECT_THROW(apply_chat_template(f, twice, true), Error);
    EXPECT_THROW(apply_chat_template(f, assistant_first, true), Error);
  }
  EXPECT_NO_THROW(apply_chat_template(ChatFamily::ChatML, twice, true));
  EXPECT_NO_THROW(apply_chat_template(ChatFamily::Llama3, twice, true));
}

TEST(ChatTemplate, NamesAndOverrides) {
  for (ChatFamily f :
       {ChatFamily::ChatML, ChatFamily::Gemma, ChatFamily::Llama2, ChatFamily::Llama3})
    EXPECT_EQ(chat_family_from_name(chat_family_name(f)), f);
  try {
    chat_family_from_name("vicuna");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("vicuna"), std::string::npos);
  }
  // The model's own template keeps its default system message; another family does not.
  EXPECT_EQ(resolve_chat_template("", kSmolLM2).default_system.empty(), false);
  EXPECT_EQ(resolve_chat_template("chatml", kSmolLM2).default_system.empty(), false);
  EXPECT_EQ(resolve_chat_template("gemma", kSmolLM2).family, ChatFamily::Gemma);
  EXPECT_EQ(resolve_chat_template("llama3", std::nullopt).family, ChatFamily::Llama3);
}

TEST(ChatTemplate, UnknownOrMissingTemplateSuggestsTheOption) {
  for (const std::optional<std::string_view> jinja :
       {std::optional<std::string_view>("{{ '<|user|>' + message['content'] }}"),
        std::optional<std::string_view>(), std::optional<std::string_view>("")}) {
    try {
      resolve_chat_template("", jinja);
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("--chat-template NAME"), std::string::npos) << e.what();
    }
  }
  try {
    chat_template_from_jinja("{{ '<|user|>' }}");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not one of the built-in families"), std::string::npos);
  }
}

TEST(ChatTemplate, EndOfTurnTexts) {
  EXPECT_EQ(end_of_turn_text(ChatFamily::ChatML), "<|im_end|>");
  EXPECT_EQ(end_of_turn_text(ChatFamily::Gemma), "<end_of_turn>");
  EXPECT_EQ(end_of_turn_text(ChatFamily::Llama3), "<|eot_id|>");
  EXPECT_EQ(end_of_turn_text(ChatFamily::Llama2), "</s>");
}

}  // namespace
}  // namespace kvs
