#include "models/tokenizers/bpe_tokenizer.h"

#include <cstring>
#include <queue>
#include <string>

#include "kernels/core/error.h"
#include "models/tokenizers/utf8.h"

namespace kvs {

namespace {

void pair_key(std::string& key, std::string_view left, std::string_view right) {
  const auto n = static_cast<uint32_t>(left.size());
  key.resize(4);
  std::memcpy(key.data(), &n, 4);
  key.append(left);
  key.append(right);
}

struct Symbol {
  int prev, next;
  size_t off, n;  // n == 0 once merged into the left neighbour
};

struct Bigram {
  int left, right;
  int32_t rank;
  size_t left_n, right_n;  // sizes when queued, to detect stale pairs
};

// Lowest rank first; among equal ranks the leftmost pair.
struct BigramGreater {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.rank > b.rank || (a.rank == b.rank && a.left > b.left);
  }
};

}  // namespace

BpeTokenizer::BpeTokenizer(const VocabSpec& spec) {
  if (spec.regexes) {
    // An HF pre-tokenizer: a known pre type when the patterns match one, else run as given.
    if (auto known = match_pre_tokenizer(*spec.regexes)) {
      pre_ = *known;
    } else {
      pre_.name = "custom";
      pre_.regexes = *spec.regexes;
    }
    if (!spec.pre.empty()) pre_.name = spec.pre;
  } else {
    auto known = find_pre_tokenizer(spec.pre);
    if (!known)
      throw Error(spec.source + ": tokenizer.ggml.pre: unsupported pre-tokenizer type '" +
                  spec.pre + "'");
    pre_ = *known;
  }
  if (spec.ignore_merges) pre_.ignore_merges = *spec.ignore_merges;
  if (spec.clean_spaces) pre_.clean_spaces = *spec.clean_spaces;
  splitter_ = std::make_unique<RegexSplitter>(pre_.regexes, spec.source);

  SpecialDefaults d;
  d.add_bos = pre_.add_bos;
  init_vocab(spec, d);
  add_space_prefix_ = false;
  clean_spaces_ = pre_.clean_spaces;
  byte_level_ = true;
  ignore_merges_ = pre_.ignore_merges;

  merges_ = spec.merges;
  ranks_.reserve(merges_.size());
  std::string key;
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto& [l, r] = merges_[i];
    if (l.empty() || r.empty())
      throw Error(spec.source + ": tokenizer.ggml.merges: entry " + std::to_string(i) +
                  " has an empty side");
    pair_key(key, l, r);
    ranks_.emplace(key, static_cast<int32_t>(i));  // the first of duplicate merges wins
  }
}

int32_t BpeTokenizer::rank(std::string_view left, std::string_view right) const {
  thread_local std::string key;
  pair_key(key, left, right);
  const auto it = ranks_.find(key);
  return it == ranks_.end() ? -1 : it->second;
}

void BpeTokenizer::encode_text(std::string_view text, bool /*after_special*/,
                               std::vector<int32_t>& out) const {
  const auto& enc = utf8::byte_to_unicode();
  std::string word;
  for (const auto& [begin, end] : splitter_->split(text)) {
    word.clear();
    for (size_t i = begin; i < end; ++i) word += enc[static_cast<uint8_t>(text[i])];
    encode_word(word, out);
  }
}

void BpeTokenizer::encode_word(const std::string& word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const int32_t id = vocab_.find(word);
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  std::vector<Symbol> symbols;
  symbols.reserve(word.size() / 2 + 1);
  for (size_t off = 0; off < word.size();) {
    const size_t n =
        std::min(utf8::seq_len(static_cast<unsigned char>(word[off])), word.size() - off);
    const int idx = static_cast<int>(symbols.size());
    symbols.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n});
    off += n;
  }
  auto view = [&](const Symbol& s) { return std::string_view(word.data() + s.off, s.n); };

  std::priority_queue<Bigram, std::vector<Bigram>, BigramGreater> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const int32_t r = rank(view(symbols[left]), view(symbols[right]));
    if (r < 0) return;
    queue.push({left, right, r, symbols[left].n, symbols[right].n});
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[b.left];
    Symbol& r = symbols[b.right];
    if (l.n != b.left_n || r.n != b.right_n || l.next != b.right) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int i = 0; i != -1; i = symbols[i].next) {
    const std::string_view s = view(symbols[i]);
    const int32_t id = vocab_.find(s);
    if (id >= 0) {
      out.push_back(id);
      continue;
    }
    // A merge produced text outside the vocab (a malformed vocab): fall back to the
    // byte characters, or the unknown token.
    for (size_t pos = 0; pos < s.size();) {
      const size_t n = std::min(utf8::seq_len(static_cast<unsigned char>(s[pos])), s.size() - pos);
      const int32_t c = vocab_.find(s.substr(pos, n));
      if (c >= 0)
        out.push_back(c);
      else if (special_.unk >= 0)
        out.push_back(special_.unk);
      pos += n;
    }
  }
}

}  // namespace kvs
