#include <gtest/gtest.h>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

TEST(Status, ContextChainsOutermostFirst) {
  Status s(StatusCode::kInvalidArgument, "bad shape");
  s.with_context("input 'x'").with_context("layer 'fc1'");
  EXPECT_EQ(s.to_string(), "layer 'fc1': input 'x': bad shape");
  EXPECT_FALSE(s.is_ok());
  Status ok;
  ok.with_context("ignored");
  EXPECT_TRUE(ok.is_ok());
  EXPECT_TRUE(ok.context().empty());
}

TEST(Types, VolumeAndDims) {
  EXPECT_EQ(volume({2, 3, 4}), 24);
  EXPECT_EQ(volume({-1, 3}), -1);
  EXPECT_EQ(volume({}), 1);
  EXPECT_EQ(dims_to_string({8192, 1, 28, 28}), "8192x1x28x28");
  EXPECT_EQ(dtype_size(DataType::kInt64), 8u);
}

}  // namespace kiln
