// HF directories: tokenizer.json (both merge spellings, added tokens, pre-tokenizer
// detection), tokenizer_config.json, tokenizer.model through the SentencePiece library.
#include <gtest/gtest.h>

#include <filesystem>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/bpe_tokenizer.h"
#include "models/tokenizers/hf_tokenizer.h"
#include "models/tokenizers/sp_model_proto.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/tokenizers/vocab_cases.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

// "Ġ" is GPT-2's space. merges: a+b, then Ġ+ab.
std::string tiny_tokenizer_json(const std::string& merges, const std::string& pre) {
  return R"({"version": "1.0", "added_tokens": [
      {"id": 6, "content": "<|end|>", "special": true, "lstrip": false, "rstrip": false},
      {"id": 7, "content": "[X]", "special": false, "lstrip": false, "rstrip": true}],
    "normalizer": null, "pre_tokenizer": )" +
         pre + R"(, "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "dropout": null, "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3,
      "\u0120ab": 4, "1": 5, "<|end|>": 6, "[X]": 7}, "merges": )" +
         merges + "}}";
}

constexpr const char* kByteLevel =
    R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})";

std::unique_ptr<Tokenizer> load_dir(const TempDir& d) {
  return load_hf_tokenizer(d.path(), MetaMap(d.path()));
}

TEST(HfTokenizerJson, StringAndArrayMergesAgree) {
  TempDir a, b;
  a.write("tokenizer.json", tiny_tokenizer_json(R"(["a b", "\u0120 ab"])", kByteLevel));
  b.write("tokenizer.json", tiny_tokenizer_json(R"([["a", "b"], ["\u0120", "ab"]])", kByteLevel));
  const auto ta = load_dir(a), tb = load_dir(b);
  const std::vector<int32_t> want = {2, 4, 6, 4};
  EXPECT_EQ(ta->encode("ab ab<|end|> ab", false, true), want);
  EXPECT_EQ(tb->encode("ab ab<|end|> ab", false, true), want);
  EXPECT_TRUE(ta->is_control(6));
  EXPECT_FALSE(ta->is_control(7));
  // A user-defined token is split even without parse_special; rstrip eats the space.
  EXPECT_EQ(ta->encode("ab[X] ab", false, false), (std::vector<int32_t>{2, 7, 2}));
  EXPECT_EQ(dynamic_cast<const BpeTokenizer&>(*ta).pre_tokenizer().name, "gpt-2");
}

TEST(HfTokenizerJson, ConfigSetsSpecialTokens) {
  TempDir d;
  d.write("tokenizer.json", tiny_tokenizer_json(R"(["a b", "\u0120 ab"])", kByteLevel));
  d.write("tokenizer_config.json", R"({"bos_token": {"content": "<|end|>"}, "eos_token": "<|end|>",
      "add_bos_token": true, "chat_template": "{{ messages }}"})");
  const auto t = load_dir(d);
  EXPECT_EQ(t->special().bos, 6);
  EXPECT_EQ(t->encode("ab", true, false), (std::vector<int32_t>{6, 2}));
  EXPECT_EQ(t->chat_template(), "{{ messages }}");
  EXPECT_TRUE(t->is_eog(6));

  d.write("tokenizer_config.json", R"({"bos_token": "<|nope|>"})");
  try {
    (void)load_dir(d);
    FAIL();
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tokenizer_config.json"), std::string::npos) << m;
    EXPECT_NE(m.find("bos_token"), std::string::npos) << m;
  }
}

TEST(HfTokenizerJson, PreTokenizerDetection) {
  TempDir d;
  // SmolLM2's pipeline: individual digits, then GPT-2's ByteLevel regex.
  d.write("tokenizer.json",
          tiny_tokenizer_json(R"(["a b", "\u0120 ab"])",
                              std::string(R"({"type": "Sequence", "pretokenizers": [
                                  {"type": "Digits", "individual_digits": true}, )") +
                                  kByteLevel + "]}"));
  EXPECT_EQ(dynamic_cast<const BpeTokenizer&>(*load_dir(d)).pre_tokenizer().name, "smollm");
  // An explicit regex that is no known pre type runs as given.
  d.write("tokenizer.json",
          tiny_tokenizer_json(R"(["a b"])", R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": "b"}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})"));
  const auto t = load_dir(d);
  EXPECT_EQ(dynamic_cast<const BpeTokenizer&>(*t).pre_tokenizer().name, "custom");
  EXPECT_EQ(t->encode("abab", false, false), (std::vector<int32_t>{0, 1, 0, 1}));
}

TEST(HfTokenizerJson, MalformedFilesAreErrors) {
  TempDir d;
  d.write("tokenizer.json", "{not json");
  EXPECT_THROW((void)load_dir(d), Error);
  d.write("tokenizer.json", tiny_tokenizer_json(R"(["ab"])", kByteLevel));
  EXPECT_THROW((void)load_dir(d), Error);  // merge without a space
  d.write("tokenizer.json", tiny_tokenizer_json(R"([["a", 3]])", kByteLevel));
  EXPECT_THROW((void)load_dir(d), Error);
  d.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 5}, "merges": []},
      "pre_tokenizer": {"type": "ByteLevel"}})");
  EXPECT_THROW((void)load_dir(d), Error);  // ids 1..4 missing
  d.write("tokenizer.json", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
      "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581"}})");
  try {
    (void)load_dir(d);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.model"), std::string::npos) << e.what();
  }
  TempDir empty;
  EXPECT_THROW((void)load_dir(empty), Error);
}

TEST(HfSentencePiece, TokenizerModelMatchesGguf) {
  const std::string model = test::shared_data("models/tok512.model");
  KVS_REQUIRE_FILE(model);
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir d;
  fs::copy_file(model, d / "tokenizer.model");
  const auto sp = load_dir(d);
  EXPECT_EQ(sp->kind(), "sentencepiece");
  EXPECT_EQ(sp->n_vocab(), 512);
  EXPECT_TRUE(sp->add_space_prefix());
  const auto ws = open_weights(KVS_STORIES);
  const auto gguf = load_tokenizer(*ws);
  EXPECT_EQ(sp->special().bos, gguf->special().bos);
  EXPECT_EQ(sp->special().eos, gguf->special().eos);
  for (const std::string& text :
       {std::string("Once upon a time"), std::string("</s>The end.</s>")}) {
    EXPECT_EQ(sp->encode(text, true, true), gguf->encode(text, true, true)) << text;
    EXPECT_EQ(sp->encode(text, true, false), gguf->encode(text, true, false)) << text;
  }
  EXPECT_EQ(sp->decode(sp->encode("Once upon a time", true, false), false), "Once upon a time");
}

TEST(SpModelProto, RoundTripsAndRejectsGarbage) {
  SpModelProto m;
  m.pieces = {{"<unk>", 0.0f, 2},
              {"<s>", 0.0f, 3},
              {"\xE2\x96\x81"
               "a",
               -1.5f, 1}};
  m.model_type = 2;
  m.vocab_size = 3;
  m.pad_id = -1;
  m.add_dummy_prefix = false;
  m.normalizer_name = "identity";
  const std::string bytes = serialize_sp_model(m);
  const SpModelProto r = parse_sp_model(bytes, "mem");
  ASSERT_EQ(r.pieces.size(), 3u);
  EXPECT_EQ(r.pieces[2].piece,
            "\xE2\x96\x81"
            "a");
  EXPECT_FLOAT_EQ(r.pieces[2].score, -1.5f);
  EXPECT_EQ(r.pieces[1].type, 3);
  EXPECT_EQ(r.model_type, 2);
  EXPECT_EQ(r.pad_id, -1);
  EXPECT_FALSE(r.add_dummy_prefix);
  EXPECT_EQ(r.normalizer_name, "identity");
  EXPECT_THROW(parse_sp_model(bytes.substr(0, bytes.size() - 3), "mem"), Error);
  EXPECT_THROW(parse_sp_model("\x0A\xFF\xFF\xFF\xFF\x0F", "mem"), Error);
  EXPECT_THROW(parse_sp_model("", "mem"), Error);
}

// Found by fuzz_spm_vocab: SentencePiece's trie builder throws its own exception (and the
// process aborted) on a piece holding a NUL byte. It must be a kvs::Error naming the piece.
TEST(HfSentencePiece, NulInAPieceIsAnError) {
  SpModelProto m;
  m.pieces = {{"<unk>", 0.0f, 2}, {"<s>", 0.0f, 3}, {std::string("a\0b", 3), -1.0f, 1}};
  m.model_type = 1;
  m.vocab_size = 3;
  TempDir d;
  d.write("tokenizer.model", serialize_sp_model(m));
  try {
    (void)load_dir(d);
    FAIL() << "a NUL byte in a piece must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("piece 2 contains a NUL byte"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kvs
