#include <gtest/gtest.h>

#include "engine/generate.h"

namespace kvs {
namespace {

TEST(StopMatcher, HoldsBackPossibleStopPrefixes) {
  StopMatcher m({"<|im_end|>", "\n\n"});
  EXPECT_EQ(m.push("Hello"), "Hello");
  EXPECT_EQ(m.push(" wor<|im"), " wor");
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.push("_en"), "");
  EXPECT_EQ(m.push("d|> tail"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("more"), "");
}

TEST(StopMatcher, ReleasesFalseAlarmsAndFlushes) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("a ST"), "a ");
  EXPECT_EQ(m.push("Ay"), "STAy");
  EXPECT_EQ(m.push("xS"), "x");
  EXPECT_EQ(m.flush(), "S");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopInsideOnePiece) {
  StopMatcher m({"\n"});
  EXPECT_EQ(m.push("line one\nline two"), "line one");
  EXPECT_TRUE(m.stopped());
}

TEST(StopMatcher, NoStops) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.flush(), "");
}

}  // namespace
}  // namespace kvs
