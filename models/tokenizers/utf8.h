#pragma once
// UTF-8 and GPT-2 byte-level helpers shared by the tokenizers.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvs::utf8 {

// Length of the sequence a lead byte announces (1 for bytes that cannot start one, so that
// callers always make progress).
inline size_t seq_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Length of the well-formed sequence starting at s[pos] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF); 0 when invalid, and also 0 when it is cut short.
// `truncated` (optional) is set when the bytes present are a valid prefix of a sequence.
size_t valid_seq_len(std::string_view s, size_t pos, bool* truncated = nullptr);

// Offset of the first byte that is not part of a well-formed sequence, or npos.
size_t find_invalid(std::string_view s);

// Throws kvs::Error("<what>: invalid UTF-8 at byte N") unless `s` is well formed.
void validate(std::string_view s, std::string_view what);

// Decodes the (valid) sequence at s[pos] and advances pos.
uint32_t decode(std::string_view s, size_t& pos);
std::string encode(uint32_t cp);

// GPT-2's reversible byte -> printable code point map (space -> U+0120 "Ġ", ...).
const std::array<std::string, 256>& byte_to_unicode();
// The byte a code point stands for, or -1 when it is not in the map.
int unicode_to_byte(uint32_t cp);

}  // namespace kvs::utf8
