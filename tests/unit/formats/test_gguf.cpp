// GGUF reader and writer: real files (skipped when absent), writer round trips, and one test
// per kind of bad input. Bad files are crafted with GgufWriter or by patching its bytes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "models/formats/gguf_reader.h"
#include "models/formats/gguf_writer.h"
#include "tests/support/paths.h"
#include "tests/support/temp_dir.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::vector<uint8_t> slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void spit(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Offset just past the gguf string `s` (its u64 length prefix and bytes), i.e. where a key's
// value type or a tensor's n_dims starts.
size_t after_string(const std::vector<uint8_t>& b, const std::string& s) {
  std::vector<uint8_t> needle(8 + s.size());
  const uint64_t n = s.size();
  std::memcpy(needle.data(), &n, 8);
  std::memcpy(needle.data() + 8, s.data(), s.size());
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  KVS_CHECK(it != b.end(), "test file lacks string " + s);
  return static_cast<size_t>(it - b.begin()) + needle.size();
}

template <class T>
void poke(std::vector<uint8_t>& b, size_t at, T v) {
  KVS_CHECK(at + sizeof(T) <= b.size());
  std::memcpy(b.data() + at, &v, sizeof(T));
}

// Tensor data shared by the crafted files.
const std::vector<float> kA = {1, 2, 3, 4, 5, 6, 7, 8};  // [2][4]
std::vector<uint8_t> q8_row() {
  std::vector<float> x(32);  // [32]
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i) / 8 - 2;
  std::vector<uint8_t> q(row_bytes(DType::Q8_0, 32));
  quantize_row(DType::Q8_0, x.data(), q.data(), 32);
  return q;
}

// A small valid file: a few keys of different kinds and two tensors.
void write_small(const std::string& path, uint32_t alignment = 32,
                 void (*extra)(GgufWriter&) = nullptr) {
  static const std::vector<uint8_t> q = q8_row();
  GgufWriter w(alignment);
  w.add_string("general.architecture", "llama");
  w.add_u32("llama.block_count", 2);
  w.add_f32("llama.rope.freq_base", 10000.0f);
  w.add_strings("tokenizer.ggml.tokens", {"<unk>", "<s>", "hello"});
  w.add_ints("tokenizer.ggml.token_type", {2, 3, 1});
  if (extra != nullptr) extra(w);
  w.add_tensor("tensor_a.weight", DType::F32, {4, 2}, kA.data(), kA.size() * sizeof(float));
  w.add_tensor("tensor_b.weight", DType::Q8_0, {32, 1}, q.data(), q.size());
  w.write(path);
}

// Runs the reader and checks that it throws kvs::Error whose message holds every fragment.
void expect_gguf_error(const std::string& path, const std::vector<std::string>& fragments) {
  try {
    open_gguf(path);
    ADD_FAILURE() << "no error for " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    for (const auto& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "'" << f << "' not in: " << msg;
  }
}

// ---------------------------------------------------------------- real files

TEST(GgufReal, Stories260K) {
  const std::string path = KVS_STORIES;
  KVS_REQUIRE_FILE(path);
  auto src = open_weights(path);
  EXPECT_EQ(src->format(), "gguf");
  const MetaMap& m = src->metadata();
  EXPECT_EQ(m.get_string("general.architecture"), "llama");
  EXPECT_EQ(m.entries().size(), 19u);
  EXPECT_EQ(src->tensors().size(), 48u);
  EXPECT_EQ(m.get_int("llama.block_count"), 5);
  EXPECT_EQ(m.get_int("llama.embedding_length"), 64);
  EXPECT_EQ(m.get_int("llama.attention.head_count_kv"), 4);
  EXPECT_FLOAT_EQ(m.get_float("llama.attention.layer_norm_rms_epsilon"), 1e-5f);
  EXPECT_EQ(m.get_array("tokenizer.ggml.tokens").size(), 512u);
  EXPECT_EQ(m.get_array("tokenizer.ggml.tokens").strings[1], "<s>");

  const TensorInfo& emb = src->tensor("token_embd.weight");
  EXPECT_EQ(emb.dtype, DType::F32);
  EXPECT_EQ(emb.n_dims, 2);
  EXPECT_EQ(emb.ne[0], 64);
  EXPECT_EQ(emb.ne[1], 512);
  EXPECT_EQ(emb.file_offset, 14176u);  // as gguf-py's GGUFReader reports it
  EXPECT_EQ(src->tensor("blk.0.attn_k.weight").ne[1], 32);
  EXPECT_EQ(src->tensor("blk.0.ffn_down.weight").ne[0], 172);
  EXPECT_EQ(src->tensor("output_norm.weight").n_dims, 1);

  // Row 0 of the embedding as gguf-py reads it.
  const float want[] = {-0.29474878311157227f, 0.5618956089019775f,   0.1754225343465805f,
                        0.34057360887527466f,  -0.11446066945791245f, 0.2313181459903717f};
  std::vector<float> row(64);  // [n_embd]
  dequantize_row(emb.dtype, emb.view().row(0), row.data(), 64);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(row[i], want[i]) << i;
}

TEST(GgufReal, SmolLM2Q4_1) {
  const std::string path = KVS_SMOLLM2;
  KVS_REQUIRE_FILE(path);
  auto src = open_gguf(path);
  const MetaMap& m = src->metadata();
  EXPECT_EQ(m.get_string("general.architecture"), "llama");
  EXPECT_EQ(m.entries().size(), 33u);
  EXPECT_EQ(src->tensors().size(), 272u);
  EXPECT_EQ(m.get_int("llama.block_count"), 30);
  EXPECT_EQ(m.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(m.get_array("tokenizer.ggml.merges").size(), 48900u);
  const TensorInfo& emb = src->tensor("token_embd.weight");
  EXPECT_EQ(emb.dtype, DType::Q8_0);
  EXPECT_EQ(emb.ne[0], 576);
  EXPECT_EQ(emb.ne[1], 49152);
  const TensorInfo& q = src->tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q.dtype, DType::Q4_1);
  std::vector<float> row(576);  // [n_embd]
  dequantize_row(q.dtype, q.view().row(1), row.data(), 576);
  EXPECT_EQ(row[0], -0.1173095703125f);
  EXPECT_EQ(row[2], -0.19281005859375f);
  dequantize_row(emb.dtype, emb.view().row(5), row.data(), 576);
  EXPECT_EQ(row[0], -0.00799560546875f);
  EXPECT_EQ(row[1], -0.03997802734375f);
}

TEST(GgufReal, Gemma3KQuants) {
  const std::string path = KVS_GEMMA3;
  KVS_REQUIRE_FILE(path);
  auto src = open_gguf(path);
  EXPECT_EQ(src->metadata().get_string("general.architecture"), "gemma3");
  EXPECT_EQ(src->tensors().size(), 236u);
  EXPECT_EQ(src->metadata().get_int("gemma3.block_count"), 18);
  struct Probe {
    const char* name;
    DType type;
    int64_t ne0, ne1;
    float v0, v1, v2;  // row 1, elements 0..2, from gguf-py
  };
  const Probe probes[] = {
      {"blk.0.attn_output.weight", DType::Q4_K, 1024, 640, 0.029732823371887207f,
       -0.10219860076904297f, -0.00624847412109375f},
      {"blk.0.attn_q.weight", DType::Q5_0, 640, 1024, 0.003387451171875f, -0.02032470703125f,
       -0.030487060546875f},
      {"blk.0.ffn_down.weight", DType::Q6_K, 2048, 640, -0.0033416748046875f, -0.00835418701171875f,
       -0.01336669921875f},
  };
  for (const Probe& p : probes) {
    const TensorInfo& t = src->tensor(p.name);
    EXPECT_EQ(t.dtype, p.type) << p.name;
    ASSERT_EQ(t.ne[0], p.ne0) << p.name;
    EXPECT_EQ(t.ne[1], p.ne1) << p.name;
    std::vector<float> row(static_cast<size_t>(t.ne[0]));  // [ne0]
    dequantize_row(t.dtype, t.view().row(1), row.data(), t.ne[0]);
    EXPECT_EQ(row[0], p.v0) << p.name;
    EXPECT_EQ(row[1], p.v1) << p.name;
    EXPECT_EQ(row[2], p.v2) << p.name;
  }
}

// ---------------------------------------------------------------- writer round trips

TEST(GgufWriter, RoundTripsEveryMetadataKindAndTensors) {
  TempDir dir;
  const std::string path = dir / "all.gguf";
  const std::vector<uint8_t> q = q8_row();
  std::vector<uint16_t> h = {fp32_to_fp16(1.5f), fp32_to_fp16(-2.0f)};  // [2]
  GgufWriter w(64);
  w.add("k.u8", MetaValue::of_int(200, MetaType::U8));
  w.add("k.i8", MetaValue::of_int(-100, MetaType::I8));
  w.add("k.u16", MetaValue::of_int(60000, MetaType::U16));
  w.add("k.i16", MetaValue::of_int(-30000, MetaType::I16));
  w.add("k.u32", MetaValue::of_int(4000000000, MetaType::U32));
  w.add("k.i32", MetaValue::of_int(-2000000000, MetaType::I32));
  w.add("k.u64", MetaValue::of_int(-1, MetaType::U64));  // 2^64-1 as its bit pattern
  w.add("k.i64", MetaValue::of_int(-(int64_t{1} << 40), MetaType::I64));
  w.add("k.f32", MetaValue::of_float(0.25, MetaType::F32));
  w.add("k.f64", MetaValue::of_float(1e300, MetaType::F64));
  w.add("k.bool", MetaValue::of_bool(true));
  w.add_string("k.str", "h\xC3\xA9llo");
  w.add_strings("k.strs", {"a", "", "ccc"});
  w.add_ints("k.ints", {1, -2, 3}, MetaType::I64);
  w.add_ints("k.bools", {1, 0}, MetaType::Bool);
  w.add_floats("k.floats", {0.5, -1.25}, MetaType::F32);
  const MetaArray inner = MetaArray::of_ints({7, 8}, MetaType::U8);
  const MetaArray outer =
      MetaArray::of_items({MetaValue::of_array(inner), MetaValue::of_array(inner)});
  w.add("k.nested", MetaValue::of_array(outer));
  w.add_tensor("f32", DType::F32, {4, 2}, kA.data(), kA.size() * sizeof(float));
  w.add_tensor("f16", DType::F16, {2}, h.data(), h.size() * 2);
  w.add_tensor("q8", DType::Q8_0, {32, 1, 1, 1}, q.data(), q.size());
  w.write(path);

  auto src = open_gguf(path);
  auto* g = dynamic_cast<GgufSource*>(src.get());
  ASSERT_NE(g, nullptr);
  EXPECT_EQ(g->version(), 3u);
  EXPECT_EQ(g->alignment(), 64u);
  EXPECT_EQ(g->data_offset() % 64, 0u);
  const MetaMap& m = src->metadata();
  EXPECT_EQ(m.get_int("general.alignment"), 64);
  EXPECT_EQ(m.find("general.alignment")->type, MetaType::U32);
  EXPECT_EQ(m.get_int("k.u8"), 200);
  EXPECT_EQ(m.get_int("k.i8"), -100);
  EXPECT_EQ(m.get_int("k.u16"), 60000);
  EXPECT_EQ(m.get_int("k.i16"), -30000);
  EXPECT_EQ(m.get_int("k.u32"), 4000000000);
  EXPECT_EQ(m.get_int("k.i32"), -2000000000);
  EXPECT_EQ(m.find("k.u64")->type, MetaType::U64);
  EXPECT_EQ(static_cast<uint64_t>(std::get<int64_t>(m.find("k.u64")->value)), ~uint64_t{0});
  EXPECT_EQ(m.get_int("k.i64"), -(int64_t{1} << 40));
  EXPECT_EQ(m.get_float("k.f32"), 0.25);
  EXPECT_EQ(m.get_float("k.f64"), 1e300);
  EXPECT_TRUE(m.get_bool("k.bool", false));
  EXPECT_EQ(m.get_string("k.str"), "h\xC3\xA9llo");
  EXPECT_EQ(m.get_array("k.strs").strings.to_vector(), (std::vector<std::string>{"a", "", "ccc"}));
  EXPECT_EQ(m.get_array("k.ints").ints(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(m.get_array("k.ints").elem_type, MetaType::I64);
  EXPECT_EQ(m.get_array("k.bools").ints(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(m.get_array("k.floats").floats(), (std::vector<double>{0.5, -1.25}));
  // Arrays are views into the file: the strings cost their offsets only.
  EXPECT_EQ(m.get_array("k.strs").strings.owned_bytes(), 3 * sizeof(uint32_t));
  const MetaArray& nested = m.get_array("k.nested");
  ASSERT_EQ(nested.size(), 2u);
  EXPECT_EQ(nested.items[1].to_display(), "[7, 8]");

  ASSERT_EQ(src->tensors().size(), 3u);
  EXPECT_EQ(src->tensors()[0].name, "f32");  // info order is kept
  for (const auto& t : src->tensors()) {
    EXPECT_EQ(t.file_offset % 64, 0u) << t.name;
    EXPECT_EQ(t.file, path);
  }
  const TensorInfo& a = src->tensor("f32");
  EXPECT_EQ(a.nbytes, 32u);
  EXPECT_EQ(0, std::memcmp(a.data, kA.data(), 32));
  const TensorInfo& f16 = src->tensor("f16");
  EXPECT_EQ(f16.n_dims, 1);
  EXPECT_EQ(0, std::memcmp(f16.data, h.data(), 4));
  const TensorInfo& q8 = src->tensor("q8");
  EXPECT_EQ(q8.n_dims, 4);
  EXPECT_EQ(0, std::memcmp(q8.data, q.data(), q.size()));
  // Zero copy: the data points into the file as mapped, at its recorded offset.
  EXPECT_EQ(static_cast<const uint8_t*>(q8.data) - g->file().data(),
            static_cast<ptrdiff_t>(q8.file_offset));
  EXPECT_EQ(src->total_bytes(), 32u + 4u + q.size());
}

TEST(GgufWriter, WritesAtomicallyAndReplacesTarget) {
  TempDir dir;
  const std::string path = dir / "m.gguf";
  spit(path, {1, 2, 3});
  write_small(path);
  EXPECT_NO_THROW(open_gguf(path));
  for (const auto& e : fs::directory_iterator(dir.path()))
    EXPECT_EQ(e.path().filename(), "m.gguf");  // no temp file left behind
  EXPECT_THROW(write_small(dir / "no/such/dir/x.gguf"), Error);
}

TEST(GgufReader, AcceptsVersion2AndNoTensors) {
  TempDir dir;
  const std::string path = dir / "v2.gguf";
  write_small(path);
  auto b = slurp(path);
  poke<uint32_t>(b, 4, 2);
  spit(path, b);
  EXPECT_EQ(dynamic_cast<GgufSource&>(*open_gguf(path)).version(), 2u);

  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.write(path);
  auto src = open_gguf(path);
  EXPECT_TRUE(src->tensors().empty());
  EXPECT_EQ(src->metadata().get_string("general.architecture"), "llama");
}

// ---------------------------------------------------------------- bad input, one per case

class GgufBad : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_ / "bad.gguf";
    write_small(path_);
    bytes_ = slurp(path_);
  }
  void save() { spit(path_, bytes_); }
  // Where tensor `name`'s info fields start (n_dims).
  size_t tensor_at(const std::string& name) { return after_string(bytes_, name); }

  TempDir dir_;
  std::string path_;
  std::vector<uint8_t> bytes_;
};

TEST_F(GgufBad, MissingFile) {
  const std::string p = dir_ / "absent.gguf";
  expect_gguf_error(p, {"cannot open"});
  EXPECT_THROW(open_weights(p), Error);
}

TEST_F(GgufBad, WrongMagic) {
  bytes_[0] = 'X';
  save();
  expect_gguf_error(path_, {"not a GGUF file", "offset 0"});
}

TEST_F(GgufBad, Version1) {
  poke<uint32_t>(bytes_, 4, 1);
  save();
  expect_gguf_error(path_, {"version 1", "offset 4"});
}

TEST_F(GgufBad, Version4) {
  poke<uint32_t>(bytes_, 4, 4);
  save();
  expect_gguf_error(path_, {"version 4", "offset 4"});
}

TEST_F(GgufBad, BigEndian) {
  // What a big-endian writer produces: the version (and every later field) byte-swapped.
  poke<uint32_t>(bytes_, 4, __builtin_bswap32(3));
  save();
  expect_gguf_error(path_, {"big-endian"});
  bytes_[0] = 'F', bytes_[1] = 'U', bytes_[2] = 'G', bytes_[3] = 'G';  // swapped magic too
  save();
  expect_gguf_error(path_, {"big-endian"});
}

TEST_F(GgufBad, TruncatedHeader) {
  bytes_.resize(12);
  save();
  expect_gguf_error(path_, {"truncated", "n_tensors", "offset 8"});
  bytes_.resize(2);
  save();
  expect_gguf_error(path_, {"not a GGUF file"});
}

TEST_F(GgufBad, TruncatedInKvSection) {
  bytes_.resize(after_string(bytes_, "llama.block_count") + 4 + 2);  // half of the u32 value
  save();
  expect_gguf_error(path_, {"truncated", "'llama.block_count'"});
}

TEST_F(GgufBad, TruncatedInStringArray) {
  bytes_.resize(after_string(bytes_, "<s>") + 3);  // inside "hello"
  save();
  expect_gguf_error(path_, {"truncated", "'tokenizer.ggml.tokens'"});
}

TEST_F(GgufBad, TruncatedTensorData) {
  bytes_.resize(bytes_.size() - 40);  // cuts into tensor_b's 34 bytes (+ padding)
  save();
  expect_gguf_error(path_, {"'tensor_b.weight'", "outside the file"});
}

TEST_F(GgufBad, TensorOffsetOutsideFile) {
  const size_t at = tensor_at("tensor_a.weight") + 4 + 2 * 8 + 4;  // offset field
  poke<uint64_t>(bytes_, at, uint64_t{1} << 40);
  save();
  expect_gguf_error(path_,
                    {"'tensor_a.weight'", "outside the file", "offset " + std::to_string(at)});
  poke<uint64_t>(bytes_, at, ~uint64_t{31});  // offset + size would wrap around 2^64
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "outside the file"});
}

TEST_F(GgufBad, MisalignedTensorOffset) {
  const size_t at = tensor_at("tensor_b.weight") + 4 + 2 * 8 + 4;
  poke<uint64_t>(bytes_, at, 40);
  save();
  expect_gguf_error(path_, {"'tensor_b.weight'", "not a multiple of the alignment 32"});
}

TEST_F(GgufBad, AbsurdTensorCount) {
  poke<int64_t>(bytes_, 8, int64_t{1} << 62);
  save();
  expect_gguf_error(path_, {"n_tensors", "offset 8"});
  poke<int64_t>(bytes_, 8, -1);
  save();
  expect_gguf_error(path_, {"n_tensors", "negative"});
}

TEST_F(GgufBad, AbsurdKvCount) {
  poke<int64_t>(bytes_, 16, int64_t{1} << 62);
  save();
  expect_gguf_error(path_, {"n_kv", "offset 16"});
}

TEST_F(GgufBad, AbsurdArrayCount) {
  const size_t at = after_string(bytes_, "tokenizer.ggml.tokens") + 4 + 4;  // count field
  poke<uint64_t>(bytes_, at, uint64_t{1} << 62);
  save();
  expect_gguf_error(path_, {"'tokenizer.ggml.tokens'", "array count"});
  poke<uint64_t>(bytes_, at, 1000);  // under the cap but more than the bytes left
  save();
  expect_gguf_error(path_, {"'tokenizer.ggml.tokens'"});
}

TEST_F(GgufBad, AbsurdStringLength) {
  const size_t at = after_string(bytes_, "general.architecture") + 4;  // value length
  poke<uint64_t>(bytes_, at, uint64_t{1} << 62);
  save();
  expect_gguf_error(path_, {"'general.architecture'", "exceeds 1 GiB"});
  poke<uint64_t>(bytes_, at, 1000000);  // under 1 GiB but past the end of the file
  save();
  expect_gguf_error(path_, {"'general.architecture'", "truncated"});
  poke<uint64_t>(bytes_, 24, uint64_t{1} << 62);  // the first key's own length
  save();
  expect_gguf_error(path_, {"metadata key #0", "offset 24"});
}

TEST_F(GgufBad, DimsOverflow) {
  const size_t at = tensor_at("tensor_a.weight") + 4;  // ne[0], ne[1]
  poke<int64_t>(bytes_, at, int64_t{1} << 40);
  poke<int64_t>(bytes_, at + 8, int64_t{1} << 40);
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "overflow"});
  poke<int64_t>(bytes_, at, int64_t{1} << 32);  // no overflow, but far more than the file
  poke<int64_t>(bytes_, at + 8, 2);
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "exceed the file size"});
  poke<int64_t>(bytes_, at, -4);
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "negative"});
}

TEST_F(GgufBad, FiveDims) {
  poke<uint32_t>(bytes_, tensor_at("tensor_a.weight"), 5);
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "n_dims 5"});
}

TEST_F(GgufBad, DuplicateTensorNames) {
  GgufWriter w;
  w.add_tensor("dup.weight", DType::F32, {4, 2}, kA.data(), 32);
  w.add_tensor("dup.weight", DType::F32, {4, 2}, kA.data(), 32);
  w.write(path_);
  expect_gguf_error(path_, {"duplicate tensor 'dup.weight'"});
}

TEST_F(GgufBad, DuplicateKeys) {
  write_small(path_, 32, [](GgufWriter& w) { w.add_u32("llama.block_count", 3); });
  expect_gguf_error(path_, {"duplicate metadata key 'llama.block_count'"});
}

TEST_F(GgufBad, EmptyKey) {
  write_small(path_, 32, [](GgufWriter& w) { w.add_u32("", 3); });
  expect_gguf_error(path_, {"metadata key #5 is empty"});
}

TEST_F(GgufBad, TensorNameTooLong) {
  const std::string name(64, 'n');
  GgufWriter w;
  w.add_tensor(name, DType::F32, {4, 2}, kA.data(), 32);
  w.write(path_);
  expect_gguf_error(path_, {"'" + name + "'", "limit 63"});
}

TEST_F(GgufBad, UnknownTensorType) {
  const size_t at = tensor_at("tensor_a.weight") + 4 + 2 * 8;
  poke<uint32_t>(bytes_, at, 99);
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "unknown ggml type id 99"});
  poke<uint32_t>(bytes_, at, 26);  // I32: a known type, but not one weights may use
  save();
  expect_gguf_error(path_, {"'tensor_a.weight'", "I32 (id 26)", "not a supported weight type"});
}

TEST_F(GgufBad, RowNotAMultipleOfTheBlockSize) {
  poke<int64_t>(bytes_, tensor_at("tensor_b.weight") + 4, 16);  // Q8_0 blocks hold 32
  save();
  expect_gguf_error(path_, {"'tensor_b.weight'", "block size 32"});
}

TEST_F(GgufBad, UnknownMetadataValueType) {
  const size_t at = after_string(bytes_, "llama.block_count");
  poke<int32_t>(bytes_, at, 13);
  save();
  expect_gguf_error(
      path_, {"'llama.block_count'", "unknown value type 13", "offset " + std::to_string(at)});
  const size_t arr = after_string(bytes_, "tokenizer.ggml.token_type") + 4;
  poke<int32_t>(bytes_, at, 4);  // restore
  poke<int32_t>(bytes_, arr, -7);
  save();
  expect_gguf_error(path_, {"'tokenizer.ggml.token_type'", "unknown array element type -7"});
}

TEST_F(GgufBad, DeeplyNestedArrays) {
  // Each level is a one-element array of arrays: recursion must stop long before the stack.
  GgufWriter w;
  MetaArray a = MetaArray::of_ints({1}, MetaType::U8);
  for (int i = 0; i < 20; ++i) {
    MetaArray outer = MetaArray::of_items({MetaValue::of_array(a)});
    a = outer;
  }
  w.add("deep", MetaValue::of_array(a));
  w.write(path_);
  expect_gguf_error(path_, {"'deep'", "nested deeper"});
}

TEST_F(GgufBad, BadAlignmentValue) {
  write_small(path_, 32, [](GgufWriter& w) { w.add_u32("general.alignment", 24); });
  expect_gguf_error(path_, {"'general.alignment'", "power of two"});
  write_small(path_, 32, [](GgufWriter& w) { w.add_u32("general.alignment", 0); });
  expect_gguf_error(path_, {"'general.alignment'", "power of two"});
  write_small(path_, 32, [](GgufWriter& w) {
    w.add("general.alignment", MetaValue::of_int(64, MetaType::U64));
  });
  expect_gguf_error(path_, {"'general.alignment'", "has type u64, expected u32"});
}

TEST_F(GgufBad, TensorDataSectionPastEnd) {
  const size_t infos_end = tensor_at("tensor_b.weight") + 4 + 2 * 8 + 4 + 8;
  bytes_.resize(infos_end);
  save();
  // Unless the infos happen to end aligned, the padding itself is already missing.
  expect_gguf_error(path_,
                    {infos_end % 32 == 0 ? "outside the file" : "beyond the end of the file"});
}

// Random corruption anywhere (header, keys, values, infos, data) and every truncation point
// must give either a valid source or kvs::Error: never a crash, hang or bad_alloc.
TEST_F(GgufBad, RandomCorruptionOnlyEverThrowsError) {
  const std::vector<uint8_t> good = bytes_;
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&state] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  int errors = 0;
  for (int iter = 0; iter < 1000; ++iter) {
    bytes_ = good;
    const int n_flips = 1 + static_cast<int>(next() % 4);
    for (int f = 0; f < n_flips; ++f) {
      const size_t at = next() % bytes_.size();
      // Mostly small values and 0xFF runs: the ones that turn counts and lengths absurd.
      bytes_[at] = static_cast<uint8_t>(next() % 3 == 0 ? 0xFF : next());
    }
    save();
    try {
      auto src = open_gguf(path_);
      for (const auto& t : src->tensors()) ASSERT_LE(t.file_offset + t.nbytes, bytes_.size());
    } catch (const Error&) {
      ++errors;
    }
  }
  EXPECT_GT(errors, 100);  // the corruption really reaches the checks
  // The last tensor's trailing padding is optional, as in llama.cpp's loader.
  spit(path_, good);
  const auto src = open_gguf(path_);
  const size_t data_end = src->tensors().back().file_offset + src->tensors().back().nbytes;
  ASSERT_LT(data_end, good.size());
  for (size_t len = 0; len < good.size(); ++len) {
    bytes_.assign(good.begin(), good.begin() + static_cast<ptrdiff_t>(len));
    save();
    if (len < data_end)
      EXPECT_THROW(open_gguf(path_), Error) << "truncated to " << len;
    else
      EXPECT_NO_THROW(open_gguf(path_)) << "truncated to " << len;
  }
}

}  // namespace
}  // namespace kvs
