#include "engine/tasks.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <string>

#include "kernels/core/error.h"

namespace kvs {
namespace {

// splitmix64: a fixed, portable stream (std distributions differ between libraries).
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
};

// Needle names for niah (RULER draws words; a fixed list keeps probes reproducible).
constexpr std::array<const char*, 32> kNames = {
    "Amsterdam", "Barcelona", "Cairo",    "Dublin",  "Edinburgh", "Florence", "Geneva", "Havana",
    "Istanbul",  "Jakarta",   "Kyoto",    "Lisbon",  "Madrid",    "Nairobi",  "Oslo",   "Prague",
    "Quito",     "Reykjavik", "Santiago", "Toronto", "Utrecht",   "Valencia", "Warsaw", "Yokohama",
    "Zurich",    "Bergen",    "Chicago",  "Denver",  "Helsinki",  "Lima",     "Munich", "Seville"};

bool ends_sentence(const std::string& s) {
  size_t n = s.size();
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '"' || s[n - 1] == '\'')) --n;
  return n > 0 && (s[n - 1] == '.' || s[n - 1] == '!' || s[n - 1] == '?');
}

struct Texts {
  std::string instruction, needle, question, answer;
  size_t value_offset = 0;  // first byte of the answer's digits in `needle`
};

Texts probe_texts(const ProbeSpec& spec, Rng& rng) {
  Texts t;
  if (spec.kind == "passkey") {
    t.answer = std::to_string(10000 + rng.below(90000));
    t.instruction =
        "There is an important info hidden inside a lot of irrelevant text. Find it and "
        "memorize it. I will quiz you about the important information there.\n";
    const std::string pre = " The pass key is ";
    t.needle = pre + t.answer + ". Remember it. " + t.answer + " is the pass key. ";
    t.value_offset = pre.size();
    t.question = "\nWhat is the pass key? The pass key is";
  } else if (spec.kind == "niah") {
    t.answer = std::to_string(1000000 + rng.below(9000000));
    const std::string name = kNames[rng.below(kNames.size())];
    t.instruction =
        "Some special magic numbers are hidden within the following text. Make sure to "
        "memorize them. I will quiz you about the numbers afterwards.\n";
    const std::string pre = " One of the special magic numbers for " + name + " is: ";
    t.needle = pre + t.answer + ". ";
    t.value_offset = pre.size();
    t.question = "\nWhat is the special magic number for " + name +
                 " mentioned in the provided text? The special magic number for " + name +
                 " mentioned in the provided text is";
  } else {
    throw Error("unknown probe kind '" + spec.kind + "' (passkey, niah)");
  }
  return t;
}

}  // namespace

Haystack::Haystack(const Tokenizer& tok, std::string_view text, std::string source)
    : source_(std::move(source)) {
  tokens_ = tok.encode(text, false, false);
  if (tokens_.size() < 256)
    throw Error(source_ + ": " + std::to_string(tokens_.size()) +
                " tokens of filler text; a haystack needs at least 256");
  for (size_t i = 0; i + 1 < tokens_.size(); ++i)
    if (ends_sentence(tok.token_text(tokens_[i], false)))
      sentence_starts_.push_back(static_cast<int64_t>(i + 1));
}

Probe make_probe(const Tokenizer& tok, const Haystack& hay, const ProbeSpec& spec) {
  if (!(spec.depth >= 0.0 && spec.depth <= 1.0))
    throw Error("probe depth " + std::to_string(spec.depth) + " is outside [0, 1]");
  Rng rng{spec.seed * 0x2545F4914F6CDD1Dull + (spec.kind == "niah" ? 7 : 3)};
  const Texts t = probe_texts(spec, rng);
  Probe p;
  p.spec = spec;
  p.answer = t.answer;
  const std::vector<int32_t> instr = tok.encode(t.instruction, true, false);
  const std::vector<int32_t> needle = tok.encode(t.needle, false, false);
  p.question = tok.encode(t.question, false, false);
  const int64_t n_fill = spec.length - static_cast<int64_t>(instr.size() + needle.size());
  if (n_fill < 16)
    throw Error("probe length " + std::to_string(spec.length) + " cannot hold the " +
                std::to_string(instr.size() + needle.size()) +
                "-token instruction and needle with filler around them");

  // Filler: a sentence-aligned slice of the haystack at a seeded offset, wrapping around.
  const auto& ht = hay.tokens();
  const auto& starts = hay.sentence_starts();
  const int64_t hn = static_cast<int64_t>(ht.size());
  int64_t begin = static_cast<int64_t>(rng.below(static_cast<uint64_t>(hn)));
  if (!starts.empty()) {
    auto it = std::lower_bound(starts.begin(), starts.end(), begin);
    begin = it == starts.end() ? starts.front() : *it;
  }
  std::vector<int32_t> fill(static_cast<size_t>(n_fill));                 // [n_fill]
  std::vector<bool> fill_starts(static_cast<size_t>(n_fill) + 1, false);  // [n_fill + 1]
  for (int64_t i = 0; i < n_fill; ++i) {
    const int64_t h = (begin + i) % hn;
    fill[i] = ht[h];
    if (h == 0 || std::binary_search(starts.begin(), starts.end(), h)) fill_starts[i] = true;
  }
  fill_starts[n_fill] = true;

  // The needle goes at the sentence start nearest the requested depth (within 48 tokens).
  const int64_t target = std::llround(spec.depth * static_cast<double>(n_fill));
  int64_t at = target;
  for (int64_t d = 0; d <= 48; ++d) {
    if (target - d >= 0 && fill_starts[target - d]) {
      at = target - d;
      break;
    }
    if (target + d <= n_fill && fill_starts[target + d]) {
      at = target + d;
      break;
    }
  }

  p.context = instr;
  p.context.insert(p.context.end(), fill.begin(), fill.begin() + at);
  p.needle_begin = static_cast<int64_t>(p.context.size());
  p.context.insert(p.context.end(), needle.begin(), needle.end());
  p.needle_end = static_cast<int64_t>(p.context.size());
  p.context.insert(p.context.end(), fill.begin() + at, fill.end());

  // Token span of the first copy of the value: byte ranges of the needle's tokens (an SPM
  // space prefix may add a leading byte, removed by the shift).
  std::string joined;
  std::vector<size_t> ends;  // [needle tokens] byte end of each token in `joined`
  for (int32_t id : needle) {
    joined += tok.token_text(id, false);
    ends.push_back(joined.size());
  }
  const size_t shift = joined.size() >= t.needle.size() ? joined.size() - t.needle.size() : 0;
  const size_t v0 = t.value_offset + shift, v1 = v0 + t.answer.size();
  int64_t first = -1, last = -1;
  size_t prev = 0;
  for (size_t i = 0; i < needle.size(); ++i) {
    if (ends[i] > v0 && prev < v1) {
      if (first < 0) first = static_cast<int64_t>(i);
      last = static_cast<int64_t>(i);
    }
    prev = ends[i];
  }
  if (first < 0) throw Error("probe needle: the answer's tokens were not found");
  p.value_begin = p.needle_begin + first;
  p.value_end = p.needle_begin + last + 1;
  return p;
}

bool score_answer(std::string_view expected, std::string_view generated) {
  size_t i = 0;
  while (i < generated.size() && !(generated[i] >= '0' && generated[i] <= '9')) ++i;
  size_t j = i;
  while (j < generated.size() && generated[j] >= '0' && generated[j] <= '9') ++j;
  return j > i && generated.substr(i, j - i) == expected;
}

}  // namespace kvs
