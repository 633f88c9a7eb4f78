#include "models/tokenizers/spm_tokenizer.h"

#include <algorithm>
#include <queue>
#include <string>
#include <unordered_map>

#include "kernels/core/error.h"
#include "models/tokenizers/utf8.h"

namespace kvs {

namespace {

using RevMerge = std::unordered_map<std::string, std::pair<std::string, std::string>>;

struct Symbol {
  int prev, next;
  size_t off, n;  // bytes of the escaped text; n == 0 once merged into the left neighbour
};

struct Bigram {
  int left, right;
  float score;
  size_t size;
};

// Highest score first; among equal scores the leftmost pair.
struct BigramLess {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

// Emits the ids of one final symbol: its token, else the halves it was merged from, else
// byte tokens.
void resegment(const Vocab& vocab, int32_t unk, const RevMerge& rev_merge, std::string_view sym,
               std::vector<int32_t>& out) {
  const int32_t id = vocab.find(sym);
  if (id >= 0) {
    out.push_back(id);
    return;
  }
  // Both halves are strictly shorter, so the recursion ends.
  if (const auto it = rev_merge.find(std::string(sym)); it != rev_merge.end()) {
    resegment(vocab, unk, rev_merge, it->second.first, out);
    resegment(vocab, unk, rev_merge, it->second.second, out);
    return;
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char c : sym) {
    const auto byte = static_cast<uint8_t>(c);
    const int32_t b = vocab.byte_token(byte);
    if (b >= 0) {
      out.push_back(b);
    } else if (unk >= 0) {
      out.push_back(unk);
    } else {
      throw Error(std::string("tokenize: the vocab has no token for byte 0x") + kHex[byte >> 4] +
                  kHex[byte & 15] + " and no unknown token");
    }
  }
}

}  // namespace

SpmTokenizer::SpmTokenizer(const VocabSpec& spec) {
  SpecialDefaults d;
  d.bos = 1;
  d.eos = 2;
  d.unk = 0;
  d.add_bos = true;
  init_vocab(spec, d);
  add_space_prefix_ = spec.add_space_prefix.value_or(true);
  clean_spaces_ = false;
  byte_level_ = false;
}

void SpmTokenizer::encode_text(std::string_view raw, bool after_special,
                               std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(raw.size() * 3 + 3);
  if (add_space_prefix_ && after_special) text += kSpmSpace;
  for (const char c : raw) {
    if (c == ' ')
      text += kSpmSpace;
    else
      text += c;
  }

  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t off = 0; off < text.size();) {
    const size_t n =
        std::min(utf8::seq_len(static_cast<unsigned char>(text[off])), text.size() - off);
    const int idx = static_cast<int>(symbols.size());
    symbols.push_back({idx - 1, off + n == text.size() ? -1 : idx + 1, off, n});
    off += n;
  }

  std::priority_queue<Bigram, std::vector<Bigram>, BigramLess> queue;
  RevMerge rev_merge;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[left];
    const Symbol& r = symbols[right];
    const std::string_view s(text.data() + l.off, l.n + r.n);
    const int32_t id = vocab_.find(s);
    if (id < 0) return;
    queue.push({left, right, vocab_.score(id), s.size()});
    rev_merge[std::string(s)] = {std::string(text, l.off, l.n), std::string(text, r.off, r.n)};
  };
  for (int i = 1; i < static_cast<int>(symbols.size()); ++i) try_add(i - 1, i);

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[b.left];
    Symbol& r = symbols[b.right];
    // Stale: one side was merged away or grew since the pair was queued.
    if (l.n == 0 || r.n == 0 || l.n + r.n != b.size) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  if (symbols.empty()) return;
  for (int i = 0; i != -1; i = symbols[i].next)
    resegment(vocab_, special_.unk, rev_merge,
              std::string_view(text.data() + symbols[i].off, symbols[i].n), out);
}

}  // namespace kvs
