#include <gtest/gtest.h>

#include <vector>

#include "cache/kv_cache.h"

namespace kvs {
namespace {

KVCache make_cache(int32_t cap) {
  KVCacheShape s{2, 2, 4, 3, DType::F32, DType::F32};
  return KVCache(s, {cap, cap});
}

TEST(KVCache, AppendKeepDropAndBytes) {
  KVCache c = make_cache(8);
  EXPECT_EQ(c.bytes_per_slot(), (4 + 3) * sizeof(float));
  EXPECT_EQ(c.bytes_allocated(), 2u * 2 * 8 * c.bytes_per_slot());
  EXPECT_EQ(c.bytes_in_use(), 0u);
  // 5 tokens: k value = 100*t + 10*head + d, v value = -(100*t + 10*head + d)
  const int T = 5;
  std::vector<float> k(T * 2 * 4), v(T * 2 * 3);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < 2; ++h) {
      for (int d = 0; d < 4; ++d) k[(t * 2 + h) * 4 + d] = 100.0f * t + 10.0f * h + d;
      for (int d = 0; d < 3; ++d) v[(t * 2 + h) * 3 + d] = -(100.0f * t + 10.0f * h + d);
    }
  const int32_t pos[T] = {0, 1, 2, 3, 4};
  c.append(1, k.data(), v.data(), pos, T);
  EXPECT_EQ(c.len(1, 0), 5);
  EXPECT_EQ(c.len(0, 0), 0);
  EXPECT_EQ(c.bytes_in_use(), 2u * 5 * c.bytes_per_slot());
  EXPECT_EQ(c.bytes_in_use(1), c.bytes_in_use());

  c.keep_slots(1, 1, {0, 3, 4});
  EXPECT_EQ(c.len(1, 1), 3);
  EXPECT_EQ(c.positions(1, 1)[1], 3);
  EXPECT_EQ(c.k(1, 1)[1 * 4 + 2], 100.0f * 3 + 10 + 2);
  EXPECT_EQ(c.v(1, 1)[2 * 3 + 0], -(100.0f * 4 + 10));
  EXPECT_EQ(c.len(1, 0), 5);  // other heads untouched

  c.drop_before(1, 3);
  EXPECT_EQ(c.len(1, 0), 2);
  EXPECT_EQ(c.len(1, 1), 2);
  EXPECT_EQ(c.positions(1, 0)[0], 3);
  EXPECT_EQ(c.k(1, 0)[0], 300.0f);

  const KVView view = c.view(1);
  ASSERT_EQ(view.heads.size(), 2u);
  EXPECT_EQ(view.heads[1].len, 2);
  EXPECT_EQ(static_cast<const float*>(view.heads[1].k)[0], 310.0f);
  c.clear();
  EXPECT_EQ(c.bytes_in_use(), 0u);
}

}  // namespace
}  // namespace kvs
