#pragma once
// llama.cpp's tokenizer test vectors: ggml-vocab-NAME.gguf.inp holds the strings, each
// followed by "\n__ggml_vocab_test__\n"; .out holds one line of ids per string
// (HF tokenizer.encode(text, add_special_tokens=False)).
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/paths.h"

namespace kvs::test {

struct VocabCase {
  std::string text;
  std::vector<int32_t> ids;
};

inline std::string slurp_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::string vocab_path(const std::string& name) {
  return shared_data("vocab/ggml-vocab-" + name + ".gguf");
}

// The vocabs with test vectors that kvsieve's tokenizers cover.
inline const std::vector<std::string>& supported_vocabs() {
  static const std::vector<std::string> v = {"llama-spm",    "phi-3",          "gpt-2",
                                             "deepseek-llm", "deepseek-coder", "falcon",
                                             "mpt",          "starcoder",      "refact"};
  return v;
}

inline std::vector<VocabCase> read_vocab_cases(const std::string& gguf) {
  const std::string inp = slurp_file(gguf + ".inp");
  const std::string out = slurp_file(gguf + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> texts;
  size_t pos = 0;
  while (true) {
    const size_t hit = inp.find(sep, pos);
    if (hit == std::string::npos) break;
    texts.push_back(inp.substr(pos, hit - pos));
    pos = hit + sep.size();
  }
  std::vector<VocabCase> cases;
  std::istringstream lines(out);
  std::string line;
  for (const auto& t : texts) {
    if (!std::getline(lines, line)) break;
    VocabCase c{t, {}};
    std::istringstream ids(line);
    int64_t id;
    while (ids >> id) c.ids.push_back(static_cast<int32_t>(id));
    cases.push_back(std::move(c));
  }
  return cases;
}

inline std::string format_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (const int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

}  // namespace kvs::test
