// export_hf_tokenizer: the exported tokenizer.json / tokenizer.model must load back through
// the HF loaders and give the same ids and special tokens as the GGUF tokenizer.
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/hf_tokenizer.h"
#include "models/tokenizers/tokenizer.h"
#include "models/tokenizers/tokenizer_export.h"
#include "tests/support/temp_dir.h"
#include "tests/unit/tokenizers/vocab_cases.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

// Texts every tokenizer pair must agree on: the llama.cpp vectors, special-token text and a
// slice of real prose.
std::vector<std::string> probe_texts(const Tokenizer& tok) {
  std::vector<std::string> texts;
  for (const auto& c : test::read_vocab_cases(test::vocab_path("gpt-2"))) texts.push_back(c.text);
  std::string specials = "Hello";
  for (const int32_t id : {tok.special().bos, tok.special().eos, tok.special().eot}) {
    if (id < 0) continue;
    specials += tok.piece(id) + " world\n";
  }
  texts.push_back(specials);
  const std::string prose = test::slurp_file(test::shared_data("text/botchan.txt"));
  texts.push_back(prose.substr(0, std::min<size_t>(prose.size(), 20000)));
  return texts;
}

void expect_same_tokenizer(const Tokenizer& a, const Tokenizer& b, const std::string& what) {
  EXPECT_EQ(a.n_vocab(), b.n_vocab()) << what;
  EXPECT_EQ(a.special().bos, b.special().bos) << what;
  EXPECT_EQ(a.special().eos, b.special().eos) << what;
  EXPECT_EQ(a.special().unk, b.special().unk) << what;
  EXPECT_EQ(a.special().pad, b.special().pad) << what;
  EXPECT_EQ(a.special().add_bos, b.special().add_bos) << what;
  EXPECT_EQ(a.special().add_eos, b.special().add_eos) << what;
  EXPECT_EQ(a.special().eog, b.special().eog) << what;
  EXPECT_EQ(a.add_space_prefix(), b.add_space_prefix()) << what;
  EXPECT_EQ(a.chat_template(), b.chat_template()) << what;
  size_t bad = 0;
  std::string first;
  for (const auto& t : probe_texts(a)) {
    for (const bool parse_special : {false, true}) {
      const auto ia = a.encode(t, true, parse_special);
      const auto ib = b.encode(t, true, parse_special);
      if (ia == ib) continue;
      if (bad++ == 0) {
        std::ostringstream m;
        m << "text '" << t.substr(0, 200) << "' parse_special=" << parse_special
          << "\n  gguf:" << test::format_ids(ia) << "\n  hf:  " << test::format_ids(ib);
        first = m.str();
      }
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": first difference:\n" << first;
  // Rendering must agree too (the converted model decodes what the GGUF one did).
  for (int32_t id = 0; id < a.n_vocab(); id += std::max(1, a.n_vocab() / 2000)) {
    ASSERT_EQ(a.token_text(id, true), b.token_text(id, true)) << what << " id " << id;
    ASSERT_EQ(a.token_text(id, false), b.token_text(id, false)) << what << " id " << id;
  }
}

void check_round_trip(const std::string& gguf, const char* expect_file) {
  KVS_REQUIRE_FILE(gguf);
  const auto ws = open_weights(gguf);
  const auto tok = load_tokenizer(*ws);
  TempDir dir;
  export_hf_tokenizer(*ws, dir.path());
  EXPECT_TRUE(fs::exists(dir / expect_file));
  EXPECT_TRUE(fs::exists(dir / "tokenizer_config.json"));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_NE(e.path().filename().string()[0], '.') << "temporary file left: " << e.path();
  const auto hf = load_hf_tokenizer(dir.path(), MetaMap(dir.path()));
  EXPECT_EQ(hf->kind(), std::string(tok->kind() == "spm" ? "sentencepiece" : "bpe"));
  expect_same_tokenizer(*tok, *hf, gguf);
  // The llama.cpp vectors of this vocab, when it has them, through the exported files.
  if (test::exists(gguf + ".inp")) {
    for (const auto& c : test::read_vocab_cases(gguf))
      EXPECT_EQ(hf->encode(c.text, false, false), c.ids) << gguf << ": '" << c.text << "'";
  }
}

class ExportVocab : public ::testing::TestWithParam<std::string> {};

TEST_P(ExportVocab, RoundTripsThroughHfFiles) {
  const std::string path = test::vocab_path(GetParam());
  KVS_REQUIRE_FILE(path);
  const auto ws = open_weights(path);
  const bool spm = ws->metadata().get_string("tokenizer.ggml.model") == "llama";
  check_round_trip(path, spm ? "tokenizer.model" : "tokenizer.json");
}

INSTANTIATE_TEST_SUITE_P(Vocabs, ExportVocab, ::testing::ValuesIn(test::supported_vocabs()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(ExportTokenizer, Stories260K) {
  check_round_trip(KVS_STORIES, "tokenizer.model");
}
TEST(ExportTokenizer, SmolLM2) {
  check_round_trip(KVS_SMOLLM2, "tokenizer.json");
}
TEST(ExportTokenizer, Gemma3) {
  check_round_trip(KVS_GEMMA3, "tokenizer.model");
}

TEST(ExportTokenizer, RejectsUnsupportedVocab) {
  const std::string path = test::vocab_path("bert-bge");
  KVS_REQUIRE_FILE(path);
  const auto ws = open_weights(path);
  TempDir dir;
  EXPECT_THROW(export_hf_tokenizer(*ws, dir.path()), Error);
}

}  // namespace
}  // namespace kvs
