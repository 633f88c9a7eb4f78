#define PCRE2_CODE_UNIT_WIDTH 8
#include "models/tokenizers/pre_tokenizer.h"

#include <pcre2.h>

#include <string>

#include "kernels/core/error.h"
#include "models/tokenizers/utf8.h"

namespace kvs {

// Regex lists as llama.cpp's src/llama-vocab.cpp uses them (facts, per pre type).
const char* const kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S))";

namespace {

constexpr const char* kLlama3Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3RegexHf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2RegexHf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen35Regex =
    R"((?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen35RegexHf =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
// llama.cpp rewrites these two for std::regex; PCRE2 runs the tokenizer.json originals.
constexpr const char* kTekkenRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt4oRegex =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kCjkRegex = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+";
constexpr const char* kBloomRegex = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+";

// DeepSeek LLM's cased-letter class, code point by code point as in llama.cpp.
std::string deepseek_letters() {
  static constexpr uint32_t kRanges[][2] = {
      {0x41, 0x5A},       {0x61, 0x7A},       {0xB5, 0xB5},       {0xC0, 0xD6},
      {0xD8, 0xF6},       {0xF8, 0x1BA},      {0x1BC, 0x1BF},     {0x1C4, 0x293},
      {0x295, 0x2AF},     {0x370, 0x373},     {0x376, 0x377},     {0x37B, 0x37D},
      {0x37F, 0x37F},     {0x386, 0x386},     {0x388, 0x38A},     {0x38C, 0x38C},
      {0x38E, 0x3A1},     {0x3A3, 0x3F5},     {0x3F7, 0x481},     {0x48A, 0x52F},
      {0x531, 0x556},     {0x10A0, 0x10C5},   {0x13A0, 0x13F5},   {0x13F8, 0x13FD},
      {0x1C90, 0x1CBA},   {0x1CBD, 0x1CBF},   {0x1D00, 0x1D2B},   {0x1D6B, 0x1D77},
      {0x1D79, 0x1D9A},   {0x1E00, 0x1F15},   {0x1F18, 0x1F1D},   {0x1F20, 0x1F45},
      {0x1F48, 0x1F4D},   {0x1F50, 0x1F57},   {0x1F59, 0x1F59},   {0x1F5B, 0x1F5B},
      {0x1F5D, 0x1F5D},   {0x1F5F, 0x1F7D},   {0x1F80, 0x1FB4},   {0x1FB6, 0x1FBC},
      {0x1FBE, 0x1FBE},   {0x1FC2, 0x1FC4},   {0x1FC6, 0x1FCC},   {0x1FD0, 0x1FD3},
      {0x1FD6, 0x1FDB},   {0x1FE0, 0x1FEC},   {0x1FF2, 0x1FF4},   {0x1FF6, 0x1FFC},
      {0x2102, 0x2102},   {0x2107, 0x2107},   {0x210A, 0x2113},   {0x2115, 0x2115},
      {0x2119, 0x211D},   {0x2124, 0x2124},   {0x2126, 0x2126},   {0x2128, 0x2128},
      {0x212A, 0x212D},   {0x212F, 0x2134},   {0x2139, 0x2139},   {0x213C, 0x213F},
      {0x2145, 0x2149},   {0x214E, 0x214E},   {0x2183, 0x2184},   {0x2C00, 0x2C7B},
      {0x2C7E, 0x2CE4},   {0x2CEB, 0x2CEE},   {0x2CF2, 0x2CF3},   {0xA640, 0xA66D},
      {0xA680, 0xA69B},   {0xA722, 0xA76F},   {0xA771, 0xA787},   {0xA78B, 0xA78E},
      {0xAB70, 0xABBF},   {0xFB00, 0xFB06},   {0xFB13, 0xFB17},   {0xFF21, 0xFF3A},
      {0xFF41, 0xFF5A},   {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
      {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
  };
  std::string s = "\\s?[";
  for (const auto& r : kRanges) {
    s += utf8::encode(r[0]);
    if (r[1] != r[0]) {
      s += '-';
      s += utf8::encode(r[1]);
    }
  }
  return s + "]+";
}

std::vector<PreTokenizerSpec> make_table() {
  const std::string gpt2 = kGpt2Regex;
  std::vector<PreTokenizerSpec> t;
  // Order matters for match_pre_tokenizer: the first entry with a regex list wins.
  t.push_back({"default",
               {R"([\p{P}\$\+<=>\^~\|]+)", gpt2, R"(\p{N}+)", "[0-9][0-9][0-9]"},
               false,
               true,
               false});
  t.push_back({"gpt-2", {gpt2}, false, true, false});
  t.push_back({"llama-bpe", {kLlama3Regex}, true, true, true});
  t.push_back({"dbrx", {kLlama3Regex}, false, true, false});
  t.push_back({"qwen2", {kQwen2Regex}, false, false, false});
  t.push_back({"stablelm2", {kQwen2Regex}, false, true, false});
  t.push_back({"qwen35", {kQwen35Regex}, false, false, false});
  t.push_back({"smollm", {R"(\p{N})", gpt2}, false, false, false});
  t.push_back({"starcoder", {R"(\p{N})", gpt2}, false, true, false});
  t.push_back({"deepseek-llm",
               {"[\r\n]", deepseek_letters(),
                "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f\u3000-\u3002]+", R"(\s+$)",
                kCjkRegex, R"(\p{N}+)"},
               false,
               false,
               false});
  t.push_back({"deepseek-coder",
               {"[\r\n]", R"(\s?\p{L}+)", R"(\s?\p{P}+)", kCjkRegex, R"(\p{N})"},
               false,
               false,
               false});
  t.push_back(
      {"deepseek-v3",
       {R"(\p{N}{1,3})", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"},
       false,
       false,
       false});
  t.push_back(
      {"falcon", {R"([\p{P}\$\+<=>\^~\|`]+)", gpt2, "[0-9][0-9][0-9]"}, false, true, false});
  t.push_back({"tekken", {kTekkenRegex}, true, false, true});
  t.push_back({"gpt-4o", {kGpt4oRegex}, false, false, false});
  t.push_back({"bloom", {kBloomRegex}, false, true, false});
  t.push_back({"viking", {kBloomRegex, R"(\p{N})"}, false, false, false});
  return t;
}

const std::vector<PreTokenizerSpec>& table() {
  static const std::vector<PreTokenizerSpec> t = make_table();
  return t;
}

const PreTokenizerSpec* by_name(std::string_view name) {
  for (const auto& s : table())
    if (s.name == name) return &s;
  return nullptr;
}

struct Alias {
  std::string_view alias, target;
  int clean_spaces;  // -1: the target's, else the override
};

// llama.cpp's aliases (same regexes, maybe other flags).
constexpr Alias kAliases[] = {
    {"", "default", -1},
    {"llama3", "llama-bpe", -1},
    {"llama-v3", "llama-bpe", -1},
    {"falcon3", "llama-bpe", -1},
    {"falcon-h1", "llama-bpe", -1},
    {"pixtral", "llama-bpe", -1},
    {"midm-2.0", "llama-bpe", -1},
    {"lfm2", "llama-bpe", -1},
    {"jina-v5-nano", "llama-bpe", -1},
    {"smaug-bpe", "dbrx", -1},
    {"mpt", "gpt-2", -1},
    {"phi-2", "gpt-2", -1},
    {"jina-es", "gpt-2", -1},
    {"jina-de", "gpt-2", -1},
    {"jina-v2-es", "gpt-2", -1},
    {"jina-v2-de", "gpt-2", -1},
    {"gigachat", "gpt-2", -1},
    {"a.x-4.0", "gpt-2", -1},
    {"mellum", "gpt-2", -1},
    {"modern-bert", "gpt-2", -1},
    {"olmo", "gpt-2", -1},
    {"jais", "gpt-2", -1},
    {"exaone4", "gpt-2", -1},
    {"trillion", "gpt-2", 0},
    {"granite-docling", "gpt-2", 0},
    {"refact", "starcoder", -1},
    {"codeshell", "starcoder", -1},
    {"exaone", "starcoder", -1},
    {"minerva-7b", "starcoder", -1},
    {"mellum2", "starcoder", -1},
    {"command-r", "smollm", -1},
    {"deepseek-r1-qwen", "qwen2", -1},
    {"kormo", "qwen2", -1},
    {"f2llmv2", "qwen2", -1},
    {"hunyuan", "qwen2", -1},
    {"solar-open", "qwen2", -1},
    {"megrez", "stablelm2", -1},
    {"llama4", "gpt-4o", -1},
    {"poro-chat", "bloom", 0},
    {"gpt3-finnish", "bloom", -1},
};

}  // namespace

std::optional<PreTokenizerSpec> find_pre_tokenizer(std::string_view pre) {
  if (const PreTokenizerSpec* s = by_name(pre)) return *s;
  for (const Alias& a : kAliases) {
    if (a.alias != pre) continue;
    PreTokenizerSpec s = *by_name(a.target);
    s.name = std::string(pre.empty() ? "default" : pre);
    if (a.clean_spaces >= 0) s.clean_spaces = a.clean_spaces != 0;
    return s;
  }
  return std::nullopt;
}

std::optional<PreTokenizerSpec> match_pre_tokenizer(const std::vector<std::string>& regexes) {
  // tokenizer.json keeps the (?i:...) originals that llama.cpp spells out.
  std::vector<std::string> norm = regexes;
  for (std::string& r : norm) {
    if (r == kLlama3RegexHf) r = kLlama3Regex;
    if (r == kQwen2RegexHf) r = kQwen2Regex;
    if (r == kQwen35RegexHf) r = kQwen35Regex;
  }
  for (const auto& s : table())
    if (s.regexes == norm) return s;
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::vector<std::string>& regexes, const std::string& context) {
  for (const std::string& r : regexes) {
    int err = 0;
    PCRE2_SIZE off = 0;
    // DOLLAR_ENDONLY: `$` means the end of the piece, as in std::regex and HF.
    pcre2_code* code =
        pcre2_compile(reinterpret_cast<PCRE2_SPTR>(r.data()), r.size(),
                      PCRE2_UTF | PCRE2_UCP | PCRE2_DOLLAR_ENDONLY, &err, &off, nullptr);
    if (code == nullptr) {
      PCRE2_UCHAR buf[256];
      pcre2_get_error_message(err, buf, sizeof(buf));
      throw Error(context + ": pre-tokenizer regex does not compile at offset " +
                  std::to_string(off) + " (" + reinterpret_cast<const char*>(buf) + "): " + r);
    }
    auto c = std::make_unique<Compiled>();
    c->code = code;
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // the interpreter remains the fallback
    regexes_.push_back(std::move(c));
  }
}

RegexSplitter::~RegexSplitter() = default;

std::vector<std::pair<size_t, size_t>> RegexSplitter::split(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> pieces;
  if (text.empty()) return pieces;
  pieces.emplace_back(0, text.size());
  std::vector<std::pair<size_t, size_t>> next;
  for (const auto& re : regexes_) {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(re->code, nullptr);
    if (md == nullptr) throw std::bad_alloc();
    next.clear();
    next.reserve(pieces.size() * 2);
    for (const auto& [begin, end] : pieces) {
      // The piece is the whole subject: lookarounds and `$` never see past it.
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + begin);
      const size_t len = end - begin;
      size_t pos = 0, last = 0;
      while (pos < len) {
        const int rc = pcre2_match(re->code, subject, len, pos, PCRE2_NO_UTF_CHECK, md, nullptr);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
          pcre2_match_data_free(md);
          PCRE2_UCHAR buf[256];
          pcre2_get_error_message(rc, buf, sizeof(buf));
          throw Error(std::string("tokenize: pre-tokenizer regex failed: ") +
                      reinterpret_cast<const char*>(buf));
        }
        const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
        const size_t ms = ov[0], me = ov[1];
        if (me <= ms) {
          // An empty match splits nothing; step over one character.
          pos = ms + utf8::seq_len(static_cast<unsigned char>(text[begin + ms]));
          continue;
        }
        if (ms > last) next.emplace_back(begin + last, begin + ms);
        next.emplace_back(begin + ms, begin + me);
        last = pos = me;
      }
      if (last < len) next.emplace_back(begin + last, end);
    }
    pcre2_match_data_free(md);
    pieces.swap(next);
  }
  return pieces;
}

}  // namespace kvs
