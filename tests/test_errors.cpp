// Bad input never crashes: malformed ONNX, missing external data, unsupported ops (all listed at once),
// corrupt, truncated or foreign engines.
#include <gtest/gtest.h>

#include <filesystem>

#include "engine/engine_model.h"
#include "onnx/importer.h"
#include "test_util.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using test::source_path;

std::string file_string(const std::string& path) {
  auto b = test::read_bytes(path);
  return std::string(b.begin(), b.end());
}

TEST(ImportErrors, TruncatedOnnxIsAParseError) {
  std::string bytes = file_string(source_path("models/mlp.onnx"));
  ASSERT_GT(bytes.size(), 1000u);
  for (size_t cut : {size_t{10}, bytes.size() / 2, bytes.size() - 3}) {
    auto g = import_onnx_bytes(bytes.substr(0, cut), source_path("models"));
    ASSERT_FALSE(g.is_ok()) << "cut at " << cut;
    EXPECT_EQ(g.status().code(), StatusCode::kParseError) << g.status().to_string();
  }
}

TEST(ImportErrors, GarbageIsAParseError) {
  auto g = import_onnx_bytes(std::string(4096, '\xff'), ".");
  ASSERT_FALSE(g.is_ok());
  auto f = import_onnx_file("/nonexistent/model.onnx");
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
}

TEST(ImportErrors, MissingExternalDataFileIsNamed) {
  const fs::path dir = fs::path(KILN_BINARY_DIR) / "missing_external";
  fs::create_directories(dir);
  fs::copy_file(source_path("tests/fixtures/mlp_dynamo/mlp_dynamo.onnx"), dir / "mlp_dynamo.onnx",
                fs::copy_options::overwrite_existing);
  fs::remove(dir / "mlp_dynamo.onnx.data");
  auto g = import_onnx_file((dir / "mlp_dynamo.onnx").string());
  ASSERT_FALSE(g.is_ok());
  EXPECT_EQ(g.status().code(), StatusCode::kNotFound);
  EXPECT_NE(g.status().to_string().find("mlp_dynamo.onnx.data"), std::string::npos) << g.status().to_string();
}

TEST(ImportErrors, ShortExternalDataIsAnError) {
  const fs::path dir = fs::path(KILN_BINARY_DIR) / "short_external";
  fs::create_directories(dir);
  fs::copy_file(source_path("tests/fixtures/mlp_dynamo/mlp_dynamo.onnx"), dir / "mlp_dynamo.onnx",
                fs::copy_options::overwrite_existing);
  auto data = test::read_bytes(source_path("tests/fixtures/mlp_dynamo/mlp_dynamo.onnx.data"));
  std::ofstream(dir / "mlp_dynamo.onnx.data", std::ios::binary).write(reinterpret_cast<const char*>(data.data()), 1000);
  auto g = import_onnx_file((dir / "mlp_dynamo.onnx").string());
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().to_string().find("past the end"), std::string::npos) << g.status().to_string();
}

TEST(ImportErrors, EveryUnsupportedNodeIsListed) {
  test::OnnxModel m(17);
  m.input("x", {-1, 4});
  m.node("Relu", {"x"}, {"a"}, "ok_relu");
  m.node("FancyOp", {"a"}, {"b"}, "first_bad");
  auto& sm = m.node("Softmax", {"b"}, {"c"}, "second_bad");
  auto* attr = sm.add_attribute();
  attr->set_name("not_an_attribute");
  attr->set_type(onnx::AttributeProto::INT);
  attr->set_i(3);
  m.node("Conv", {"c"}, {"y"}, "third_bad");
  m.output("y", {-1, 4});
  auto g = import_onnx_bytes(m.bytes(), ".");
  ASSERT_FALSE(g.is_ok());
  const std::string msg = g.status().to_string();
  EXPECT_EQ(g.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(msg.find("3 node(s)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'first_bad' (FancyOp, opset 17)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'second_bad' (Softmax, opset 17)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("not_an_attribute"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'third_bad' (Conv, opset 17)"), std::string::npos) << msg;
  EXPECT_EQ(msg.find("ok_relu"), std::string::npos) << msg;
}

TEST(BuildErrors, OutputThatNoLayerProducesIsExplained) {
  test::OnnxModel m;
  m.input("x", {2});
  m.initializer("w", {2}, {1.f, 2.f});
  m.node("Relu", {"x"}, {"r"});
  m.output("r", {2});
  m.output("w", {2});
  auto r = build_engine_from_bytes(m.bytes(), ".", BuilderConfig{});
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
  EXPECT_NE(r.status().to_string().find("graph output 'w' is the constant 'w'"), std::string::npos)
      << r.status().to_string();
}

TEST(ImportErrors, TooNewOpsetIsRefused) {
  test::OnnxModel m(99);
  m.input("x", {2});
  m.node("Relu", {"x"}, {"y"});
  m.output("y", {2});
  auto g = import_onnx_bytes(m.bytes(), ".");
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().to_string().find("opset 99"), std::string::npos);
}

TEST(ImportErrors, DanglingInputIsNamed) {
  test::OnnxModel m;
  m.input("x", {2});
  m.node("Add", {"x", "nowhere"}, {"y"});
  m.output("y", {2});
  auto g = import_onnx_bytes(m.bytes(), ".");
  ASSERT_FALSE(g.is_ok());
  EXPECT_NE(g.status().to_string().find("'nowhere'"), std::string::npos);
}

TEST(Import, TypedInitializersConstantsAndInputInitializers) {
  // float_data initializer, a Constant node, and a graph input that is also an initializer.
  test::OnnxModel m(13);
  m.input("x", {-1, 3});
  m.input("w", {3, 2});  // also an initializer below: a constant, not a runtime input
  m.initializer("w", {3, 2}, {1, 2, 3, 4, 5, 6}, /*raw=*/false);
  auto& c = m.node("Constant", {}, {"b"});
  auto* a = c.add_attribute();
  a->set_name("value_floats");
  a->set_type(onnx::AttributeProto::FLOATS);
  a->add_floats(0.5f);
  a->add_floats(-0.5f);
  m.node("MatMul", {"x", "w"}, {"xw"});
  m.node("Add", {"xw", "b"}, {"y"});
  m.output("y", {-1, 2});
  BuilderConfig cfg;
  cfg.profiles["x"] = {{1, 3}, {2, 3}, {4, 3}};
  auto built = build_engine_from_bytes(m.bytes(), ".", cfg);
  ASSERT_TRUE(built.is_ok()) << built.status().to_string();
  auto e = test::must_load(built->engine);
  EXPECT_EQ(e->num_io_tensors(), 2);  // x and y only
  EXPECT_EQ(e->tensor_shape("x"), (Dims{-1, 3}));
  auto ctx = e->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  auto out = (*ctx)->infer({{"x", HostTensor::from_floats({2, 3}, {1, 0.5f, -1, 2, -2, 0.25f})}});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  const float* y = out->at("y").data<float>();
  // Row 0: [1,0.5,-1]·W = [1+1.5-5, 2+2-6] = [-2.5,-2] + b; row 1: [2-6+1.25, 4-8+1.5] = [-2.75,-2.5] + b.
  EXPECT_FLOAT_EQ(y[0], -2.0f);
  EXPECT_FLOAT_EQ(y[1], -2.5f);
  EXPECT_FLOAT_EQ(y[2], -2.25f);
  EXPECT_FLOAT_EQ(y[3], -3.0f);
}

class EngineErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    auto out = build_engine_from_file(source_path("models/mlp.onnx"), BuilderConfig{});
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    engine_ = out->engine;
  }
  std::vector<uint8_t> engine_;
};

TEST_F(EngineErrors, TruncatedEngineIsRejected) {
  for (size_t cut : {size_t{0}, size_t{10}, size_t{64}, engine_.size() / 2, engine_.size() - 1}) {
    auto e = Runtime().deserialize_engine(std::span(engine_.data(), cut));
    ASSERT_FALSE(e.is_ok()) << cut;
    EXPECT_EQ(e.status().code(), StatusCode::kCorruptEngine) << e.status().to_string();
  }
}

TEST_F(EngineErrors, FlippedByteFailsTheChecksum) {
  for (size_t pos : {size_t{100}, engine_.size() / 2, engine_.size() - 5}) {
    auto bad = engine_;
    bad[pos] ^= 0x5a;
    auto e = Runtime().deserialize_engine(bad);
    ASSERT_FALSE(e.is_ok());
    EXPECT_NE(e.status().to_string().find("checksum"), std::string::npos) << e.status().to_string();
  }
}

TEST_F(EngineErrors, OtherFormatVersionIsNamed) {
  auto bad = engine_;
  bad[8] = 42;  // format_version follows the 8-byte magic
  auto e = Runtime().deserialize_engine(bad);
  ASSERT_FALSE(e.is_ok());
  EXPECT_EQ(e.status().code(), StatusCode::kVersionMismatch);
  EXPECT_NE(e.status().to_string().find("version 42"), std::string::npos) << e.status().to_string();
}

TEST_F(EngineErrors, NotAnEngineAndMissingFile) {
  std::vector<uint8_t> junk(1000, 7);
  auto e = Runtime().deserialize_engine(junk);
  EXPECT_NE(e.status().to_string().find("magic"), std::string::npos);
  auto f = Runtime().load_engine("/nonexistent.engine");
  EXPECT_EQ(f.status().code(), StatusCode::kNotFound);
}

// A corrupt engine can carry a constant whose tensor contradicts the shape its value declares (found by
// fuzz_engine_loader: a 1-D weight behind a [N,K] value made the CPU FusedMLP kernel read shape[1]). Loading
// refuses it as corrupt, naming the value.
TEST_F(EngineErrors, FusedMlpWeightThatContradictsItsShapeIsRefused) {
  auto model = deserialize_engine(engine_);
  ASSERT_TRUE(model.is_ok()) << model.status().to_string();
  int weight = -1;
  for (const Node& n : model->graph.nodes)
    if (n.op_type == "FusedMLP") weight = n.inputs[1];
  ASSERT_GE(weight, 0) << "the CPU MLP engine has a kiln.FusedMLP layer";
  for (int variant = 0; variant < 2; ++variant) {
    EngineModel m = *model;
    Tensor& w = *m.graph.values[weight].constant;
    const Dims declared = m.graph.values[weight].shape;
    // 0: the same floats as one row (1-D); 1: [N, K] with N and K swapped, still 2-D.
    w.shape = variant == 0 ? Dims{volume(declared)} : Dims{declared[1], declared[0]};
    auto e = Runtime().deserialize_engine(serialize_engine(m));
    ASSERT_FALSE(e.is_ok()) << "variant " << variant;
    EXPECT_EQ(e.status().code(), StatusCode::kCorruptEngine) << e.status().to_string();
    EXPECT_NE(e.status().to_string().find("'" + m.graph.values[weight].name + "': its constant is float32 ["),
              std::string::npos)
        << e.status().to_string();
  }
}

TEST(BuildErrors, BadProfilesAreExplained) {
  BuilderConfig c;
  c.profiles["nope"] = {{1, 1, 28, 28}, {1, 1, 28, 28}, {1, 1, 28, 28}};
  auto r = build_engine_from_file(source_path("models/mlp.onnx"), c);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().to_string().find("inputs: input"), std::string::npos) << r.status().to_string();
  c.profiles.clear();
  c.profiles["input"] = {{8, 1, 28, 28}, {4, 1, 28, 28}, {16, 1, 28, 28}};
  r = build_engine_from_file(source_path("models/mlp.onnx"), c);
  EXPECT_NE(r.status().to_string().find("min <= opt <= max"), std::string::npos) << r.status().to_string();
  c.profiles["input"] = {{1, 2, 28, 28}, {1, 2, 28, 28}, {1, 2, 28, 28}};
  r = build_engine_from_file(source_path("models/mlp.onnx"), c);
  EXPECT_NE(r.status().to_string().find("fixed to 1"), std::string::npos) << r.status().to_string();
  BuilderConfig d;
  d.disabled_passes = {"no_such_pass"};
  r = build_engine_from_file(source_path("models/mlp.onnx"), d);
  EXPECT_NE(r.status().to_string().find("unknown pass"), std::string::npos);
}

TEST(Passes, EachCanBeSwitchedOffWithoutChangingResults) {
  const auto x = test::random_floats(6 * 784, 5);
  std::vector<float> want;
  for (const auto& p : list_passes()) {
    BuilderConfig c;
    c.profiles["input"] = {{1, 1, 28, 28}, {6, 1, 28, 28}, {6, 1, 28, 28}};
    c.disabled_passes = {p.name};
    auto r = build_engine_from_file(source_path(p.name == "matmul_add_to_gemm" ? "tests/fixtures/mlp_dynamo/mlp_dynamo.onnx"
                                                                              : "models/mlp.onnx"), c);
    ASSERT_TRUE(r.is_ok()) << p.name << ": " << r.status().to_string();
    auto e = test::must_load(r->engine);
    auto ctx = e->create_execution_context();
    ASSERT_TRUE(ctx.is_ok());
    auto out = (*ctx)->infer({{"input", HostTensor::from_floats({6, 1, 28, 28}, x)}});
    ASSERT_TRUE(out.is_ok()) << p.name << ": " << out.status().to_string();
    std::vector<float> y(out->at("logits").data<float>(), out->at("logits").data<float>() + 60);
    if (want.empty()) want = y;
    std::vector<double> ref(want.begin(), want.end());
    EXPECT_LE(test::rel_l2(y, ref), 1e-5) << "with " << p.name << " off";
  }
}

}  // namespace
}  // namespace kiln
