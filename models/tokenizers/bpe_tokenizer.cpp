#include "models/tokenizers/bpe_tokenizer.h"

#include <algorithm>
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
  int32_t id;     // vocab id of the text, -1 when it is not a token
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

  build_ranks(spec);
}

void BpeTokenizer::build_ranks(const VocabSpec& spec) {
  merges_ = spec.merges;
  struct Entry {
    int32_t left, right, rank;
  };
  std::vector<Entry> entries;  // [merges of two tokens]
  entries.reserve(merges_.size());
  std::string key;
  for (size_t i = 0; i < merges_.size(); ++i) {
    const auto sides = split_merge(merges_[i]);
    if (!sides)
      throw Error(spec.source + ": tokenizer.ggml.merges: entry " + std::to_string(i) +
                  " is not \"left right\"");
    const auto [l, r] = *sides;
    const auto rank = static_cast<int32_t>(i);
    const int32_t li = vocab_.find(l), ri = vocab_.find(r);
    if (li >= 0 && ri >= 0) {
      entries.push_back({li, ri, rank});
    } else {
      pair_key(key, l, r);
      text_ranks_.emplace(key, rank);  // the first of duplicate merges wins
    }
  }
  // By (left, right), the lowest rank first: the first of duplicate merges wins.
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.left != b.left     ? a.left < b.left
           : a.right != b.right ? a.right < b.right
                                : a.rank < b.rank;
  });
  entries.erase(std::unique(entries.begin(), entries.end(),
                            [](const Entry& a, const Entry& b) {
                              return a.left == b.left && a.right == b.right;
                            }),
                entries.end());
  const auto n_vocab = static_cast<size_t>(vocab_.size());
  rank_begin_.assign(n_vocab + 1, 0);
  for (const Entry& e : entries) ++rank_begin_[static_cast<size_t>(e.left) + 1];
  for (size_t i = 0; i < n_vocab; ++i) rank_begin_[i + 1] += rank_begin_[i];
  rank_right_.resize(entries.size());
  rank_value_.resize(entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    rank_right_[i] = entries[i].right;
    rank_value_[i] = entries[i].rank;
  }
}

int32_t BpeTokenizer::rank(int32_t left_id, int32_t right_id, std::string_view left,
                           std::string_view right) const {
  if (left_id >= 0 && right_id >= 0) {
    const auto l = static_cast<size_t>(left_id);
    const auto begin = rank_right_.begin() + rank_begin_[l];
    const auto end = rank_right_.begin() + rank_begin_[l + 1];
    const auto it = std::lower_bound(begin, end, right_id);
    return it != end && *it == right_id ? rank_value_[static_cast<size_t>(it - rank_right_.begin())]
                                        : -1;
  }
  if (text_ranks_.empty()) return -1;
  thread_local std::string key;
  pair_key(key, left, right);
  const auto it = text_ranks_.find(key);
  return it == text_ranks_.end() ? -1 : it->second;
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
    const int32_t id = vocab_.find(std::string_view(word).substr(off, n));
    symbols.push_back({idx - 1, off + n == word.size() ? -1 : idx + 1, off, n, id});
    off += n;
  }
  auto view = [&](const Symbol& s) { return std::string_view(word.data() + s.off, s.n); };

  std::priority_queue<Bigram, std::vector<Bigram>, BigramGreater> queue;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r_sym = symbols[right];
    const int32_t r = rank(l.id, r_sym.id, view(l), view(r_sym));
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
    l.id = vocab_.find(view(l));
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  for (int i = 0; i != -1; i = symbols[i].next) {
    const std::string_view s = view(symbols[i]);
    if (symbols[i].id >= 0) {
      out.push_back(symbols[i].id);
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
