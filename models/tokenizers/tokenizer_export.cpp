#include "models/tokenizers/tokenizer_export.h"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kernels/core/error.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/bpe_tokenizer.h"
#include "models/tokenizers/sp_model_proto.h"
#include "models/tokenizers/spm_tokenizer.h"
#include "models/tokenizers/vocab.h"

namespace kvs {

namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

void write_atomic(const fs::path& dir, const std::string& name, const std::string& bytes) {
  const fs::path final_path = dir / name;
  const fs::path tmp = dir / ("." + name + ".tmp." + std::to_string(::getpid()));
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(tmp.string() + ": cannot create");
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw Error(tmp.string() + ": write failed");
    }
  }
  std::error_code ec;
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(final_path.string() + ": cannot rename into place: " + ec.message());
  }
}

std::string dump(const ojson& j, const std::string& what) {
  try {
    return j.dump(2) + "\n";
  } catch (const ojson::exception& e) {
    // Token texts that are not valid UTF-8 cannot go into JSON.
    throw Error(what + ": " + e.what());
  }
}

std::string quote(std::string_view s, const std::string& what) {
  try {
    return ojson(s).dump();
  } catch (const ojson::exception& e) {
    throw Error(what + ": token '" + std::string(s) + "' is not valid UTF-8: " + e.what());
  }
}

ojson token_or_null(const VocabTokenizer& tok, int32_t id) {
  return id >= 0 ? ojson(tok.vocab().text(id)) : ojson(nullptr);
}

ojson tokenizer_config(const VocabTokenizer& tok, const char* tokenizer_class, bool clean_spaces) {
  const SpecialTokens& st = tok.special();
  ojson c;
  c["add_bos_token"] = st.add_bos;
  c["add_eos_token"] = st.add_eos;
  c["bos_token"] = token_or_null(tok, st.bos);
  c["eos_token"] = token_or_null(tok, st.eos);
  c["unk_token"] = token_or_null(tok, st.unk);
  c["pad_token"] = token_or_null(tok, st.pad);
  c["clean_up_tokenization_spaces"] = clean_spaces;
  if (!tok.chat_template().empty()) c["chat_template"] = tok.chat_template();
  c["tokenizer_class"] = tokenizer_class;
  return c;
}

// HF's pre-tokenizer for a regex list: Digits / ByteLevel where they say the same, Split
// (Isolated) otherwise.
ojson pre_tokenizer_json(const std::vector<std::string>& regexes) {
  ojson steps = ojson::array();
  bool byte_level_regex = false;
  for (size_t i = 0; i < regexes.size(); ++i) {
    const std::string& r = regexes[i];
    if (r == kGpt2Regex && i + 1 == regexes.size()) {
      byte_level_regex = true;
    } else if (r == R"(\p{N})" || r == R"(\p{N}+)") {
      steps.push_back({{"type", "Digits"}, {"individual_digits", r == R"(\p{N})"}});
    } else {
      steps.push_back({{"type", "Split"},
                       {"pattern", {{"Regex", r}}},
                       {"behavior", "Isolated"},
                       {"invert", false}});
    }
  }
  ojson bl = {{"type", "ByteLevel"},
              {"add_prefix_space", false},
              {"trim_offsets", true},
              {"use_regex", byte_level_regex}};
  if (steps.empty()) return bl;
  steps.push_back(bl);
  return {{"type", "Sequence"}, {"pretokenizers", steps}};
}

ojson post_processor_json(const VocabTokenizer& tok) {
  const SpecialTokens& st = tok.special();
  const bool bos = st.add_bos && st.bos >= 0, eos = st.add_eos && st.eos >= 0;
  if (!bos && !eos)
    return {{"type", "ByteLevel"},
            {"add_prefix_space", true},
            {"trim_offsets", false},
            {"use_regex", true}};
  auto special = [&](int32_t id) {
    return ojson{{"SpecialToken", {{"id", tok.vocab().text(id)}, {"type_id", 0}}}};
  };
  auto seq = [](const char* id, int type_id) {
    return ojson{{"Sequence", {{"id", id}, {"type_id", type_id}}}};
  };
  ojson single = ojson::array(), pair = ojson::array(), specials = ojson::object();
  if (bos) single.push_back(special(st.bos));
  single.push_back(seq("A", 0));
  if (eos) single.push_back(special(st.eos));
  pair = single;
  if (bos) pair.push_back(special(st.bos));
  pair.push_back(seq("B", 1));
  if (eos) pair.push_back(special(st.eos));
  for (const int32_t id : {bos ? st.bos : -1, eos ? st.eos : -1}) {
    if (id < 0) continue;
    const std::string t(tok.vocab().text(id));
    specials[t] = {{"id", t}, {"ids", {id}}, {"tokens", {t}}};
  }
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", specials}};
}

void export_bpe(const BpeTokenizer& tok, bool clean_spaces, const fs::path& dir) {
  const Vocab& v = tok.vocab();
  ojson added = ojson::array();
  for (int32_t id = 0; id < v.size(); ++id) {
    const auto type = static_cast<TokenType>(tok.token_type(id));
    if (type != TokenType::Control && type != TokenType::UserDefined && type != TokenType::Unknown)
      continue;
    const bool special = type != TokenType::UserDefined;
    added.push_back({{"id", id},
                     {"content", v.text(id)},
                     {"single_word", false},
                     {"lstrip", (v.attr(id) & kAttrLstrip) != 0},
                     {"rstrip", (v.attr(id) & kAttrRstrip) != 0},
                     {"normalized", !special},
                     {"special", special}});
  }
  ojson j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = std::move(added);
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = pre_tokenizer_json(tok.pre_tokenizer().regexes);
  j["post_processor"] = post_processor_json(tok);
  j["decoder"] = {{"type", "ByteLevel"},
                  {"add_prefix_space", true},
                  {"trim_offsets", true},
                  {"use_regex", true}};
  j["model"] = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", tok.ignore_merges()},
                {"vocab", ojson::object()},
                {"merges", ojson::array()}};
  // ordered_json inserts in linear time, so the large vocab and merge lists are written
  // as text into the placeholders.
  const std::string what = (dir / "tokenizer.json").string();
  std::string vocab = "{";
  for (int32_t id = 0; id < v.size(); ++id) {
    vocab += id == 0 ? "\n      " : ",\n      ";
    vocab += quote(v.text(id), what);
    vocab += ": ";
    vocab += std::to_string(id);
  }
  vocab += "\n    }";
  std::string merges = "[";
  bool first = true;
  for (const std::string_view m : tok.merges()) {
    const auto [l, r] = *split_merge(m);  // checked when the tokenizer was built
    merges += first ? "\n      [" : ",\n      [";
    first = false;
    merges += quote(l, what);
    merges += ", ";
    merges += quote(r, what);
    merges += ']';
  }
  merges += "\n    ]";
  std::string text = dump(j, what);
  const auto fill = [&](std::string_view placeholder, const std::string& body) {
    const size_t pos = text.rfind(placeholder);
    KVS_CHECK(pos != std::string::npos, "placeholder missing in tokenizer.json");
    text.replace(pos, placeholder.size(), body);
  };
  fill("\"merges\": []", "\"merges\": " + merges);
  fill("\"vocab\": {}", "\"vocab\": " + vocab);
  write_atomic(dir, "tokenizer.json", text);

  write_atomic(dir, "tokenizer_config.json",
               dump(tokenizer_config(tok, "PreTrainedTokenizerFast", clean_spaces),
                    (dir / "tokenizer_config.json").string()));
}

void export_spm(const SpmTokenizer& tok, const std::string& source, const fs::path& dir) {
  const Vocab& v = tok.vocab();
  const SpecialTokens& st = tok.special();
  SpModelProto m;
  m.pieces.resize(static_cast<size_t>(v.size()));
  int32_t unk = st.unk;
  int n_bytes = 0;
  for (int32_t id = 0; id < v.size(); ++id) {
    auto& p = m.pieces[static_cast<size_t>(id)];
    p.piece = v.text(id);
    p.score = v.score(id);
    p.type = tok.token_type(id);
    if (p.type == 0) p.type = 1;  // SentencePiece has no UNDEFINED
    if (p.type == 6) ++n_bytes;
    if (p.type == 2 && unk < 0) unk = id;
  }
  // SentencePiece wants exactly one UNKNOWN piece: the unknown token.
  if (unk < 0)
    throw Error(source + ": tokenizer.ggml.unknown_token_id: SentencePiece needs an unknown token");
  for (int32_t id = 0; id < v.size(); ++id) {
    auto& p = m.pieces[static_cast<size_t>(id)];
    if (id == unk)
      p.type = 2;
    else if (p.type == 2)
      p.type = 3;
  }
  m.model_type = 2;  // BPE: llama.cpp's SPM merges are SentencePiece's BPE
  m.vocab_size = v.size();
  m.byte_fallback = n_bytes == 256;
  m.unk_id = unk;
  m.bos_id = st.bos;
  m.eos_id = st.eos;
  m.pad_id = st.pad;
  m.unk_piece = v.text(unk);
  if (st.bos >= 0) m.bos_piece = v.text(st.bos);
  if (st.eos >= 0) m.eos_piece = v.text(st.eos);
  if (st.pad >= 0) m.pad_piece = v.text(st.pad);
  m.normalizer_name = "identity";
  m.add_dummy_prefix = tok.add_space_prefix();
  m.remove_extra_whitespaces = false;
  m.escape_whitespaces = true;
  write_atomic(dir, "tokenizer.model", serialize_sp_model(m));
  // tokenizer.model cannot say that a special token eats the spaces next to it (Phi-3).
  ojson c = tokenizer_config(tok, "LlamaTokenizer", false);
  ojson added = ojson::object();
  for (int32_t id = 0; id < v.size(); ++id) {
    const uint32_t a = v.attr(id);
    if ((a & (kAttrLstrip | kAttrRstrip)) == 0) continue;
    added[std::to_string(id)] = {
        {"content", v.text(id)}, {"lstrip", (a & kAttrLstrip) != 0},
        {"normalized", false},   {"rstrip", (a & kAttrRstrip) != 0},
        {"single_word", false},  {"special", m.pieces[static_cast<size_t>(id)].type != 4}};
  }
  if (!added.empty()) c["added_tokens_decoder"] = std::move(added);
  write_atomic(dir, "tokenizer_config.json", dump(c, (dir / "tokenizer_config.json").string()));
}

}  // namespace

void export_hf_tokenizer(const WeightSource& gguf, const std::string& out_dir) {
  const VocabSpec spec = vocab_spec_from_gguf(gguf.metadata());
  const fs::path dir(out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(out_dir + ": cannot create directory: " + ec.message());
  if (spec.model == "gpt2") {
    const BpeTokenizer tok(spec);
    export_bpe(tok, tok.pre_tokenizer().clean_spaces, dir);
  } else if (spec.model == "llama") {
    export_spm(SpmTokenizer(spec), spec.source, dir);
  } else {
    throw Error(spec.source + ": tokenizer.ggml.model: cannot export tokenizer '" + spec.model +
                "' (supported: llama, gpt2)");
  }
}

}  // namespace kvs
