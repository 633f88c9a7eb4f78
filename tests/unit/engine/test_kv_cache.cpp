#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "cache/kv_cache.h"

namespace kvs {
namespace {

KVCacheShape shape(DType t = DType::F32, int dk = 4, int dv = 3) {
  return {2, 2, dk, dv, {t, t}, {t, t}};
}

// 5 tokens: k value = 100*t + 10*head + d, v value = -(100*t + 10*head + d)
void fill(std::vector<float>& k, std::vector<float>& v, int T, int dk, int dv) {
  k.resize(T * 2 * dk);
  v.resize(T * 2 * dv);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2; ++h) {
      for (int d = 0; d < dk; ++d) k[(t * 2 + h) * dk + d] = 100.0f * t + 10.0f * h + d;
      for (int d = 0; d < dv; ++d) v[(t * 2 + h) * dv + d] = -(100.0f * t + 10.0f * h + d);
    }
}

TEST(KVCache, AppendKeepDropAndBytes) {
  KVCache c(shape(), {8, 8});
  EXPECT_EQ(c.slot_bytes(0), (4 + 3) * sizeof(float));
  EXPECT_EQ(c.bytes_allocated(), 0u);  // nothing is allocated before the first token
  const int T = 5;
  std::vector<float> k, v;
  fill(k, v, T, 4, 3);
  const int32_t pos[T] = {0, 1, 2, 3, 4};
  c.append(1, k.data(), v.data(), pos, T);
  EXPECT_EQ(c.len(1, 0), 5);
  EXPECT_EQ(c.len(0, 0), 0);
  EXPECT_EQ(c.bytes_in_use(), 2u * 5 * c.slot_bytes(1));
  EXPECT_EQ(c.bytes_in_use(1), c.bytes_in_use());
  EXPECT_GE(c.bytes_allocated(), c.bytes_in_use());
  EXPECT_LE(c.capacity(1, 0), 8);  // never past the layer's bound

  c.keep_slots(1, 1, {0, 3, 4});
  EXPECT_EQ(c.len(1, 1), 3);
  EXPECT_EQ(c.capacity(1, 1), 3);  // memory of dropped slots is returned
  EXPECT_EQ(c.positions(1, 1)[1], 3);
  std::vector<float> kk(3 * 4), vv(3 * 3);
  c.read_k(1, 1, kk.data());
  c.read_v(1, 1, vv.data());
  EXPECT_EQ(kk[1 * 4 + 2], 100.0f * 3 + 10 + 2);
  EXPECT_EQ(vv[2 * 3 + 0], -(100.0f * 4 + 10));
  EXPECT_EQ(c.len(1, 0), 5);  // other heads untouched

  c.drop_before(1, 3);
  EXPECT_EQ(c.len(1, 0), 2);
  EXPECT_EQ(c.len(1, 1), 2);
  EXPECT_EQ(c.positions(1, 0)[0], 3);
  const KVView view = c.view(1);
  ASSERT_EQ(view.heads.size(), 2u);
  EXPECT_EQ(view.heads[1].len, 2);
  EXPECT_EQ(static_cast<const float*>(view.heads[1].k)[0], 310.0f);
  EXPECT_EQ(c.bytes_allocated(), 2u * 2 * c.slot_bytes(1));
  EXPECT_GE(c.peak_bytes_allocated(), 2u * 5 * c.slot_bytes(1));
  c.clear();
  EXPECT_EQ(c.bytes_in_use(), 0u);
}

TEST(KVCache, ScoresFollowTheirSlots) {
  KVCache c(shape(), {8, 8});
  c.enable_scores(0);
  std::vector<float> k, v;
  fill(k, v, 4, 4, 3);
  const int32_t pos[4] = {0, 1, 2, 3};
  c.append(0, k.data(), v.data(), pos, 4);
  for (int s = 0; s < 4; ++s) c.scores(0, 0)[s] = 10.0f * s;
  c.keep_slots(0, 0, {1, 3}, 2);
  EXPECT_EQ(c.scores(0, 0)[0], 10.0f);
  EXPECT_EQ(c.scores(0, 0)[1], 30.0f);
  EXPECT_EQ(c.capacity(0, 0), 4);  // 2 kept + margin 2
}

TEST(KVCache, QuantizedStorageRoundTripsWithinTheTypesPrecision) {
  for (DType t : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    KVCache c(shape(t, 32, 32), {4, 4});
    std::vector<float> k(2 * 32), v(2 * 32);
    for (int i = 0; i < 64; ++i) {
      k[i] = sinf(0.37f * i);
      v[i] = cosf(0.21f * i);
    }
    const int32_t pos[1] = {7};
    c.append(0, k.data(), v.data(), pos, 1);
    EXPECT_EQ(c.slot_bytes(0), 2 * row_bytes(t, 32));
    std::vector<float> kk(32);
    c.read_k(0, 1, kk.data());
    const float tol = t == DType::Q4_0   ? 0.15f
                      : t == DType::Q8_0 ? 0.01f
                      : t == DType::BF16 ? 0.01f
                                         : 1e-3f;
    for (int d = 0; d < 32; ++d) EXPECT_NEAR(kk[d], k[32 + d], tol) << dtype_name(t);
  }
}

}  // namespace
}  // namespace kvs

namespace kvs {
namespace {

TEST(KVCache, AppendGrowthStepAndShrinkHysteresis) {
  KVCache c(shape(), {200, 200});
  c.set_append_growth(16);
  std::vector<float> k, v;
  fill(k, v, 1, 4, 3);
  for (int32_t p = 0; p < 40; ++p) c.append(0, k.data(), v.data(), &p, 1);
  // Single-token appends grow to need + 16: 17, 34, 51.
  EXPECT_EQ(c.capacity(0, 0), 51);
  // Evicting a few slots (51 - (37 + 4) = 10 <= 16 spare) keeps the allocation...
  std::vector<int32_t> keep;
  for (int32_t s = 0; s < 40; ++s)
    if (s != 3 && s != 20 && s != 21) keep.push_back(s);
  c.keep_slots(0, 0, keep, 4);
  EXPECT_EQ(c.len(0, 0), 37);
  EXPECT_EQ(c.capacity(0, 0), 51);
  // ...and moves the runs between the holes intact.
  const int32_t* pos = c.positions(0, 0);
  EXPECT_EQ(pos[2], 2);
  EXPECT_EQ(pos[3], 4);
  EXPECT_EQ(pos[18], 19);
  EXPECT_EQ(pos[19], 22);
  EXPECT_EQ(pos[36], 39);
  std::vector<float> kk(37 * 4);
  c.read_k(0, 0, kk.data());
  EXPECT_EQ(kk[19 * 4], k[0]);  // every token was the same row here; the slot count matters
  // Evicting most slots frees their memory.
  c.keep_slots(0, 0, {0, 1, 2, 3, 4}, 4);
  EXPECT_EQ(c.capacity(0, 0), 9);
}

TEST(KVCache, KeepSlotsMovesRunsWithTheirContent) {
  KVCache c(shape(), {8, 8});
  std::vector<float> k, v;
  fill(k, v, 5, 4, 3);
  const int32_t pos[5] = {0, 1, 2, 3, 4};
  c.append(0, k.data(), v.data(), pos, 5);
  c.keep_slots(0, 1, {1, 3, 4});
  ASSERT_EQ(c.len(0, 1), 3);
  std::vector<float> kk(3 * 4), vv(3 * 3);
  c.read_k(0, 1, kk.data());
  c.read_v(0, 1, vv.data());
  const int32_t want[3] = {1, 3, 4};
  for (int s = 0; s < 3; ++s) {
    EXPECT_EQ(c.positions(0, 1)[s], want[s]);
    for (int d = 0; d < 4; ++d) EXPECT_EQ(kk[s * 4 + d], 100.0f * want[s] + 10.0f + d);
    for (int d = 0; d < 3; ++d) EXPECT_EQ(vv[s * 3 + d], -(100.0f * want[s] + 10.0f + d));
  }
}

}  // namespace
}  // namespace kvs
