// two_way_setting and int_setting: the parsers for settings read from the environment.
#include <gtest/gtest.h>

#include "core/env_setting.h"
#include "op_harness.h"

namespace kiln {
namespace {

// The setting's value (a failure to parse fails the test).
bool value(const char* name, bool unset) {
  auto r = two_way_setting(name, "off", "on", unset);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() && *r;
}

TEST(EnvSetting, TwoWaySetting) {
  const char* kName = "KILN_TEST_TWO_WAY_SETTING";
  unsetenv(kName);
  EXPECT_EQ(value(kName, true), true) << "unset gives the default";
  EXPECT_EQ(value(kName, false), false);
  {
    test::ScopedEnv empty(kName, "");
    EXPECT_EQ(value(kName, true), true) << "empty gives the default";
  }
  {
    test::ScopedEnv off(kName, "off");
    EXPECT_EQ(value(kName, true), false);
  }
  {
    test::ScopedEnv on(kName, "on");
    EXPECT_EQ(value(kName, false), true);
  }
  test::ScopedEnv bad(kName, "On");
  auto r = two_way_setting(kName, "off", "on", true);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(kName), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find("'On'"), std::string::npos) << r.status().to_string();
}

TEST(EnvSetting, IntSetting) {
  const char* kName = "KILN_TEST_INT_SETTING";
  unsetenv(kName);
  auto r = int_setting(kName, 1, 64, 8);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(*r, 8) << "unset gives the default";
  for (const char* ok : {"1", "12", "64"}) {
    test::ScopedEnv v(kName, ok);
    r = int_setting(kName, 1, 64, 8);
    ASSERT_TRUE(r.is_ok()) << ok << ": " << r.status().to_string();
    EXPECT_EQ(*r, std::atoi(ok));
  }
  for (const char* bad : {"0", "65", "-3", "8x", "x", " 8", "99999999999999999999"}) {
    test::ScopedEnv v(kName, bad);
    r = int_setting(kName, 1, 64, 8);
    ASSERT_FALSE(r.is_ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(kName), std::string::npos) << r.status().to_string();
    EXPECT_NE(r.status().message().find("1 to 64"), std::string::npos) << r.status().to_string();
  }
}

}  // namespace
}  // namespace kiln
