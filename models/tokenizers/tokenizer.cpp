#include "models/tokenizers/tokenizer.h"

#include <algorithm>

#include "kernels/core/error.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/bpe_tokenizer.h"
#include "models/tokenizers/hf_tokenizer.h"
#include "models/tokenizers/spm_tokenizer.h"
#include "models/tokenizers/utf8.h"

namespace kvs {

namespace {

// llama.cpp's clean_up_tokenization_spaces: " ?" " !" " ." " ," lose the space, " ' "
// loses both, " 's" " 'm" " 're" " 've" lose the space.
std::string clean_up_spaces(const std::string& in) {
  std::string a;
  a.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char x = in[i];
    if (i > 0 && in[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ',')) a.pop_back();
    a += x;
  }
  std::string b;
  b.reserve(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i];
    if (i > 0 && x == '\'' && i + 1 < a.size() && a[i - 1] == ' ' && a[i + 1] == ' ') {
      b.pop_back();
      b += x;
      // llama.cpp blanks the dropped space in place, so it no longer counts as a space
      // before the next character.
      a[++i] = '\0';
      continue;
    }
    b += x;
  }
  std::string c;
  c.reserve(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    const char x = b[i];
    if (i > 0 && b[i - 1] == ' ' && x == '\'' && i + 1 < b.size()) {
      const char x1 = b[i + 1];
      const char x2 = i + 2 < b.size() ? b[i + 2] : '\0';
      if (x1 == 's' || x1 == 'm' || (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
        c.pop_back();
    }
    c += x;
  }
  return c;
}

}  // namespace

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  std::string out;
  size_t i = 0;
  if (!ids.empty() && special_.bos >= 0 && ids[0] == special_.bos) {
    out += token_text(ids[0], render_special);
    i = 1;
  }
  bool remove_space = add_space_prefix_;
  for (; i < ids.size(); ++i) {
    std::string t = token_text(ids[i], render_special);
    if (remove_space && !t.empty() && t[0] == ' ') t.erase(0, 1);
    remove_space = false;
    out += t;
  }
  return clean_spaces_ ? clean_up_spaces(out) : out;
}

bool Tokenizer::is_eog(int32_t id) const {
  return std::binary_search(special_.eog.begin(), special_.eog.end(), id);
}

std::unique_ptr<Tokenizer> load_tokenizer(const WeightSource& ws) {
  if (ws.format() != "gguf") return load_hf_tokenizer(ws.hf_dir(), ws.metadata());
  const VocabSpec spec = vocab_spec_from_gguf(ws.metadata());
  if (spec.model == "llama") return std::make_unique<SpmTokenizer>(spec);
  if (spec.model == "gpt2") return std::make_unique<BpeTokenizer>(spec);
  throw Error(spec.source + ": tokenizer.ggml.model: unsupported tokenizer '" + spec.model +
              "' (supported: llama, gpt2)");
}

// ---------------------------------------------------------------------------------------

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Moves the longest prefix of `pending` made of complete characters into the result;
// bytes that can never start or continue a character become U+FFFD right away.
std::string take_complete(std::string& pending) {
  std::string out;
  size_t pos = 0;
  while (pos < pending.size()) {
    bool truncated = false;
    const size_t n = utf8::valid_seq_len(pending, pos, &truncated);
    if (n > 0) {
      out.append(pending, pos, n);
      pos += n;
    } else if (truncated) {
      break;
    } else {
      out += kReplacement;
      ++pos;
    }
  }
  pending.erase(0, pos);
  return out;
}

}  // namespace

std::string StreamingDetokenizer::push(int32_t id) {
  std::string t = tok_.token_text(id, render_special_);
  const int32_t bos = tok_.special().bos;
  if (first_ && !(bos >= 0 && id == bos)) {
    first_ = false;
    if (tok_.add_space_prefix() && !t.empty() && t[0] == ' ') t.erase(0, 1);
  }
  pending_ += t;
  return take_complete(pending_);
}

std::string StreamingDetokenizer::flush() {
  std::string out = take_complete(pending_);
  if (!pending_.empty()) out += kReplacement;  // an unfinished character
  pending_.clear();
  first_ = true;
  return out;
}

}  // namespace kvs
