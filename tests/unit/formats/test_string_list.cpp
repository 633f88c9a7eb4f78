#include <gtest/gtest.h>

#include <cstring>

#include "models/formats/metadata.h"
#include "models/formats/string_list.h"

namespace kvs {
namespace {

TEST(StringList, OwnedListKeepsEveryStringIncludingEmptyAndBinary) {
  const std::string nul("a\0b", 3);
  const StringList l(std::vector<std::string>{"x", "", nul, std::string(300, 'z')});
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(l[0], "x");
  EXPECT_EQ(l[1], "");
  EXPECT_EQ(l[2], nul);
  EXPECT_EQ(l[3].size(), 300u);
  EXPECT_EQ(l.to_vector(), (std::vector<std::string>{"x", "", nul, std::string(300, 'z')}));
  std::vector<std::string_view> seen(l.begin(), l.end());
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_TRUE(StringList().empty());
  EXPECT_EQ((StringList{"a", "b"}), (StringList{"a", "b"}));
  EXPECT_FALSE((StringList{"a", "b"}) == (StringList{"a", "c"}));
  EXPECT_FALSE((StringList{"a"}) == (StringList{"a", "b"}));
}

TEST(StringList, ViewReadsGgufLayoutWithoutCopying) {
  // Two GGUF strings, "hi" and "", behind a 3-byte prefix.
  auto buf = std::make_shared<std::vector<uint8_t>>(3 + 8 + 2 + 8);
  uint64_t n = 2;
  std::memcpy(buf->data() + 3, &n, 8);
  std::memcpy(buf->data() + 11, "hi", 2);
  n = 0;
  std::memcpy(buf->data() + 13, &n, 8);
  const StringList l = StringList::view(buf->data() + 3, {0, 10}, buf);
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0], "hi");
  EXPECT_EQ(l[1], "");
  EXPECT_EQ(l.owned_bytes(), 2 * sizeof(uint32_t));  // the offsets only
  // Copies share the list; the view keeps the buffer alive.
  const StringList copy = l;
  buf.reset();
  EXPECT_EQ(copy[0], "hi");
}

TEST(MetaArray, IntsArePackedAtTheirWidth) {
  EXPECT_EQ(MetaArray::of_ints({-1, 70000}, MetaType::U16).ints(),
            (std::vector<int64_t>{65535, 70000 & 0xFFFF}));
  EXPECT_EQ(MetaArray::of_ints({-1, 5}, MetaType::I8).ints(), (std::vector<int64_t>{-1, 5}));
  EXPECT_EQ(MetaArray::of_ints({-1}, MetaType::U64).int_at(0), -1);  // the bit pattern
  EXPECT_EQ(MetaArray::of_ints({7, 0}, MetaType::Bool).ints(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(MetaArray::of_ints({4000000000}, MetaType::U32).int_at(0), 4000000000);
  const MetaArray f = MetaArray::of_floats({0.1, 2.5}, MetaType::F32);
  EXPECT_EQ(f.float_at(0), static_cast<double>(0.1f));
  EXPECT_TRUE(f.ints().empty());
  EXPECT_TRUE(MetaArray::of_ints({1}).floats().empty());
  EXPECT_EQ(MetaArray::of_floats({1e300}, MetaType::F64).float_at(0), 1e300);
}

}  // namespace
}  // namespace kvs
