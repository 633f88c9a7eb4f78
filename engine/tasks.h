#pragma once
// Long-context probes generated deterministically from a seed on real text: passkey
// retrieval (a 5-digit key hidden in filler) and needle-in-a-haystack (a named 7-digit
// number, RULER's niah_single). The context (with the needle) is what a cache plan
// compresses; the question is appended afterwards and the answer generated greedily.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "models/tokenizers/tokenizer.h"

namespace kvs {

// Filler text tokenized once; probes cut haystacks out of it.
class Haystack {
 public:
  // Throws kvs::Error when the text is too short to be useful (under 256 tokens).
  Haystack(const Tokenizer& tok, std::string_view text, std::string source);
  const std::vector<int32_t>& tokens() const { return tokens_; }  // [n] text without BOS
  // Token indices after which a new sentence starts (the token ends with . ! or ?).
  const std::vector<int64_t>& sentence_starts() const { return sentence_starts_; }
  const std::string& source() const { return source_; }

 private:
  std::vector<int32_t> tokens_;
  std::vector<int64_t> sentence_starts_;
  std::string source_;
};

struct ProbeSpec {
  std::string kind = "passkey";  // "passkey" or "niah"
  int64_t length = 1024;         // tokens of context (BOS, instruction, filler, needle)
  double depth = 0.5;            // where the needle starts, as a fraction of the filler
  uint64_t seed = 0;             // picks the key, the needle's name and the filler offset
};

struct Probe {
  ProbeSpec spec;
  std::vector<int32_t> context;   // [length] BOS + instruction + filler with the needle
  std::vector<int32_t> question;  // [q] appended after the context is compressed
  std::string answer;             // the digits a correct answer starts with
  int64_t needle_begin = 0;       // [needle_begin, needle_end): the needle in `context`
  int64_t needle_end = 0;
  int64_t value_begin = 0;  // [value_begin, value_end): tokens of the first copy of the
  int64_t value_end = 0;    // answer's digits inside the needle
};

// Throws kvs::Error when the length cannot hold the instruction and the needle, or the
// depth is outside [0, 1].
Probe make_probe(const Tokenizer& tok, const Haystack& hay, const ProbeSpec& spec);

// Exact match: the first run of digits in `generated` equals `expected`.
bool score_answer(std::string_view expected, std::string_view generated);

}  // namespace kvs
