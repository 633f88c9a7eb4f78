// SPM / BPE / SentencePiece tokenizers on real vocabs: reference ids, special tokens,
// decoding, streaming, malformed input.
#include <gtest/gtest.h>
#include <sentencepiece_processor.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/bpe_tokenizer.h"
#include "models/tokenizers/spm_module.h"
#include "models/tokenizers/spm_tokenizer.h"
#include "models/tokenizers/tokenizer.h"
#include "models/tokenizers/utf8.h"
#include "tests/unit/tokenizers/vocab_cases.h"

namespace kvs {
namespace {

std::unique_ptr<Tokenizer> load(const std::string& path) {
  const auto ws = open_weights(path);
  return load_tokenizer(*ws);
}

TEST(SpmTokenizer, Stories260KMatchesSentencePieceLibrary) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const std::string sp_model = test::shared_data("models/tok512.model");
  KVS_REQUIRE_FILE(sp_model);
  const auto tok = load(KVS_STORIES);
  EXPECT_EQ(tok->kind(), "spm");
  sentencepiece::SentencePieceProcessor sp;
  ASSERT_TRUE(sp.Load(sp_model).ok());
  // tok512.model collapses runs of spaces (remove_extra_whitespaces), which llama.cpp's SPM
  // never does: compare on single-spaced text.
  std::istringstream words(test::slurp_file(test::shared_data("text/botchan.txt")).substr(0, 4000));
  std::string prose, w;
  while (words >> w) prose += (prose.empty() ? "" : " ") + w;
  for (const std::string& text :
       {std::string("Once upon a time"), std::string("Hello world\n\tx"),
        std::string("caf\xC3\xA9 \xF0\x9F\xA6\x99 na\xC3\xAFve"), prose}) {
    std::vector<int> want;
    ASSERT_TRUE(sp.Encode(text, &want).ok());
    want.insert(want.begin(), sp.bos_id());
    const auto got = tok->encode(text, true, false);
    EXPECT_EQ(got, std::vector<int32_t>(want.begin(), want.end())) << text.substr(0, 80);
  }
  const auto once = tok->encode("Once upon a time", true, false);
  ASSERT_GE(once.size(), 2u);
  EXPECT_EQ(once.front(), 1);
  EXPECT_EQ(tok->decode(once, false), "Once upon a time");
  EXPECT_EQ(tok->decode(once, true), "<s>Once upon a time");
}

TEST(SpmTokenizer, ByteFallbackAndLeadingSpace) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto tok = load(KVS_STORIES);
  // A 512-token vocab has no token for a llama: four <0xXX> byte tokens.
  const auto ids = tok->encode("\xF0\x9F\xA6\x99", false, false);
  std::string bytes;
  for (const int32_t id : ids) {
    const std::string p = tok->piece(id);
    if (p.rfind("<0x", 0) == 0) bytes += tok->token_text(id, false);
  }
  EXPECT_EQ(bytes, "\xF0\x9F\xA6\x99");
  // Without BOS the first token still carries the prefix space, and decode drops it.
  EXPECT_EQ(tok->decode(ids, false), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(tok->token_text(ids.front(), false), " ");
}

TEST(Tokenizer, InvalidUtf8IsRejected) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto spm = load(KVS_STORIES);
  const std::string gpt2 = test::vocab_path("gpt-2");
  KVS_REQUIRE_FILE(gpt2);
  const auto bpe = load(gpt2);
  for (const std::string& bad :
       {std::string("abc\xFF"), std::string("\xC0\xAF"), std::string("x\xED\xA0\x80y"),
        std::string("\xE2\x82"), std::string("\xF4\x90\x80\x80"), std::string("\x80")}) {
    EXPECT_THROW(spm->encode(bad, true, false), Error) << "spm";
    EXPECT_THROW(bpe->encode(bad, false, true), Error) << "bpe";
  }
  try {
    spm->encode("ok\xFF", false, false);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("invalid UTF-8 at byte 2"), std::string::npos) << e.what();
  }
}

TEST(StreamingDetokenizer, NeverEmitsPartialCharacters) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto tok = load(KVS_STORIES);
  const std::string text = "Hi \xF0\x9F\xA6\x99 caf\xC3\xA9 \xE2\x82\xAC!";
  const auto ids = tok->encode(text, true, false);
  StreamingDetokenizer stream(*tok);
  std::string all;
  size_t empty_pushes = 0;
  for (const int32_t id : ids) {
    const std::string chunk = stream.push(id);
    EXPECT_EQ(utf8::find_invalid(chunk), std::string::npos) << "partial UTF-8 emitted";
    if (chunk.empty()) ++empty_pushes;
    all += chunk;
  }
  all += stream.flush();
  EXPECT_EQ(all, text);
  EXPECT_EQ(all, tok->decode(ids, false));
  // The byte tokens of the llama and the euro sign wait for their last byte.
  EXPECT_GE(empty_pushes, 4u);
}

TEST(StreamingDetokenizer, FlushReplacesUnfinishedCharacter) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto tok = load(KVS_STORIES);
  const auto b0 = tok->find_token("<0xF0>");
  const auto b1 = tok->find_token("<0x9F>");
  const auto bad = tok->find_token("<0xFF>");
  ASSERT_TRUE(b0 && b1 && bad);
  StreamingDetokenizer stream(*tok);
  EXPECT_EQ(stream.push(*b0), "");
  EXPECT_EQ(stream.push(*b1), "");
  EXPECT_EQ(stream.flush(), "\xEF\xBF\xBD");
  // A byte that can never be part of a character is replaced at once.
  EXPECT_EQ(stream.push(*bad), "\xEF\xBF\xBD");
}

TEST(BpeTokenizer, SmolLM2SpecialTokens) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const auto tok = load(KVS_SMOLLM2);
  EXPECT_EQ(tok->kind(), "bpe");
  const auto im_start = tok->find_token("<|im_start|>");
  const auto im_end = tok->find_token("<|im_end|>");
  ASSERT_TRUE(im_start && im_end);
  EXPECT_TRUE(tok->is_control(*im_start));
  EXPECT_TRUE(tok->is_eog(*im_end));
  EXPECT_TRUE(tok->is_eog(tok->special().eos));
  EXPECT_FALSE(tok->is_eog(*im_start));

  const std::string text = "<|im_start|>user\nHi there<|im_end|>";
  const auto parsed = tok->encode(text, false, true);
  ASSERT_GE(parsed.size(), 3u);
  EXPECT_EQ(parsed.front(), *im_start);
  EXPECT_EQ(parsed.back(), *im_end);
  EXPECT_EQ(tok->decode(parsed, true), text);
  EXPECT_EQ(tok->decode(parsed, false), "user\nHi there");

  const auto plain = tok->encode(text, false, false);
  EXPECT_GT(plain.size(), parsed.size());
  for (const int32_t id : plain) EXPECT_FALSE(tok->is_control(id)) << id;
  EXPECT_EQ(tok->decode(plain, false), text);
}

TEST(BpeTokenizer, SmolLM2EncodesEightThousandTokensQuickly) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const auto tok = load(KVS_SMOLLM2);
  KVS_REQUIRE_FILE(test::shared_data("text/botchan.txt"));
  const std::string prose = test::slurp_file(test::shared_data("text/botchan.txt"));
  ASSERT_GT(prose.size(), 40000u);
  const std::string text = prose.substr(0, 36000);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, false, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_GT(ids.size(), 7000u);
  EXPECT_LT(s, 1.0) << ids.size() << " tokens took " << s << " s";
  EXPECT_EQ(tok->decode(ids, false), text);
}

// A hand-made vocab for error paths: "a", "b", "ab" and GPT-2's space "Ġ".
VocabSpec tiny_bpe() {
  VocabSpec s;
  s.source = "tiny.gguf";
  s.model = "gpt2";
  s.pre = "gpt-2";
  s.tokens = {"a",
              "b",
              "ab",
              "\xC4\xA0",
              "\xC4\xA0"
              "ab",
              "<|end|>"};
  s.types = {1, 1, 1, 1, 1, 3};
  s.merges = {"a b", "\xC4\xA0 ab"};
  return s;
}

TEST(BpeTokenizer, TinyVocabMergesByRank) {
  const BpeTokenizer tok(tiny_bpe());
  EXPECT_EQ(tok.encode("ab ab", false, false), (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(tok.encode("ab<|end|>", false, true), (std::vector<int32_t>{2, 5}));
  EXPECT_EQ(tok.decode(std::vector<int32_t>{2, 4}, false), "ab ab");
  EXPECT_TRUE(tok.is_eog(5));  // "<|end|>" is found by the vocab scan
}

VocabSpec letters_bpe(StringList tokens, StringList merges) {
  VocabSpec s;
  s.source = "letters.gguf";
  s.model = "gpt2";
  s.pre = "gpt-2";
  s.tokens = std::move(tokens);
  s.merges = std::move(merges);
  return s;
}

TEST(BpeTokenizer, MergeThroughTextOutsideTheVocab) {
  // "ab" is not a token: its merge is ranked by text, and "ab c" still yields "abc".
  const BpeTokenizer tok(letters_bpe({"a", "b", "c", "abc"}, {"a b", "ab c"}));
  EXPECT_EQ(tok.encode("abc", false, false), (std::vector<int32_t>{3}));
  EXPECT_EQ(tok.encode("cab", false, false), (std::vector<int32_t>{2, 0, 1}));
}

TEST(BpeTokenizer, FirstOfDuplicateMergesWins) {
  // "b c" at rank 0 and again at rank 2: rank 0 beats "a b" (rank 1).
  const BpeTokenizer tok(letters_bpe({"a", "b", "c", "ab", "bc"}, {"b c", "a b", "b c"}));
  EXPECT_EQ(tok.encode("abc", false, false), (std::vector<int32_t>{0, 4}));
  const BpeTokenizer later(letters_bpe({"a", "b", "c", "ab", "bc"}, {"a b", "b c"}));
  EXPECT_EQ(later.encode("abc", false, false), (std::vector<int32_t>{3, 2}));
}

TEST(Vocab, EmptyTokensAreRenamedAndLookupsMiss) {
  const BpeTokenizer tok(letters_bpe({"a", "", "b"}, {}));
  EXPECT_EQ(tok.vocab().text(1), "[EMPTY_1]");
  EXPECT_EQ(tok.vocab().find("[EMPTY_1]"), 1);
  EXPECT_EQ(tok.vocab().find("b"), 2);
  EXPECT_EQ(tok.vocab().find("zz"), -1);
  EXPECT_EQ(tok.vocab().find(""), -1);
}

TEST(SpmModule, LoadsFromTheBuildTree) {
  EXPECT_EQ(spm_module().version, kSpmModuleApiVersion);
}

TEST(SpmModule, MissingModuleIsAClearError) {
  // A fresh process: the module may already be loaded in this one.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        setenv("KVSIEVE_SPM_MODULE", "/nonexistent/libkvsieve_spm.so", 1);
        try {
          (void)spm_module();
        } catch (const Error& e) {
          std::fprintf(stderr, "%s\n", e.what());
          std::exit(3);
        }
        std::exit(0);
      },
      ::testing::ExitedWithCode(3), "cannot load the SentencePiece module.*nonexistent");
}

TEST(BpeTokenizer, UnknownPreTypeNamesKeyAndValue) {
  VocabSpec s = tiny_bpe();
  s.pre = "no-such-pre";
  try {
    BpeTokenizer tok(s);
    FAIL() << "unknown pre type accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("tokenizer.ggml.pre"), std::string::npos) << m;
    EXPECT_NE(m.find("no-such-pre"), std::string::npos) << m;
    EXPECT_NE(m.find("tiny.gguf"), std::string::npos) << m;
  }
}

TEST(Vocab, MalformedSpecsAreErrors) {
  {
    VocabSpec s = tiny_bpe();
    s.types.pop_back();
    EXPECT_THROW(BpeTokenizer{s}, Error);
  }
  {
    VocabSpec s = tiny_bpe();
    s.scores = {0.0f};
    EXPECT_THROW(BpeTokenizer{s}, Error);
  }
  {
    VocabSpec s = tiny_bpe();
    std::vector<std::string> t = s.tokens.to_vector();
    t[1] = "a";
    s.tokens = StringList(t);
    EXPECT_THROW(BpeTokenizer{s}, Error);  // duplicate
  }
  {
    VocabSpec s = tiny_bpe();
    s.bos = 6;
    EXPECT_THROW(BpeTokenizer{s}, Error);  // out of range
  }
  {
    VocabSpec s = tiny_bpe();
    s.add_bos = true;
    EXPECT_THROW(BpeTokenizer{s}, Error);  // no BOS to add
  }
  {
    VocabSpec s = tiny_bpe();
    s.model = "llama";
    s.types[0] = 6;  // BYTE but not <0xXX>
    EXPECT_THROW(SpmTokenizer{s}, Error);
  }
  {
    VocabSpec s = tiny_bpe();
    s.tokens = {};
    s.types.clear();
    EXPECT_THROW(BpeTokenizer{s}, Error);
  }
}

MetaValue strings(std::vector<std::string> v) {
  return MetaValue::of_array(MetaArray::of_strings(StringList(v)));
}

TEST(Vocab, GgufKeysAreValidated) {
  MetaMap m("bad.gguf");
  m.set("tokenizer.ggml.model", MetaValue::of_string("gpt2"));
  m.set("tokenizer.ggml.tokens", strings({"a", "b", "ab"}));
  m.set("tokenizer.ggml.merges", strings({"a b", "ab"}));
  try {
    (void)vocab_spec_from_gguf(m);
    FAIL() << "malformed merge accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tokenizer.ggml.merges"), std::string::npos) << msg;
  }
  m.set("tokenizer.ggml.merges", strings({"a b"}));
  m.set("tokenizer.ggml.token_type",
        MetaValue::of_array(MetaArray::of_ints({1, 1}, MetaType::I32)));
  EXPECT_THROW((void)vocab_spec_from_gguf(m), Error);  // 2 types for 3 tokens
  m.set("tokenizer.ggml.token_type",
        MetaValue::of_array(MetaArray::of_ints({1, 1, 1}, MetaType::I32)));
  m.set("tokenizer.ggml.bos_token_id", MetaValue::of_string("1"));
  EXPECT_THROW((void)vocab_spec_from_gguf(m), Error);  // wrong type
  m.set("tokenizer.ggml.bos_token_id", MetaValue::of_int(1, MetaType::U32));
  const VocabSpec s = vocab_spec_from_gguf(m);
  EXPECT_EQ(s.merges.size(), 1u);
  EXPECT_EQ(*s.bos, 1);
}

TEST(Vocab, UnsupportedModelIsNamed) {
  const std::string path = test::vocab_path("bert-bge");
  KVS_REQUIRE_FILE(path);
  try {
    (void)load(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvs
