// `kvsieve tokenize -m MODEL (-p TEXT | -f FILE | --stdin) [--no-bos] [--special] [--ids]`:
// the token ids of a text, like llama.cpp's llama-tokenize. The text is taken verbatim (no
// escape processing).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>

#include "kernels/core/error.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/tokenizer.h"
#include "models/tokenizers/utf8.h"
#include "tools/command.h"

namespace kvs::cli {
namespace {

struct TokenizeOptions {
  std::string model;
  std::string prompt;
  std::string file;
  bool use_stdin = false;
  bool no_bos = false;
  bool special = false;
  bool ids = false;
  bool have_prompt = false;
};

std::string read_text(const TokenizeOptions& o) {
  const int sources = int(o.have_prompt) + int(!o.file.empty()) + int(o.use_stdin);
  if (sources != 1) throw UsageError("tokenize: give exactly one of -p TEXT, -f FILE, --stdin");
  if (o.have_prompt) return o.prompt;
  std::stringstream ss;
  if (o.use_stdin) {
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream f(o.file, std::ios::binary);
  if (!f) throw Error(o.file + ": cannot open");
  ss << f.rdbuf();
  if (f.bad()) throw Error(o.file + ": read error");
  return ss.str();
}

// A piece may be part of a character (byte tokens): show such bytes as \xHH.
std::string printable(const std::string& piece) {
  std::string out;
  size_t pos = 0;
  while (pos < piece.size()) {
    const size_t n = utf8::valid_seq_len(piece, pos);
    if (n > 0) {
      out.append(piece, pos, n);
      pos += n;
    } else {
      static constexpr char kHex[] = "0123456789ABCDEF";
      const auto b = static_cast<uint8_t>(piece[pos++]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

void run(const TokenizeOptions& o) {
  const std::string text = read_text(o);
  const auto ws = open_weights(o.model);
  const auto tok = load_tokenizer(*ws);
  const auto ids = tok->encode(text, !o.no_bos, o.special);
  std::string out;
  if (o.ids) {
    out += '[';
    for (size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) out += ", ";
      out += std::to_string(ids[i]);
    }
    out += "]\n";
  } else {
    char buf[32];
    for (const int32_t id : ids) {
      std::snprintf(buf, sizeof(buf), "%6d -> '", id);
      out += buf;
      out += printable(tok->token_text(id, true));
      out += "'\n";
    }
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
}

void setup_tokenize(CLI::App& sub) {
  auto o = std::make_shared<TokenizeOptions>();
  sub.add_option("-m,--model", o->model, "GGUF file or HF model directory")->required();
  sub.add_option("-p,--prompt", o->prompt, "Text to tokenize (verbatim)")
      ->each([o](const std::string&) { o->have_prompt = true; });
  sub.add_option("-f,--file", o->file, "Read the text from a file");
  sub.add_flag("--stdin", o->use_stdin, "Read the text from standard input");
  sub.add_flag("--no-bos", o->no_bos, "Do not add BOS/EOS even if the vocab asks for them");
  sub.add_flag("--special", o->special, "Parse control-token text such as <|im_start|>");
  sub.add_flag("--ids", o->ids, "Print only a JSON array of ids");
  sub.callback([o] { run(*o); });
}

}  // namespace
}  // namespace kvs::cli

KVS_COMMAND(tokenize, "Tokenize text with a model's tokenizer", kvs::cli::setup_tokenize);
