// safetensors files and HF model directories: round trips and one test per kind of bad input.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "models/formats/safetensors_file.h"
#include "models/formats/safetensors_model.h"
#include "models/formats/safetensors_writer.h"
#include "models/formats/weight_source.h"
#include "tests/support/temp_dir.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::TempDir;

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A raw file: u64 LE header length, header text, then `data_bytes` zero bytes.
void write_raw(const std::string& path, const std::string& header, size_t data_bytes,
               uint64_t claimed_len = UINT64_MAX) {
  const uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  s += header;
  s.append(data_bytes, '\0');
  write_bytes(path, s);
}

// Expects kvs::Error whose message contains every one of `parts`.
template <class F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no kvs::Error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(SafetensorsFile, WriterRoundTrip) {
  TempDir d;
  const std::vector<float> a{1.5f, -2.0f, 3.25f, 0.0f, 7.0f, -8.5f};
  std::vector<uint16_t> h(5), b(3);
  for (size_t i = 0; i < h.size(); ++i) h[i] = fp32_to_fp16(0.5f * static_cast<float>(i));
  for (size_t i = 0; i < b.size(); ++i) b[i] = fp32_to_bf16(-1.0f * static_cast<float>(i));
  const std::vector<int64_t> ids{1, -2, 3};
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  w.add_tensor("a", DType::F32, {2, 3}, a.data());
  w.add_tensor("h", DType::F16, {5}, h.data());
  w.add_tensor("b", "BF16", {3, 1}, b.data());
  w.add_tensor("ids", "I64", {3}, ids.data());
  w.add_tensor("empty", "F32", {0, 4}, nullptr);
  w.add_tensor("scalar", DType::F32, {}, a.data());
  const std::string p = d / "t.safetensors";
  const uint64_t size = w.write(p);
  EXPECT_EQ(size, fs::file_size(p));
  EXPECT_THROW(w.add_tensor("a", DType::F32, {1}, a.data()), Error);

  const SafetensorsFile f(p);
  EXPECT_EQ(f.data_start() % 8, 0u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  ASSERT_EQ(f.tensors().size(), 6u);
  const SafetensorsTensor* ta = f.find("a");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, DType::F32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(ta->data, a.data(), 24), 0);
  EXPECT_EQ(ta->file_offset, f.data_start() + ta->begin);
  EXPECT_EQ(std::memcmp(f.find("h")->data, h.data(), 10), 0);
  EXPECT_EQ(f.find("b")->dtype, DType::BF16);
  EXPECT_EQ(std::memcmp(f.find("b")->data, b.data(), 6), 0);
  EXPECT_FALSE(f.find("ids")->dtype.has_value());
  EXPECT_EQ(f.find("ids")->dtype_name, "I64");
  EXPECT_EQ(std::memcmp(f.find("ids")->data, ids.data(), 24), 0);
  EXPECT_EQ(f.find("empty")->nbytes(), 0u);
  EXPECT_TRUE(f.find("scalar")->shape.empty());
  EXPECT_EQ(f.find("scalar")->nbytes(), 4u);
  EXPECT_EQ(f.find("missing"), nullptr);
  // Tensors come back in buffer order, each starting where the previous ended.
  uint64_t end = 0;
  for (const auto& t : f.tensors()) {
    EXPECT_EQ(t.begin, end);
    end = t.end;
  }
  // The writer left no temporary file behind.
  EXPECT_EQ(std::distance(fs::directory_iterator(d.path()), fs::directory_iterator()), 1);
}

TEST(SafetensorsFile, TruncatedBeforeHeaderLength) {
  TempDir d;
  write_bytes(d / "x.safetensors", "abc");
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); }, {"x.safetensors", "truncated"});
}

TEST(SafetensorsFile, TruncatedHeader) {
  TempDir d;
  write_raw(d / "x.safetensors", "{}", 0, 200);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "truncated", "200"});
}

TEST(SafetensorsFile, TruncatedData) {
  TempDir d;
  write_raw(d / "x.safetensors", R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 10);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'w'", "outside"});
}

TEST(SafetensorsFile, HeaderLengthHuge) {
  TempDir d;
  write_raw(d / "x.safetensors", "{}", 0, 100'000'001);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "100000001", "limit"});
  write_raw(d / "y.safetensors", "{}", 0, UINT64_MAX - 1);
  expect_error([&] { SafetensorsFile f(d / "y.safetensors"); }, {"y.safetensors", "exceeds"});
}

TEST(SafetensorsFile, HeaderNotJson) {
  TempDir d;
  write_raw(d / "x.safetensors", "{\"w\": [1, 2", 0);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); }, {"x.safetensors", "JSON"});
  write_raw(d / "y.safetensors", "[1, 2]  ", 0);
  expect_error([&] { SafetensorsFile f(d / "y.safetensors"); }, {"y.safetensors", "object"});
}

TEST(SafetensorsFile, OffsetsOutsideBuffer) {
  TempDir d;
  write_raw(d / "x.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("far":{"dtype":"F32","shape":[2],"data_offsets":[1000,1008]}})",
            16);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'far'", "outside"});
}

TEST(SafetensorsFile, OverlappingTensors) {
  TempDir d;
  write_raw(d / "x.safetensors",
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            12);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'b'", "overlaps", "'a'"});
}

TEST(SafetensorsFile, GapBetweenTensors) {
  TempDir d;
  write_raw(d / "x.safetensors",
            R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
            12);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); }, {"x.safetensors", "gap", "'b'"});
}

TEST(SafetensorsFile, TrailingBytesAfterLastTensor) {
  TempDir d;
  write_raw(d / "x.safetensors", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "after the last tensor"});
}

TEST(SafetensorsFile, WrongSizeForShape) {
  TempDir d;
  write_raw(d / "x.safetensors", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'w'", "need 12"});
}

TEST(SafetensorsFile, ShapeOverflow) {
  TempDir d;
  write_raw(d / "x.safetensors",
            R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'w'", "overflow"});
  write_raw(d / "y.safetensors", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,8]}})", 8);
  expect_error([&] { SafetensorsFile f(d / "y.safetensors"); },
               {"y.safetensors", "'w'", "non-negative"});
}

TEST(SafetensorsFile, UnknownDtype) {
  TempDir d;
  write_raw(d / "x.safetensors", R"({"w":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", 1);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "'w'", "unknown dtype 'Q7'"});
}

TEST(SafetensorsFile, DuplicateName) {
  TempDir d;
  write_raw(d / "x.safetensors",
            R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
            R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
            8);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "duplicate", "'w'"});
}

TEST(SafetensorsFile, BadMetadata) {
  TempDir d;
  write_raw(d / "x.safetensors", R"({"__metadata__":{"n":1}})", 0);
  expect_error([&] { SafetensorsFile f(d / "x.safetensors"); },
               {"x.safetensors", "__metadata__", "'n'"});
}

// ---- HF model directories ----

struct TinyDims {
  int64_t embd = 8, layers = 2, heads = 2, kv = 1, head_dim = 4, ff = 12, vocab = 16;
};

// Deterministic distinct values so a misplaced tensor or element is noticed.
std::vector<float> ramp(size_t n, float seed) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = seed + 0.01f * static_cast<float>(i);
  return v;
}

class HfBuilder {
 public:
  explicit HfBuilder(std::string dir) : dir_(std::move(dir)) {}
  // Keeps the data alive until write().
  void add(const std::string& name, std::vector<int64_t> shape, const std::string& dtype = "F32") {
    const size_t n =
        std::accumulate(shape.begin(), shape.end(), size_t{1},
                        [](size_t a, int64_t b) { return a * static_cast<size_t>(b); });
    // 8-byte dtypes (I64, F64, ...) need two floats of backing bytes per element.
    const bool wide = dtype == "I64" || dtype == "U64" || dtype == "F64";
    data_.push_back(ramp(wide ? 2 * n : n, static_cast<float>(data_.size())));
    if (dtype == "BF16") {
      bf16_.emplace_back(n);
      for (size_t i = 0; i < n; ++i) bf16_.back()[i] = fp32_to_bf16(data_.back()[i]);
      w_.add_tensor(name, "BF16", std::move(shape), bf16_.back().data());
    } else {
      w_.add_tensor(name, dtype, std::move(shape), data_.back().data());
    }
    values_[name] = data_.back();
  }
  void write(const std::string& file = "model.safetensors") { w_.write(dir_ + "/" + file); }
  const std::vector<float>& values(const std::string& name) { return values_.at(name); }

 private:
  std::string dir_;
  SafetensorsWriter w_;
  std::list<std::vector<float>> data_;
  std::list<std::vector<uint16_t>> bf16_;
  std::map<std::string, std::vector<float>> values_;
};

json llama_config(const TinyDims& t) {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"hidden_size", t.embd},
              {"num_hidden_layers", t.layers},
              {"num_attention_heads", t.heads},
              {"num_key_value_heads", t.kv},
              {"intermediate_size", t.ff},
              {"vocab_size", t.vocab},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 100000.0},
              {"max_position_embeddings", 8192},
              {"tie_word_embeddings", true}};
}

void write_json(const std::string& path, const json& j) {
  write_bytes(path, j.dump(2));
}

void add_llama_tensors(HfBuilder& b, const TinyDims& t, bool lm_head) {
  b.add("model.embed_tokens.weight", {t.vocab, t.embd});
  b.add("model.norm.weight", {t.embd});
  if (lm_head) b.add("lm_head.weight", {t.vocab, t.embd});
  for (int64_t il = 0; il < t.layers; ++il) {
    const std::string p = "model.layers." + std::to_string(il) + ".";
    b.add(p + "input_layernorm.weight", {t.embd});
    b.add(p + "post_attention_layernorm.weight", {t.embd});
    b.add(p + "self_attn.q_proj.weight", {t.heads * t.head_dim, t.embd});
    b.add(p + "self_attn.k_proj.weight", {t.kv * t.head_dim, t.embd});
    b.add(p + "self_attn.v_proj.weight", {t.kv * t.head_dim, t.embd});
    b.add(p + "self_attn.o_proj.weight", {t.embd, t.heads * t.head_dim});
    b.add(p + "mlp.gate_proj.weight", {t.ff, t.embd});
    b.add(p + "mlp.up_proj.weight", {t.ff, t.embd});
    b.add(p + "mlp.down_proj.weight", {t.embd, t.ff});
  }
}

void expect_values(const TensorInfo& ti, const std::vector<float>& want) {
  ASSERT_EQ(ti.dtype, DType::F32) << ti.name;
  ASSERT_EQ(static_cast<size_t>(ti.nelements()), want.size()) << ti.name;
  EXPECT_EQ(std::memcmp(ti.data, want.data(), want.size() * 4), 0) << ti.name;
}

TEST(SafetensorsModel, LlamaTranslatesNamesShapesAndMetadata) {
  TempDir d;
  TinyDims t;
  HfBuilder b(d.path());
  add_llama_tensors(b, t, false);
  b.write();
  write_json(d / "config.json", llama_config(t));

  for (const std::string& path : {d.path(), d / "model.safetensors"}) {
    const auto ws = open_weights(path);
    EXPECT_EQ(ws->format(), "safetensors");
    EXPECT_EQ(ws->hf_dir(), d.path());
    const MetaMap& m = ws->metadata();
    EXPECT_EQ(m.get_string("general.architecture"), "llama");
    EXPECT_EQ(m.get_int("llama.embedding_length"), 8);
    EXPECT_EQ(m.get_int("llama.block_count"), 2);
    EXPECT_EQ(m.get_int("llama.feed_forward_length"), 12);
    EXPECT_EQ(m.get_int("llama.attention.head_count"), 2);
    EXPECT_EQ(m.get_int("llama.attention.head_count_kv"), 1);
    EXPECT_EQ(m.get_int("llama.attention.key_length"), 4);
    EXPECT_EQ(m.get_int("llama.rope.dimension_count"), 4);
    EXPECT_EQ(m.get_int("llama.context_length"), 8192);
    EXPECT_EQ(m.get_int("llama.vocab_size"), 16);
    EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("llama.rope.freq_base")), 100000.0f);
    EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("llama.attention.layer_norm_rms_epsilon")),
                    1e-5f);
    EXPECT_TRUE(m.get_bool("kvsieve.rope_neox", false));
    EXPECT_FALSE(m.has("llama.rope.scaling.type"));
    EXPECT_EQ(ws->find_tensor("output.weight"), nullptr);  // tied

    const TensorInfo& emb = ws->tensor("token_embd.weight");
    EXPECT_EQ(emb.ne, (std::array<int64_t, 4>{8, 16, 1, 1}));
    EXPECT_EQ(emb.n_dims, 2);
    EXPECT_EQ(emb.file, d / "model.safetensors");
    expect_values(emb, b.values("model.embed_tokens.weight"));
    const TensorInfo& q = ws->tensor("blk.1.attn_q.weight");
    EXPECT_EQ(q.ne, (std::array<int64_t, 4>{8, 8, 1, 1}));
    // No permutation: HF rows as they are (the NEOX contract).
    expect_values(q, b.values("model.layers.1.self_attn.q_proj.weight"));
    expect_values(ws->tensor("blk.0.ffn_norm.weight"),
                  b.values("model.layers.0.post_attention_layernorm.weight"));
    expect_values(ws->tensor("blk.0.attn_norm.weight"),
                  b.values("model.layers.0.input_layernorm.weight"));
    expect_values(ws->tensor("blk.1.ffn_down.weight"),
                  b.values("model.layers.1.mlp.down_proj.weight"));
    EXPECT_EQ(ws->tensor("blk.1.ffn_down.weight").ne[0], 12);
    expect_values(ws->tensor("output_norm.weight"), b.values("model.norm.weight"));
    EXPECT_EQ(ws->tensors().size(), 2u + 2 * 9);
  }
}

TEST(SafetensorsModel, UntiedHasOutputAndLlama3RopeFreqs) {
  TempDir d;
  TinyDims t;
  HfBuilder b(d.path());
  add_llama_tensors(b, t, true);
  b.write();
  json c = llama_config(t);
  c["tie_word_embeddings"] = false;
  c["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 32.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8}};
  write_json(d / "config.json", c);
  const auto ws = open_weights(d.path());
  expect_values(ws->tensor("output.weight"), b.values("lm_head.weight"));
  const TensorInfo& rf = ws->tensor("rope_freqs.weight");
  EXPECT_EQ(rf.ne[0], 2);
  const float* ff = rf.view().f32();
  // head_dim 4, theta 1e5, original context 8: wavelen 2π lies between 8/4 and 8/1 (smoothed),
  // wavelen 2π·10^2.5 beyond 8 (fully scaled).
  const std::vector<float> want = llama3_rope_freqs(100000.0, 4, 32.0, 1.0, 4.0, 8.0);
  EXPECT_EQ(ff[0], want[0]);
  EXPECT_EQ(ff[1], want[1]);
  EXPECT_FLOAT_EQ(ff[1], 32.0f);
  EXPECT_GT(ff[0], 1.0f);
  EXPECT_LT(ff[0], 32.0f);
}

TEST(SafetensorsModel, ShardedIndex) {
  TempDir d;
  TinyDims t;
  t.layers = 1;
  HfBuilder b1(d.path()), b2(d.path());
  b1.add("model.embed_tokens.weight", {t.vocab, t.embd});
  b1.add("model.norm.weight", {t.embd});
  b2.add("model.layers.0.self_attn.q_proj.weight", {t.heads * t.head_dim, t.embd});
  b2.add("model.layers.0.input_layernorm.weight", {t.embd});
  b1.write("model-00001-of-00002.safetensors");
  b2.write("model-00002-of-00002.safetensors");
  json c = llama_config(t);
  write_json(d / "config.json", c);
  json idx = {{"metadata", {{"total_size", 1}}},
              {"weight_map",
               {{"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
                {"model.norm.weight", "model-00001-of-00002.safetensors"},
                {"model.layers.0.self_attn.q_proj.weight", "model-00002-of-00002.safetensors"},
                {"model.layers.0.input_layernorm.weight", "model-00002-of-00002.safetensors"}}}};
  write_json(d / "model.safetensors.index.json", idx);
  {
    const auto ws = open_weights(d.path());
    EXPECT_EQ(ws->tensors().size(), 4u);
    EXPECT_EQ(ws->tensor("blk.0.attn_q.weight").file, d / "model-00002-of-00002.safetensors");
    expect_values(ws->tensor("blk.0.attn_q.weight"),
                  b2.values("model.layers.0.self_attn.q_proj.weight"));
    // A shard path opens the whole model.
    EXPECT_EQ(open_weights(d / "model-00001-of-00002.safetensors")->tensors().size(), 4u);
  }
  // A tensor the index promises but its shard lacks.
  idx["weight_map"]["model.layers.0.self_attn.k_proj.weight"] = "model-00001-of-00002.safetensors";
  write_json(d / "model.safetensors.index.json", idx);
  expect_error([&] { open_weights(d.path()); },
               {"model.safetensors.index.json", "model.layers.0.self_attn.k_proj.weight",
                "model-00001-of-00002.safetensors"});
  // A shard that does not exist.
  idx["weight_map"].erase("model.layers.0.self_attn.k_proj.weight");
  idx["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_json(d / "model.safetensors.index.json", idx);
  expect_error(
      [&] { open_weights(d.path()); },
      {"model.safetensors.index.json", "model-00003-of-00002.safetensors", "does not exist"});
  // A shard name that escapes the directory.
  idx["weight_map"]["model.norm.weight"] = "../model-00001-of-00002.safetensors";
  write_json(d / "model.safetensors.index.json", idx);
  expect_error([&] { open_weights(d.path()); }, {"model.safetensors.index.json", "invalid shard"});
}

class ConfigErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    HfBuilder b(d.path());
    add_llama_tensors(b, t, false);
    b.write();
  }
  TempDir d;
  TinyDims t;
};

TEST_F(ConfigErrors, MissingConfigJson) {
  expect_error([&] { open_weights(d.path()); }, {"config.json", "missing"});
}

TEST_F(ConfigErrors, MissingRequiredKey) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "intermediate_size",
                          "num_attention_heads", "vocab_size"}) {
    json c = llama_config(t);
    c.erase(key);
    write_json(d / "config.json", c);
    expect_error([&] { open_weights(d.path()); }, {"config.json", std::string("'") + key + "'"});
  }
}

TEST_F(ConfigErrors, WrongTypeKey) {
  json c = llama_config(t);
  c["hidden_size"] = "eight";
  write_json(d / "config.json", c);
  expect_error([&] { open_weights(d.path()); }, {"config.json", "'hidden_size'", "integer"});
}

TEST_F(ConfigErrors, MalformedConfigJson) {
  write_bytes(d / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"], ");
  expect_error([&] { open_weights(d.path()); }, {"config.json", "malformed"});
}

TEST_F(ConfigErrors, UnknownArchitecture) {
  json c = llama_config(t);
  c["architectures"] = {"FalconForCausalLM"};
  write_json(d / "config.json", c);
  expect_error([&] { open_weights(d.path()); }, {"config.json", "FalconForCausalLM"});
}

TEST_F(ConfigErrors, ShapeDisagreesWithConfig) {
  json c = llama_config(t);
  c["vocab_size"] = 17;
  write_json(d / "config.json", c);
  expect_error([&] { open_weights(d.path()); }, {"model.embed_tokens.weight", "vocab_size 17"});
}

TEST_F(ConfigErrors, UnsupportedRopeScaling) {
  json c = llama_config(t);
  c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  write_json(d / "config.json", c);
  expect_error([&] { open_weights(d.path()); }, {"config.json", "rope_scaling", "dynamic"});
}

TEST(SafetensorsModel, UnsupportedDtypeRankAndNames) {
  TinyDims t;
  const json c = llama_config(t);
  auto with_extra = [&](const std::string& name, std::vector<int64_t> shape,
                        const std::string& dtype) {
    auto d = std::make_unique<TempDir>();
    HfBuilder b(d->path());
    add_llama_tensors(b, t, false);
    b.add(name, std::move(shape), dtype);
    b.write();
    write_json(*d / "config.json", c);
    return d;
  };
  {
    auto d = with_extra("model.layers.0.self_attn.q_proj.bias", {8}, "I64");
    expect_error([&] { open_weights(d->path()); },
                 {"model.safetensors", "model.layers.0.self_attn.q_proj.bias", "I64"});
  }
  {
    auto d = with_extra("model.layers.0.self_attn.q_proj.bias", {1, 1, 1, 1, 8}, "F32");
    expect_error([&] { open_weights(d->path()); },
                 {"model.layers.0.self_attn.q_proj.bias", "rank 5"});
  }
  {
    auto d = with_extra("model.layers.0.mystery.weight", {8}, "F32");
    expect_error([&] { open_weights(d->path()); },
                 {"model.safetensors", "model.layers.0.mystery.weight"});
  }
  {
    auto d = with_extra("model.layers.7.input_layernorm.weight", {8}, "F32");
    expect_error([&] { open_weights(d->path()); },
                 {"model.layers.7.input_layernorm.weight", "layer 7"});
  }
  {  // Unused non-float tensors are fine when the model skips them.
    auto d = with_extra("model.layers.0.self_attn.rotary_emb.inv_freq", {2}, "F32");
    EXPECT_NO_THROW(open_weights(d->path()));
  }
}

TEST(SafetensorsModel, Qwen2BiasesAndQwen3Defaults) {
  TempDir d;
  TinyDims t;
  HfBuilder b(d.path());
  add_llama_tensors(b, t, false);
  b.add("model.layers.0.self_attn.q_proj.bias", {8});
  b.add("model.layers.0.self_attn.q_norm.weight", {4});
  b.write();
  json c = llama_config(t);
  c["architectures"] = {"Qwen2ForCausalLM"};
  write_json(d / "config.json", c);
  {
    const auto ws = open_weights(d.path());
    EXPECT_EQ(ws->metadata().get_string("general.architecture"), "qwen2");
    EXPECT_FALSE(ws->metadata().has("kvsieve.rope_neox"));
    expect_values(ws->tensor("blk.0.attn_q.bias"),
                  b.values("model.layers.0.self_attn.q_proj.bias"));
    expect_values(ws->tensor("blk.0.attn_q_norm.weight"),
                  b.values("model.layers.0.self_attn.q_norm.weight"));
  }
  c["architectures"] = {"Qwen3ForCausalLM"};
  write_json(d / "config.json", c);
  const auto ws = open_weights(d.path());
  EXPECT_EQ(ws->metadata().get_int("qwen3.attention.key_length"), 128);  // HF Qwen3 default
  c["head_dim"] = 4;
  write_json(d / "config.json", c);
  EXPECT_EQ(open_weights(d.path())->metadata().get_int("qwen3.attention.key_length"), 4);
}

void add_gemma_tensors(HfBuilder& b, const TinyDims& t, const std::string& prefix,
                       const std::string& dtype) {
  b.add(prefix + "embed_tokens.weight", {t.vocab, t.embd}, dtype);
  b.add(prefix + "norm.weight", {t.embd}, dtype);
  for (int64_t il = 0; il < t.layers; ++il) {
    const std::string p = prefix + "layers." + std::to_string(il) + ".";
    for (const char* n : {"input_layernorm", "post_attention_layernorm",
                          "pre_feedforward_layernorm", "post_feedforward_layernorm"})
      b.add(p + n + ".weight", {t.embd}, dtype);
    b.add(p + "self_attn.q_norm.weight", {t.head_dim}, dtype);
    b.add(p + "self_attn.k_norm.weight", {t.head_dim}, dtype);
    b.add(p + "self_attn.q_proj.weight", {t.heads * t.head_dim, t.embd}, dtype);
    b.add(p + "self_attn.k_proj.weight", {t.kv * t.head_dim, t.embd}, dtype);
    b.add(p + "self_attn.v_proj.weight", {t.kv * t.head_dim, t.embd}, dtype);
    b.add(p + "self_attn.o_proj.weight", {t.embd, t.heads * t.head_dim}, dtype);
    b.add(p + "mlp.gate_proj.weight", {t.ff, t.embd}, dtype);
    b.add(p + "mlp.up_proj.weight", {t.ff, t.embd}, dtype);
    b.add(p + "mlp.down_proj.weight", {t.embd, t.ff}, dtype);
  }
}

std::vector<float> plus_one(const std::vector<float>& v, bool via_bf16) {
  std::vector<float> r(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    r[i] = 1.0f + (via_bf16 ? bf16_to_fp32(fp32_to_bf16(v[i])) : v[i]);
  return r;
}

TEST(SafetensorsModel, Gemma3NormsAndSlidingWindow) {
  TempDir d;
  TinyDims t;
  t.layers = 7;
  HfBuilder b(d.path());
  add_gemma_tensors(b, t, "model.", "BF16");
  b.write();
  json c = {{"architectures", {"Gemma3ForCausalLM"}},
            {"hidden_size", t.embd},
            {"num_hidden_layers", t.layers},
            {"num_attention_heads", t.heads},
            {"num_key_value_heads", t.kv},
            {"head_dim", t.head_dim},
            {"intermediate_size", t.ff},
            {"vocab_size", t.vocab},
            {"sliding_window", 512},
            {"rope_local_base_freq", 10000.0},
            {"rope_theta", 1000000.0},
            {"query_pre_attn_scalar", 4},
            {"final_logit_softcapping", nullptr}};
  json lt = json::array();
  for (int il = 0; il < 7; ++il) lt.push_back(il % 6 == 5 ? "full_attention" : "sliding_attention");
  c["layer_types"] = lt;
  write_json(d / "config.json", c);
  {
    const auto ws = open_weights(d.path());
    const MetaMap& m = ws->metadata();
    EXPECT_EQ(m.get_string("general.architecture"), "gemma3");
    EXPECT_EQ(m.get_int("gemma3.attention.sliding_window"), 512);
    EXPECT_EQ(m.get_int("gemma3.attention.sliding_window_pattern"), 6);
    EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("gemma3.rope.freq_base_swa")), 10000.0f);
    EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("gemma3.rope.freq_base")), 1e6f);
    EXPECT_FALSE(m.has("gemma3.final_logit_softcapping"));
    EXPECT_FALSE(m.has("gemma3.attention.scale"));  // 4 == head_dim: llama.cpp's rule
    EXPECT_FALSE(m.has("kvsieve.rope_neox"));
    EXPECT_EQ(ws->find_tensor("output.weight"), nullptr);  // Gemma3 ties by default
    // The four per-layer norms, q/k norms and the output norm become 1+w in F32.
    const std::pair<const char*, const char*> norms[] = {
        {"blk.3.attn_norm.weight", "model.layers.3.input_layernorm.weight"},
        {"blk.3.post_attention_norm.weight", "model.layers.3.post_attention_layernorm.weight"},
        {"blk.3.ffn_norm.weight", "model.layers.3.pre_feedforward_layernorm.weight"},
        {"blk.3.post_ffw_norm.weight", "model.layers.3.post_feedforward_layernorm.weight"},
        {"blk.3.attn_q_norm.weight", "model.layers.3.self_attn.q_norm.weight"},
        {"blk.3.attn_k_norm.weight", "model.layers.3.self_attn.k_norm.weight"},
        {"output_norm.weight", "model.norm.weight"}};
    for (const auto& [g, h] : norms) {
      const TensorInfo& ti = ws->tensor(g);
      EXPECT_TRUE(ti.file.empty()) << g;
      expect_values(ti, plus_one(b.values(h), true));
    }
    // Other tensors stay as stored (BF16, zero copy).
    const TensorInfo& q = ws->tensor("blk.3.attn_q.weight");
    EXPECT_EQ(q.dtype, DType::BF16);
    EXPECT_EQ(q.ne, (std::array<int64_t, 4>{8, 8, 1, 1}));
    EXPECT_EQ(static_cast<const uint16_t*>(q.data)[5],
              fp32_to_bf16(b.values("model.layers.3.self_attn.q_proj.weight")[5]));
  }
  // A non-periodic layout becomes a per-layer bool array (true = sliding window).
  c["layer_types"][0] = "full_attention";
  c["query_pre_attn_scalar"] = 16;
  write_json(d / "config.json", c);
  {
    const auto ws = open_weights(d.path());
    const MetaArray& a = ws->metadata().get_array("gemma3.attention.sliding_window_pattern");
    ASSERT_EQ(a.size(), 7u);
    EXPECT_EQ(a.ints(), (std::vector<int64_t>{0, 1, 1, 1, 1, 0, 1}));
    EXPECT_FLOAT_EQ(static_cast<float>(ws->metadata().get_float("gemma3.attention.scale")), 0.25f);
  }
}

TEST(SafetensorsModel, Gemma3ConditionalGenerationTextConfig) {
  TempDir d;
  TinyDims t;
  t.heads = 8;
  t.kv = 4;
  t.head_dim = 256;
  t.vocab = 262208;
  t.embd = 4;
  t.ff = 4;
  t.layers = 1;
  HfBuilder b(d.path());
  add_gemma_tensors(b, t, "language_model.model.", "F32");
  b.add("vision_tower.vision_model.embeddings.patch_embedding.weight", {2, 2});
  b.add("multi_modal_projector.mm_input_projection_weight", {2, 2});
  b.write();
  // Like gemma-3-4b: text_config lists only a few keys; HF's Gemma3TextConfig supplies the rest.
  json c = {{"architectures", {"Gemma3ForConditionalGeneration"}},
            {"eos_token_id", {1, 106}},
            {"text_config",
             {{"hidden_size", t.embd},
              {"intermediate_size", t.ff},
              {"num_hidden_layers", t.layers},
              {"rope_scaling", {{"factor", 8.0}, {"rope_type", "linear"}}},
              {"sliding_window", 1024}}},
            {"vision_config", {{"hidden_size", 1152}}}};
  write_json(d / "config.json", c);
  const auto ws = open_weights(d.path());
  const MetaMap& m = ws->metadata();
  EXPECT_EQ(m.get_int("gemma3.attention.head_count"), 8);
  EXPECT_EQ(m.get_int("gemma3.attention.head_count_kv"), 4);
  EXPECT_EQ(m.get_int("gemma3.attention.key_length"), 256);
  EXPECT_EQ(m.get_int("gemma3.vocab_size"), 262208);
  EXPECT_EQ(m.get_int("gemma3.context_length"), 131072);
  EXPECT_EQ(m.get_int("gemma3.attention.sliding_window"), 1024);
  EXPECT_EQ(m.get_int("gemma3.attention.sliding_window_pattern"), 6);
  EXPECT_EQ(m.get_string("gemma3.rope.scaling.type"), "linear");
  EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("gemma3.rope.scaling.factor")), 8.0f);
  EXPECT_FLOAT_EQ(static_cast<float>(m.get_float("gemma3.attention.layer_norm_rms_epsilon")),
                  1e-6f);
  expect_values(ws->tensor("blk.0.attn_k.weight"),
                b.values("language_model.model.layers.0.self_attn.k_proj.weight"));
  for (const auto& ti : ws->tensors()) EXPECT_EQ(ti.name.find("vision"), std::string::npos);
  // A missing text_config key names its full path.
  c["text_config"].erase("hidden_size");
  write_json(d / "config.json", c);
  expect_error([&] { open_weights(d.path()); }, {"config.json", "text_config.hidden_size"});
}

}  // namespace
}  // namespace kvs
