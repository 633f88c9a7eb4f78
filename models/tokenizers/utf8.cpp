#include "models/tokenizers/utf8.h"

#include <algorithm>
#include <string>

#include "kernels/core/error.h"

namespace kvs::utf8 {

size_t valid_seq_len(std::string_view s, size_t pos, bool* truncated) {
  if (truncated != nullptr) *truncated = false;
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) return 1;
  size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;  // overlong
    if (b0 == 0xED) hi = 0x9F;  // surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;  // overlong
    if (b0 == 0xF4) hi = 0x8F;  // above U+10FFFF
  } else {
    return 0;
  }
  for (size_t i = 1; i < n; ++i) {
    if (pos + i >= s.size()) {
      if (truncated != nullptr) *truncated = true;
      return 0;
    }
    const auto b = static_cast<unsigned char>(s[pos + i]);
    const unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
    if (b < l || b > h) return 0;
  }
  return n;
}

size_t find_invalid(std::string_view s) {
  size_t pos = 0;
  while (pos < s.size()) {
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const size_t n = valid_seq_len(s, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return std::string_view::npos;
}

void validate(std::string_view s, std::string_view what) {
  const size_t bad = find_invalid(s);
  if (bad != std::string_view::npos)
    throw Error(std::string(what) + ": invalid UTF-8 at byte " + std::to_string(bad));
}

uint32_t decode(std::string_view s, size_t& pos) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  const size_t n = std::min(seq_len(b0), s.size() - pos);
  uint32_t cp = n == 1 ? b0 : n == 2 ? (b0 & 0x1Fu) : n == 3 ? (b0 & 0x0Fu) : (b0 & 0x07u);
  for (size_t i = 1; i < n; ++i) cp = (cp << 6) | (static_cast<unsigned char>(s[pos + i]) & 0x3Fu);
  pos += n;
  return cp;
}

std::string encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

namespace {

// Printable bytes map to themselves; the rest are shifted to U+0100 onwards in byte order.
std::array<uint32_t, 256> make_byte_map() {
  std::array<uint32_t, 256> m{};
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    m[b] = printable ? b : next++;
  }
  return m;
}

const std::array<uint32_t, 256>& byte_map() {
  static const std::array<uint32_t, 256> m = make_byte_map();
  return m;
}

}  // namespace

const std::array<std::string, 256>& byte_to_unicode() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    for (int b = 0; b < 256; ++b) t[b] = encode(byte_map()[b]);
    return t;
  }();
  return table;
}

int unicode_to_byte(uint32_t cp) {
  if (cp < 256) {
    const bool printable = (cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174);
    return printable ? static_cast<int>(cp) : -1;
  }
  if (cp < 256 + 68) {
    // The shifted code points are assigned in byte order to the 68 non-printable bytes.
    static const std::array<int, 68> inv = [] {
      std::array<int, 68> t{};
      for (int b = 0; b < 256; ++b)
        if (byte_map()[b] >= 256) t[byte_map()[b] - 256] = b;
      return t;
    }();
    return inv[cp - 256];
  }
  return -1;
}

}  // namespace kvs::utf8
