// Every ggml-vocab-*.gguf with test vectors: encode(text, add_special=false,
// parse_special=false) must equal the HF ids exactly (llama.cpp's test-tokenizer-0).
#include <gtest/gtest.h>

#include <sstream>

#include "kernels/core/error.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/tokenizer.h"
#include "tests/unit/tokenizers/vocab_cases.h"

namespace kvs {
namespace {

class VocabConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(VocabConformance, MatchesReferenceIds) {
  const std::string path = test::vocab_path(GetParam());
  KVS_REQUIRE_FILE(path);
  KVS_REQUIRE_FILE(path + ".inp");
  const auto cases = test::read_vocab_cases(path);
  ASSERT_GE(cases.size(), 30u) << "test vectors not parsed: " << path;
  const auto ws = open_weights(path);
  const auto tok = load_tokenizer(*ws);
  size_t bad = 0;
  std::string first;
  for (const auto& c : cases) {
    const auto got = tok->encode(c.text, false, false);
    if (got == c.ids) continue;
    if (bad++ == 0) {
      std::ostringstream m;
      m << "text '" << c.text << "'\n  want:" << test::format_ids(c.ids)
        << "\n  got: " << test::format_ids(got);
      first = m.str();
    }
  }
  std::printf("[ conformance ] %s: %zu/%zu cases match\n", GetParam().c_str(), cases.size() - bad,
              cases.size());
  EXPECT_EQ(bad, 0u) << bad << " of " << cases.size() << " cases differ; first:\n" << first;
}

INSTANTIATE_TEST_SUITE_P(Vocabs, VocabConformance, ::testing::ValuesIn(test::supported_vocabs()),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n)
                             if (c == '-') c = '_';
                           return n;
                         });

TEST(VocabConformance, WordPieceVocabIsReportedUnsupported) {
  const std::string path = test::vocab_path("bert-bge");
  KVS_REQUIRE_FILE(path);
  // bert-bge is a WordPiece (BERT) vocab, which kvsieve does not implement: loading must
  // fail with a clear error rather than tokenize wrongly.
  const auto ws = open_weights(path);
  try {
    (void)load_tokenizer(*ws);
    FAIL() << "a WordPiece vocab must be rejected";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bert"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace kvs
