// MetaMap getters (any integer width, ints accepted as floats, clear errors) and display.
#include <gtest/gtest.h>

#include <functional>
#include <string>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"

namespace kvs {
namespace {

MetaMap sample() {
  MetaMap m("/models/x.gguf");
  m.set("u8", MetaValue::of_int(7, MetaType::U8));
  m.set("u32", MetaValue::of_int(4000000000, MetaType::U32));
  m.set("i64", MetaValue::of_int(-5, MetaType::I64));
  m.set("u64.big", MetaValue::of_int(-1, MetaType::U64));
  m.set("f32", MetaValue::of_float(0.5, MetaType::F32));
  m.set("flag", MetaValue::of_bool(true));
  m.set("name", MetaValue::of_string("llama"));
  m.set("arr",
        MetaValue::of_array(MetaArray::of_ints({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, MetaType::I32)));
  return m;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MetaMap, IntegersOfAnyWidth) {
  const MetaMap m = sample();
  EXPECT_EQ(m.get_int("u8"), 7);
  EXPECT_EQ(m.get_int("u32"), 4000000000);
  EXPECT_EQ(m.get_int("i64"), -5);
  EXPECT_EQ(m.get_int("absent", 42), 42);
  EXPECT_EQ(m.get_float("u8"), 7.0);  // ints are accepted as floats
  EXPECT_EQ(m.get_float("u64.big"), 18446744073709551615.0);
  EXPECT_EQ(m.get_float("f32"), 0.5);
  EXPECT_EQ(m.get_float("absent", 1.5), 1.5);
  EXPECT_TRUE(m.get_bool("flag", false));
  EXPECT_FALSE(m.get_bool("absent", false));
  EXPECT_EQ(m.get_string("name"), "llama");
  EXPECT_EQ(m.get_string("absent", "dflt"), "dflt");
  EXPECT_EQ(m.get_array("arr").size(), 10u);
  EXPECT_EQ(m.find_array("absent"), nullptr);
}

TEST(MetaMap, ErrorsNameSourceKeyAndTypes) {
  const MetaMap m = sample();
  EXPECT_EQ(error_of([&] { m.get_int("llama.block_count"); }),
            "/models/x.gguf: metadata key 'llama.block_count' missing");
  EXPECT_EQ(error_of([&] { m.get_int("name"); }),
            "/models/x.gguf: metadata key 'name' has type string, expected integer");
  EXPECT_EQ(error_of([&] { m.get_int("name", 3); }),
            "/models/x.gguf: metadata key 'name' has type string, expected integer");
  EXPECT_EQ(error_of([&] { m.get_float("flag"); }),
            "/models/x.gguf: metadata key 'flag' has type bool, expected float");
  EXPECT_EQ(error_of([&] { m.get_string("u8"); }),
            "/models/x.gguf: metadata key 'u8' has type u8, expected string");
  EXPECT_EQ(error_of([&] { m.get_bool("f32", true); }),
            "/models/x.gguf: metadata key 'f32' has type f32, expected bool");
  EXPECT_EQ(error_of([&] { m.get_array("u32"); }),
            "/models/x.gguf: metadata key 'u32' has type u32, expected array");
  EXPECT_NE(error_of([&] { m.get_int("u64.big"); }).find("does not fit"), std::string::npos);
}

TEST(MetaValue, Display) {
  const MetaMap m = sample();
  EXPECT_EQ(m.find("arr")->to_display(3), "[1, 2, 3, ... (10 items)]");
  EXPECT_EQ(m.find("arr")->to_display(10), "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]");
  EXPECT_EQ(m.find("name")->to_display(), "\"llama\"");
  EXPECT_EQ(m.find("u64.big")->to_display(), "18446744073709551615");
  EXPECT_EQ(m.find("f32")->to_display(), "0.5");
  EXPECT_EQ(m.find("flag")->to_display(), "true");
  EXPECT_EQ(MetaValue::of_string("a\nb\"").to_display(), "\"a\\nb\\\"\"");
  const MetaArray s = MetaArray::of_strings(StringList{"x", "y"});
  EXPECT_EQ(MetaValue::of_array(s).to_display(1), "[\"x\", ... (2 items)]");
  EXPECT_EQ(meta_type_name(MetaType::F64), "f64");
  EXPECT_TRUE(meta_type_is_int(MetaType::U16));
  EXPECT_FALSE(meta_type_is_int(MetaType::Bool));
  EXPECT_TRUE(meta_type_is_float(MetaType::F32));
}

}  // namespace
}  // namespace kvs
