// The readable `kiln inspect` layout and the --minShapes/--optShapes/--maxShapes -> BuilderConfig mapping.
#include <gtest/gtest.h>

#include "commands.h"

namespace kiln::cli {
namespace {

TEST(InspectFormat, FullDocument) {
  const auto doc = nlohmann::json::parse(R"({
    "kiln_version": "0.1.0", "device": "cpu", "target": "x86_64-avx2",
    "build_flags": {"disabled_passes": []},
    "profiles": [{"input": "input", "min": [1,1,28,28], "opt": [8,1,28,28], "max": [8192,1,28,28]}],
    "inputs": [{"name": "input", "dtype": "float32", "shape": [-1,1,28,28]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch",10]}],
    "layers": [
      {"name": "flatten", "op_type": "Flatten", "kernel": "view", "precision": "float32", "view": true,
       "inputs": [{"name": "input", "shape": [-1,1,28,28], "dtype": "float32"}],
       "outputs": [{"name": "x", "shape": [-1,784], "dtype": "float32"}], "origins": ["/Flatten"]},
      {"name": "fc1", "op_type": "Gemm+Relu", "kernel": "cpu_f32_gemm_relu", "precision": "float32",
       "inputs": [{"name": "x", "shape": [-1,784]}], "outputs": [{"name": "h"}], "origins": ["/fc1/Gemm", "/Relu"]}
    ],
    "weight_bytes": 940584, "arena_bytes": 1048576})");
  const std::string text = format_inspection(doc);
  EXPECT_NE(text.find("fc1"), std::string::npos);
  EXPECT_NE(text.find("cpu_f32_gemm_relu"), std::string::npos);
  EXPECT_NE(text.find("/fc1/Gemm, /Relu"), std::string::npos);
  EXPECT_NE(text.find("input:float32[?x1x28x28]"), std::string::npos);
  EXPECT_NE(text.find("batchx10"), std::string::npos);  // symbolic dims unquoted
  EXPECT_NE(text.find("min 1x1x28x28, opt 8x1x28x28, max 8192x1x28x28"), std::string::npos);
  EXPECT_NE(text.find("940584 bytes"), std::string::npos);
  EXPECT_NE(text.find("2 (1 views)"), std::string::npos);
  EXPECT_NE(text.find("(view, no copy)"), std::string::npos);
  EXPECT_NE(text.find("disabled_passes: []"), std::string::npos);
}

TEST(InspectFormat, TacticBandsOneALine) {
  const auto doc = nlohmann::json::parse(R"json({"layers": [
    {"name": "fc1", "attributes": {"kiln_tactic": "algo 1 tile 8x8", "kiln_tactic_ms": 0.5}},
    {"name": "fc2", "attributes": {"kiln_tactic": "M=8192: algo 21 (0.0123 ms); M=1: algo 6 (0.0040 ms)",
                                   "kiln_tactic_ms": 0.0123}}]})json");
  const std::string text = format_inspection(doc);
  EXPECT_NE(text.find("      tactic: algo 1 tile 8x8 (0.5000 ms at the opt shape)\n"), std::string::npos) << text;
  EXPECT_NE(text.find("      tactic per M band:\n"
                      "        M=8192: algo 21 (0.0123 ms)\n"
                      "        M=1: algo 6 (0.0040 ms)\n"),
            std::string::npos)
      << text;
}

TEST(InspectFormat, HostIoFormOfAnInput) {
  const auto doc = nlohmann::json::parse(R"({"inputs": [
    {"name": "a", "dtype": "float32", "shape": [-1,784], "host_io_as": "float16"},
    {"name": "b", "dtype": "float32", "shape": [-1,784], "host_io_as": "int8", "host_io_scale": 0.0159265,
     "host_io_zero_point": 0},
    {"name": "c", "dtype": "float32", "shape": [-1,784], "host_io_as": 3}]})");
  const std::string text = format_inspection(doc);
  EXPECT_NE(text.find("(host IO sends it as float16: every reader rounds it to float16)"), std::string::npos) << text;
  EXPECT_NE(text.find("(host IO sends it as int8: every reader quantizes it, scale 0.0159265, zero point 0)"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("host IO sends it as 3"), std::string::npos) << text;  // malformed: nothing said
}

TEST(InspectFormat, ToleratesMissingKeys) {
  EXPECT_NO_THROW(format_inspection(nlohmann::json::object()));
  EXPECT_NO_THROW(format_inspection(nlohmann::json::array()));
  EXPECT_NO_THROW(format_inspection(nlohmann::json::parse(R"({"layers": [{}, 3, "x"], "inputs": [1]})")));
  EXPECT_NE(format_inspection(nlohmann::json::object()).find("weights:        -"), std::string::npos);
}

TEST(BuilderConfigFromFlags, Profiles) {
  BuildFlags f;
  f.min_shapes = {"input:1x1x28x28"};
  f.opt_shapes = {"input:8192x1x28x28"};
  f.max_shapes = {"input:8192x1x28x28"};
  f.disabled_passes = {"fuse_gemm_relu,fold_constants"};
  auto c = make_builder_config(f);
  ASSERT_TRUE(c.is_ok()) << c.status().to_string();
  ASSERT_EQ(c->profiles.count("input"), 1u);
  EXPECT_EQ(c->profiles.at("input").min, (Dims{1, 1, 28, 28}));
  EXPECT_EQ(c->profiles.at("input").opt, (Dims{8192, 1, 28, 28}));
  EXPECT_EQ(c->disabled_passes, (std::set<std::string>{"fuse_gemm_relu", "fold_constants"}));
  EXPECT_EQ(c->device, "cpu");
}

TEST(BuilderConfigFromFlags, PartialProfileIsAnError) {
  BuildFlags f;
  f.min_shapes = {"input:1x1x28x28"};
  f.max_shapes = {"input:8192x1x28x28"};
  auto c = make_builder_config(f);
  ASSERT_FALSE(c.is_ok());
  EXPECT_NE(c.status().message().find("'input'"), std::string::npos);
  EXPECT_NE(c.status().message().find("not in --optShapes"), std::string::npos);
}

TEST(BuilderConfigFromFlags, NoShapesMeansDefaultProfile) {
  auto c = make_builder_config(BuildFlags{});
  ASSERT_TRUE(c.is_ok());
  EXPECT_TRUE(c->profiles.empty());
}

}  // namespace
}  // namespace kiln::cli
