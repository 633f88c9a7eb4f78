// fp16 / bf16 conversions: exhaustive over all 65536 encodings, and every rounding tie.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "kernels/core/half.h"

namespace kvs {
namespace {

// The value of a binary16 encoding computed from its definition (independent of half.h).
double half_value(uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 0x1f) return mant == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

TEST(Half, Fp16ToFp32MatchesDefinitionForAllEncodings) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_fp32(static_cast<uint16_t>(h));
    const double want = half_value(static_cast<uint16_t>(h));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
    } else {
      EXPECT_EQ(static_cast<double>(f), want) << std::hex << h;
      EXPECT_EQ(std::signbit(f), (h & 0x8000) != 0) << std::hex << h;  // -0 keeps its sign
    }
  }
}

TEST(Half, Fp16RoundTripsAllEncodings) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t back = fp32_to_fp16(fp16_to_fp32(static_cast<uint16_t>(h)));
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) {
      EXPECT_EQ(back & 0x7c00, 0x7c00) << std::hex << h;  // NaN stays NaN (quieted)
      EXPECT_NE(back & 0x3ff, 0) << std::hex << h;
      EXPECT_EQ(back & 0x8000, h & 0x8000) << std::hex << h;
    } else {
      EXPECT_EQ(back, h) << std::hex << h;
    }
  }
}

// For every pair of adjacent non-negative halves the exact midpoint (representable in f32)
// must round to the one with an even mantissa, and a float one ulp either side of it to the
// nearer neighbour. 0x7bff's upper neighbour is 65536, which overflows to infinity.
TEST(Half, Fp16RoundsToNearestEvenAtEveryTie) {
  for (uint32_t h = 0; h < 0x7c00; ++h) {
    const auto lo = static_cast<uint16_t>(h), hi = static_cast<uint16_t>(h + 1);
    const double vhi = hi == 0x7c00 ? 65536.0 : half_value(hi);
    const auto mid = static_cast<float>((half_value(lo) + vhi) / 2);
    ASSERT_EQ(static_cast<double>(mid), (half_value(lo) + vhi) / 2) << "midpoint not exact";
    const uint16_t even = (lo & 1) == 0 ? lo : hi;
    EXPECT_EQ(fp32_to_fp16(mid), even) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(-mid), even | 0x8000) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(std::nextafter(mid, 0.0f)), lo) << std::hex << h;
    EXPECT_EQ(fp32_to_fp16(std::nextafter(mid, INFINITY)), hi) << std::hex << h;
  }
}

TEST(Half, Fp16SpecialValues) {
  EXPECT_EQ(fp32_to_fp16(1.0f + 0x1p-11f), 0x3c00);      // tie -> even (down)
  EXPECT_EQ(fp32_to_fp16(1.0f + 3 * 0x1p-11f), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(fp32_to_fp16(0x1p-25f), 0x0000);             // half the smallest subnormal -> 0
  EXPECT_EQ(fp32_to_fp16(3 * 0x1p-25f), 0x0002);
  EXPECT_EQ(fp32_to_fp16(1e-10f), 0x0000);
  EXPECT_EQ(fp32_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(fp32_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65519.996f), 0x7bff);
  EXPECT_EQ(fp32_to_fp16(65520.0f), 0x7c00);  // tie with 65536 -> overflow
  EXPECT_EQ(fp32_to_fp16(1e10f), 0x7c00);
  EXPECT_EQ(fp32_to_fp16(-INFINITY), 0xfc00);
  EXPECT_EQ(fp32_to_fp16(NAN) & 0x7e00, 0x7e00);
}

TEST(Bf16, RoundTripsAllEncodings) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = bf16_to_fp32(static_cast<uint16_t>(b));
    EXPECT_EQ(std::bit_cast<uint32_t>(f), b << 16) << std::hex << b;
    const uint16_t back = fp32_to_bf16(f);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(bf16_to_fp32(back))) << std::hex << b;
    } else {
      EXPECT_EQ(back, b) << std::hex << b;
    }
  }
}

TEST(Bf16, RoundsToNearestEvenAtEveryTie) {
  for (uint32_t b = 0; b < 0x7f80; ++b) {
    const uint32_t mid = (b << 16) | 0x8000u;  // exactly between b and b + 1
    const uint16_t even = (b & 1) == 0 ? static_cast<uint16_t>(b) : static_cast<uint16_t>(b + 1);
    EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(mid)), even) << std::hex << b;
    EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(mid | 0x80000000u)), even | 0x8000)
        << std::hex << b;
    EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(mid - 1)), b) << std::hex << b;
    EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(mid + 1)), b + 1) << std::hex << b;
  }
  EXPECT_EQ(fp32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);           // rounds up to inf
  EXPECT_EQ(fp32_to_bf16(std::bit_cast<float>(0x7f800001u)) & 0x7fc0, 0x7fc0);  // quiet NaN
}

}  // namespace
}  // namespace kvs
