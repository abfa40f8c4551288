#include "shapes_arg.h"

#include <gtest/gtest.h>

namespace kiln::cli {
namespace {

TEST(ParseShapes, SingleAndMultiple) {
  auto r = parse_shapes("--shapes", {"input:1x1x28x28,mask:2x3"});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at(0).name, "input");
  EXPECT_EQ(r->at(0).dims, (Dims{1, 1, 28, 28}));
  EXPECT_EQ(r->at(1).name, "mask");
  EXPECT_EQ(r->at(1).dims, (Dims{2, 3}));
}

TEST(ParseShapes, RepeatedFlagAndTrailingComma) {
  auto r = parse_shapes("--shapes", {"a:1,", "b:8192x1x28x28"});
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at(1).dims, (Dims{8192, 1, 28, 28}));
}

TEST(ParseShapes, NameMayContainColon) {
  auto r = parse_shapes("--shapes", {"input:0:4x5"});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->at(0).name, "input:0");
  EXPECT_EQ(r->at(0).dims, (Dims{4, 5}));
}

TEST(ParseShapes, ScalarHasNoDims) {
  auto r = parse_shapes("--shapes", {"s:"});
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->at(0).dims.empty());
}

TEST(ParseShapes, BadDimensionNamesTokenAndItem) {
  auto r = parse_shapes("--shapes", {"input:1xAx28"});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  EXPECT_EQ(r.status().to_string(), "--shapes: bad dimension 'A' in 'input:1xAx28'");
}

TEST(ParseShapes, RejectsMalformedDims) {
  for (const char* bad : {"x:1xx2", "x:-1x2", "x:1x2x", "x:x1", "x:1.5", "x:+3", "x:99999999999999999999", "x:1 x2"}) {
    EXPECT_FALSE(parse_shapes("--shapes", {bad}).is_ok()) << bad;
  }
}

TEST(ParseShapes, MissingColonOrNameOrDuplicate) {
  auto no_colon = parse_shapes("--minShapes", {"1x2"});
  ASSERT_FALSE(no_colon.is_ok());
  EXPECT_NE(no_colon.status().message().find("--minShapes"), std::string::npos);
  EXPECT_NE(no_colon.status().message().find("'1x2'"), std::string::npos);
  EXPECT_FALSE(parse_shapes("--shapes", {":1x2"}).is_ok());
  auto dup = parse_shapes("--shapes", {"a:1,a:2"});
  ASSERT_FALSE(dup.is_ok());
  EXPECT_NE(dup.status().message().find("twice"), std::string::npos);
}

TEST(ParseShapes, EmptyIsEmpty) {
  auto r = parse_shapes("--shapes", {});
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->empty());
}

TEST(ParseNamedFiles, SplitsOnKnownName) {
  auto r = parse_named_files("--loadInputs", {"in:0:data/x.bin,other:C:/y.bin"}, {"in:0", "other"});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ(r->at(0).name, "in:0");
  EXPECT_EQ(r->at(0).path, "data/x.bin");
  EXPECT_EQ(r->at(1).name, "other");
  EXPECT_EQ(r->at(1).path, "C:/y.bin");
}

TEST(ParseNamedFiles, UnknownNameSplitsAtFirstColon) {
  auto r = parse_named_files("--loadInputs", {"nope:x.bin"}, {"input"});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->at(0).name, "nope");  // the caller reports it as not an input
}

TEST(ParseNamedFiles, Errors) {
  EXPECT_FALSE(parse_named_files("--loadInputs", {"x.bin"}, {"input"}).is_ok());
  EXPECT_FALSE(parse_named_files("--loadInputs", {"input:"}, {"input"}).is_ok());
  EXPECT_FALSE(parse_named_files("--loadInputs", {":x.bin"}, {"input"}).is_ok());
  EXPECT_FALSE(parse_named_files("--loadInputs", {"input:a,input:b"}, {"input"}).is_ok());
}

TEST(SplitList, DropsEmptyItems) {
  EXPECT_EQ(split_list({"a,,b,", "c"}), (std::vector<std::string>{"a", "b", "c"}));
}

}  // namespace
}  // namespace kiln::cli
