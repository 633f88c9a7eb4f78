// GGUF -> HF conversion round trips: every tensor comes back from the HF directory under its
// GGUF name with the same shape and values (llama Q/K through the kvsieve.rope_neox contract),
// the same hyper-parameters and the same tokenization.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "models/convert/convert.h"
#include "models/formats/safetensors_file.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/tokenizer.h"
#include "tests/support/paths.h"
#include "tests/support/temp_dir.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

using test::TempDir;

std::vector<float> dequant(const TensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.nelements()));
  const int64_t rows = t.nelements() / t.ne[0];
  const size_t rb = row_bytes(t.dtype, t.ne[0]);
  for (int64_t r = 0; r < rows; ++r)
    dequantize_row(t.dtype, static_cast<const uint8_t*>(t.data) + r * rb, v.data() + r * t.ne[0],
                   t.ne[0]);
  return v;
}

json read_json(const std::string& p) {
  std::ifstream in(p);
  return json::parse(in);
}

// Largest error a cast of `want` to `dt` may introduce (round to nearest).
double cast_tolerance(DType dt, double want) {
  switch (dt) {
    case DType::F32:
      return 0.0;
    case DType::F16:
      return std::fabs(want) * std::ldexp(1.0, -11) + std::ldexp(1.0, -25);
    default:
      return std::fabs(want) * std::ldexp(1.0, -8) + 1e-38;
  }
}

struct Checked {
  size_t tensors = 0;
  size_t qk = 0;
  size_t norms = 0;
};

// The whole contract, for one GGUF and one output dtype.
Checked check_round_trip(const std::string& gguf, DType dt, const std::string& out) {
  convert_gguf_to_hf(gguf, out, dt);
  const auto g = open_weights(gguf);
  const auto h = open_weights(out);
  EXPECT_EQ(h->format(), "safetensors");
  const MetaMap& gm = g->metadata();
  const MetaMap& hm = h->metadata();
  const std::string arch = gm.get_string("general.architecture");
  EXPECT_EQ(hm.get_string("general.architecture"), arch);
  const std::string a = arch + ".";
  for (const char* k : {"embedding_length", "block_count", "feed_forward_length",
                        "attention.head_count", "context_length"})
    EXPECT_EQ(hm.get_int(a + k), gm.get_int(a + k)) << k;
  const int64_t n_head = gm.get_int(a + "attention.head_count");
  const int64_t n_head_kv = gm.get_int(a + "attention.head_count_kv", n_head);
  EXPECT_EQ(hm.get_int(a + "attention.head_count_kv"), n_head_kv);
  const int64_t head_dim =
      gm.get_int(a + "attention.key_length", gm.get_int(a + "embedding_length") / n_head);
  EXPECT_EQ(hm.get_int(a + "attention.key_length"), head_dim);
  for (const char* k : {"attention.layer_norm_rms_epsilon", "rope.freq_base"})
    EXPECT_EQ(static_cast<float>(hm.get_float(a + k)),
              static_cast<float>(gm.get_float(a + k, 10000.0)))
        << k;
  EXPECT_EQ(hm.get_bool("kvsieve.rope_neox", false), arch == "llama");
  if (arch == "gemma3") {
    EXPECT_EQ(hm.get_int(a + "attention.sliding_window"),
              gm.get_int(a + "attention.sliding_window"));
    EXPECT_EQ(hm.get_int(a + "attention.sliding_window_pattern"),
              gm.get_int(a + "attention.sliding_window_pattern", 6));
    EXPECT_EQ(hm.get_float(a + "rope.freq_base_swa"),
              gm.get_float(a + "rope.freq_base_swa", 10000.0));
  }

  Checked c;
  EXPECT_EQ(h->tensors().size(), g->tensors().size());
  for (const TensorInfo& gt : g->tensors()) {
    const TensorInfo* ht = h->find_tensor(gt.name);
    if (ht == nullptr) {
      ADD_FAILURE() << "missing " << gt.name;
      continue;
    }
    EXPECT_EQ(ht->ne, gt.ne) << gt.name;
    EXPECT_EQ(ht->n_dims, gt.n_dims) << gt.name;
    const std::vector<float> gv = dequant(gt);
    const std::vector<float> hv = dequant(*ht);
    const bool is_q = gt.name.find(".attn_q.") != std::string::npos;
    const bool is_k = gt.name.find(".attn_k.") != std::string::npos;
    const bool norm = arch == "gemma3" && gt.name.ends_with("norm.weight");
    const int64_t ne0 = gt.ne[0];
    const int64_t rows = gt.nelements() / ne0;
    size_t bad = 0;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t src = r;
      if (arch == "llama" && (is_q || is_k)) {
        // GGUF = HF.reshape(n_h, 2, d/2, in).swapaxes(1, 2): HF row (head, s, i) is GGUF row
        // (head, i, s). The HF source keeps HF order and rotates NEOX-style instead.
        const int64_t d = rows / (is_q ? n_head : n_head_kv);
        const int64_t head = r / d, s = (r % d) / (d / 2), i = (r % d) % (d / 2);
        src = head * d + 2 * i + s;
      }
      for (int64_t e = 0; e < ne0; ++e) {
        const double want = gv[src * ne0 + e];
        const double got = hv[r * ne0 + e];
        // Norms travel as w = g-1 in the output dtype and come back as 1+w.
        const double tol = norm ? cast_tolerance(dt, want - 1.0) + std::ldexp(std::fabs(want), -23)
                                : cast_tolerance(dt, want);
        if (!(std::fabs(got - want) <= tol) && bad++ < 3)
          ADD_FAILURE() << gt.name << " row " << r << " col " << e << ": " << got << " vs " << want;
      }
    }
    EXPECT_EQ(bad, 0u) << gt.name;
    c.tensors++;
    if (arch == "llama" && (is_q || is_k)) c.qk++;
    if (norm) c.norms++;
  }

  // Tokenization through the exported HF tokenizer files matches the GGUF vocab.
  const auto gtok = load_tokenizer(*g);
  const auto htok = load_tokenizer(*h);
  EXPECT_EQ(htok->n_vocab(), gtok->n_vocab());
  for (const char* s :
       {"Hello world", "Once upon a time, there was a little girl named Lily.",
        " leading space and  double  spaces", "numbers 12345 and symbols #@!",
        "multi\nline\n\ntext", "caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac", ""}) {
    EXPECT_EQ(htok->encode(s, true, false), gtok->encode(s, true, false)) << s;
    EXPECT_EQ(htok->encode(s, false, true), gtok->encode(s, false, true)) << s;
  }
  return c;
}

TEST(Convert, Stories260KF32RoundTripsExactly) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir d;
  const std::string out = d / "hf";  // created by convert
  const Checked c = check_round_trip(KVS_STORIES, DType::F32, out);
  EXPECT_EQ(c.tensors, 48u);
  EXPECT_EQ(c.qk, 10u);

  // The files follow HF conventions.
  const json cfg = read_json(out + "/config.json");
  EXPECT_EQ(cfg["architectures"][0], "LlamaForCausalLM");
  EXPECT_EQ(cfg["model_type"], "llama");
  EXPECT_EQ(cfg["torch_dtype"], "float32");
  EXPECT_EQ(cfg["hidden_size"], 64);
  EXPECT_EQ(cfg["num_key_value_heads"], 4);
  EXPECT_EQ(cfg["head_dim"], 8);
  EXPECT_EQ(cfg["intermediate_size"], 172);
  EXPECT_EQ(cfg["vocab_size"], 512);
  EXPECT_EQ(cfg["tie_word_embeddings"], false);
  EXPECT_EQ(cfg["rms_norm_eps"], 1e-5);
  EXPECT_EQ(cfg["rope_theta"], 10000.0);
  EXPECT_EQ(cfg["bos_token_id"], 1);
  EXPECT_EQ(cfg["eos_token_id"], 2);
  EXPECT_TRUE(cfg["rope_scaling"].is_null());
  EXPECT_EQ(read_json(out + "/generation_config.json")["eos_token_id"], 2);
  const SafetensorsFile st(out + "/model.safetensors");
  EXPECT_EQ(st.metadata().at("format"), "pt");
  const SafetensorsTensor* k = st.find("model.layers.4.self_attn.k_proj.weight");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->dtype_name, "F32");
  EXPECT_EQ(k->shape, (std::vector<int64_t>{32, 64}));  // [out, in]
  EXPECT_NE(st.find("lm_head.weight"), nullptr);
  EXPECT_NE(st.find("model.layers.0.post_attention_layernorm.weight"), nullptr);
  // Only finished files: no temporaries left behind.
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
}

TEST(Convert, OutputDirectoryRules) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir d;
  // A non-empty directory that is not ours is refused, and left alone.
  const std::string other = d / "other";
  fs::create_directories(other);
  std::ofstream(other + "/notes.txt") << "keep me";
  try {
    convert_gguf_to_hf(KVS_STORIES, other, DType::F16);
    ADD_FAILURE() << "expected kvs::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--force"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(other + "/model.safetensors"));
  ConvertOptions force;
  force.force = true;
  convert_gguf_to_hf(KVS_STORIES, other, DType::F16, force);
  EXPECT_TRUE(fs::exists(other + "/notes.txt"));
  EXPECT_TRUE(is_previous_convert_output(other));
  // A previous output is overwritten without --force, here in another dtype.
  size_t calls = 0;
  ConvertOptions progress;
  progress.progress = [&](size_t done, size_t total, const std::string&) {
    ++calls;
    EXPECT_LE(done, total);
  };
  convert_gguf_to_hf(KVS_STORIES, other, DType::BF16, progress);
  EXPECT_EQ(calls, 48u);
  EXPECT_EQ(read_json(other + "/config.json")["torch_dtype"], "bfloat16");
  EXPECT_EQ(SafetensorsFile(other + "/model.safetensors").find("model.norm.weight")->dtype_name,
            "BF16");
  // Unsupported output dtype and a non-GGUF input.
  EXPECT_THROW(convert_gguf_to_hf(KVS_STORIES, d / "q", DType::Q8_0), Error);
  EXPECT_THROW(convert_gguf_to_hf(other, d / "x", DType::F32), Error);
  EXPECT_FALSE(fs::exists(d / "q"));
}

TEST(Convert, SmolLM2Bf16RoundTrip) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  TempDir d;
  const Checked c = check_round_trip(KVS_SMOLLM2, DType::BF16, d / "hf");
  EXPECT_EQ(c.qk, 60u);
  const json cfg = read_json(d / "hf/config.json");
  EXPECT_EQ(cfg["tie_word_embeddings"], true);
  EXPECT_EQ(cfg["rope_theta"], 100000.0);
  EXPECT_EQ(cfg["torch_dtype"], "bfloat16");
}

TEST(Convert, Gemma3F16RoundTrip) {
  KVS_REQUIRE_FILE(KVS_GEMMA3);
  TempDir d;
  const Checked c = check_round_trip(KVS_GEMMA3, DType::F16, d / "hf");
  EXPECT_EQ(c.norms, 18u * 6 + 1);
  const json cfg = read_json(d / "hf/config.json");
  EXPECT_EQ(cfg["architectures"][0], "Gemma3ForCausalLM");
  EXPECT_EQ(cfg["model_type"], "gemma3_text");
  EXPECT_EQ(cfg["hidden_activation"], "gelu_pytorch_tanh");
  EXPECT_EQ(cfg["query_pre_attn_scalar"], 256);
  EXPECT_EQ(cfg["sliding_window"], 512);
  EXPECT_EQ(cfg["layer_types"][5], "full_attention");
  EXPECT_EQ(cfg["layer_types"][4], "sliding_attention");
  EXPECT_EQ(cfg["rope_local_base_freq"], 10000.0);
  EXPECT_EQ(cfg["rms_norm_eps"], 1e-6);
  EXPECT_EQ(cfg["bos_token_id"], 2);
  EXPECT_EQ(cfg["eos_token_id"], 1);
  // Generation also stops at <end_of_turn>, as in Google's generation_config.json.
  EXPECT_EQ(read_json(d / "hf/generation_config.json")["eos_token_id"], json({1, 106}));
  // HF's Gemma3RMSNorm multiplies by 1+w: the stored norm is the GGUF weight minus one.
  const auto g = open_weights(KVS_GEMMA3);
  const SafetensorsFile st(d / "hf/model.safetensors");
  const SafetensorsTensor* n = st.find("model.layers.0.pre_feedforward_layernorm.weight");
  ASSERT_NE(n, nullptr);
  uint16_t raw;
  std::memcpy(&raw, n->data, 2);
  const float g0 = g->tensor("blk.0.ffn_norm.weight").view().f32()[0];
  EXPECT_NEAR(fp16_to_fp32(raw), g0 - 1.0f, std::fabs(g0 - 1.0f) * 1e-3);
}

}  // namespace
}  // namespace kvs
