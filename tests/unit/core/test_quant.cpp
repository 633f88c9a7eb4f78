// Reference (de)quantizers against fixtures produced by gguf-py (tools/gen_quant_fixtures.py).
//
// Comparisons are bit-exact, not within an ulp: every element is a short chain of IEEE
// float32 operations (fp16 scale -> float, products, one add), performed in the same order
// as ggml's C reference and gguf-py's numpy code, and quant.cpp disables FP contraction, so
// there is exactly one correctly rounded result for each element.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "kernels/core/dtype.h"
#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "kernels/core/quant_blocks.h"
#include "tests/support/paths.h"

namespace kvs {
namespace {

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << "missing fixture " << path << " (run tools/gen_quant_fixtures.py)";
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::vector<float> read_floats(const std::string& path) {
  const std::vector<uint8_t> b = read_bytes(path);
  std::vector<float> v(b.size() / sizeof(float));  // [n] float32 LE
  std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
  return v;
}

std::string fixture_path(std::string_view type, const char* ext) {
  return test::fixture("quant/" + std::string(type) + ext);
}

class DequantFixture : public ::testing::TestWithParam<DType> {};

TEST_P(DequantFixture, MatchesGgufPyBitExact) {
  const DType t = GetParam();
  const DTypeTraits& tr = dtype_traits(t);
  const std::vector<uint8_t> raw = read_bytes(fixture_path(tr.name, ".bin"));
  const std::vector<float> want = read_floats(fixture_path(tr.name, ".f32"));
  ASSERT_FALSE(want.empty());
  ASSERT_EQ(row_bytes(t, static_cast<int64_t>(want.size())), raw.size());

  std::vector<float> got(want.size(), std::nanf(""));  // [n]
  dequantize_row(t, raw.data(), got.data(), static_cast<int64_t>(got.size()));
  int mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::bit_cast<uint32_t>(got[i]) != std::bit_cast<uint32_t>(want[i]) && ++mismatches <= 5)
      ADD_FAILURE() << tr.name << " element " << i << ": got " << got[i] << ", gguf-py " << want[i];
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(DequantFixture, UnalignedSourceGivesSameResult) {
  // Weights in a mapping are only as aligned as the file's tensor alignment.
  const DType t = GetParam();
  const DTypeTraits& tr = dtype_traits(t);
  const std::vector<uint8_t> raw = read_bytes(fixture_path(tr.name, ".bin"));
  const std::vector<float> want = read_floats(fixture_path(tr.name, ".f32"));
  std::vector<uint8_t> shifted(raw.size() + 1);  // [1 + bytes]
  std::memcpy(shifted.data() + 1, raw.data(), raw.size());
  std::vector<float> got(want.size());
  dequantize_row(t, shifted.data() + 1, got.data(), static_cast<int64_t>(got.size()));
  EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, DequantFixture,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                           DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K,
                                           DType::Q6_K, DType::Q8_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

class QuantFixture : public ::testing::TestWithParam<DType> {};

TEST_P(QuantFixture, MatchesGgufPyBytes) {
  const DType t = GetParam();
  const DTypeTraits& tr = dtype_traits(t);
  const std::vector<float> in = read_floats(fixture_path(tr.name, ".in"));
  const std::vector<uint8_t> want = read_bytes(fixture_path(tr.name, ".q"));
  ASSERT_FALSE(in.empty());
  ASSERT_EQ(row_bytes(t, static_cast<int64_t>(in.size())), want.size());

  std::vector<uint8_t> got(want.size(), 0xAA);  // [bytes]
  quantize_row(t, in.data(), got.data(), static_cast<int64_t>(in.size()));
  int mismatches = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    if (got[i] != want[i] && ++mismatches <= 5)
      ADD_FAILURE() << tr.name << " byte " << i << " (block " << i / tr.block_bytes << "): got "
                    << int(got[i]) << ", gguf-py " << int(want[i]);
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_P(QuantFixture, RoundTripErrorIsBounded) {
  const DType t = GetParam();
  const DTypeTraits& tr = dtype_traits(t);
  std::vector<float> in = read_floats(fixture_path(tr.name, ".in"));
  // F16/BF16 inputs carry inf/NaN/overflow edge cases; bound the error on the rest.
  for (float& v : in)
    if (!std::isfinite(v) || std::fabs(v) > 60000.0f) v = 0.0f;
  std::vector<uint8_t> q(row_bytes(t, static_cast<int64_t>(in.size())));  // [bytes]
  std::vector<float> out(in.size());                                      // [n]
  quantize_row(t, in.data(), q.data(), static_cast<int64_t>(in.size()));
  dequantize_row(t, q.data(), out.data(), static_cast<int64_t>(out.size()));
  const int64_t bs = tr.block_size == 1 ? 32 : tr.block_size;
  for (size_t b = 0; b < in.size() / bs; ++b) {
    float amax = 0.0f, mn = in[b * bs], mx = in[b * bs];
    for (int64_t j = 0; j < bs; ++j) {
      amax = std::max(amax, std::fabs(in[b * bs + j]));
      mn = std::min(mn, in[b * bs + j]);
      mx = std::max(mx, in[b * bs + j]);
    }
    // Half a quantization step (plus fp16 rounding of the scale) bounds every element,
    // except in Q4_0/Q5_0 where -max is clamped to the top level: a full step there.
    float step = 0.0f;
    switch (t) {
      case DType::Q4_0:
        step = 2 * amax / 8;
        break;
      case DType::Q5_0:
        step = 2 * amax / 16;
        break;
      case DType::Q4_1:
        step = (mx - mn) / 15;
        break;
      case DType::Q5_1:
        step = (mx - mn) / 31;
        break;
      case DType::Q8_0:
      case DType::Q8_K:
        step = amax / 127;
        break;
      case DType::F16:
        step = amax / 1024;
        break;
      case DType::BF16:
        step = amax / 128;
        break;
      default:
        step = 0.0f;
    }
    for (int64_t j = 0; j < bs; ++j) {
      const size_t i = b * bs + j;
      EXPECT_LE(std::fabs(out[i] - in[i]), step * 0.5f * 1.01f + 1e-3f * amax + 1e-30f)
          << tr.name << " element " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(QuantizableTypes, QuantFixture,
                         ::testing::Values(DType::F32, DType::F16, DType::BF16, DType::Q4_0,
                                           DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
                                           DType::Q8_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(Quant, KQuantQuantizersAreRejected) {
  std::vector<float> x(kQK_K, 0.5f);            // [256]
  std::vector<uint8_t> out(sizeof(BlockQ6_K));  // one block
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    try {
      quantize_row(t, x.data(), out.data(), kQK_K);
      ADD_FAILURE() << "quantize_row(" << dtype_name(t) << ") did not throw";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string(dtype_name(t))), std::string::npos)
          << e.what();
    }
  }
}

TEST(Quant, Q8KBlockSumsMatchQuants) {
  std::vector<float> x(2 * kQK_K);  // [512]
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  std::vector<BlockQ8_K> q(2);
  quantize_row(DType::Q8_K, x.data(), q.data(), static_cast<int64_t>(x.size()));
  for (const auto& b : q) {
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += b.qs[16 * g + l];
      EXPECT_EQ(b.bsums[g], sum);
    }
  }
}

}  // namespace
}  // namespace kvs
