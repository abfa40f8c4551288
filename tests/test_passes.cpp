// Fusion rules, zero-copy views and the memory plan, each checked on small models against the
// float64 reference.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "onnx/importer.h"
#include "ops/reference_eval.h"
#include "test_util.h"

namespace kiln {
namespace {

struct Built {
  std::shared_ptr<Engine> engine;
  nlohmann::json inspect;
};

Built build(const test::OnnxModel& m, const BuilderConfig& c) {
  auto r = build_engine_from_bytes(m.bytes(), ".", c);
  if (!r.is_ok()) throw std::runtime_error(r.status().to_string());
  Built b{test::must_load(r->engine), {}};
  b.inspect = nlohmann::json::parse(b.engine->inspect_json());
  return b;
}

// Runs engine and reference on one random input named "x"; returns rel L2 of output "y".
double check(const test::OnnxModel& m, const Built& b, const Dims& shape, uint64_t seed) {
  auto x = test::random_floats(static_cast<size_t>(volume(shape)), seed, -2.f, 2.f);
  auto ctx = b.engine->create_execution_context();
  if (!ctx.is_ok()) return INFINITY;
  auto out = (*ctx)->infer({{"x", HostTensor::from_floats(shape, x)}});
  if (!out.is_ok()) throw std::runtime_error(out.status().to_string());
  const HostTensor& y = out->at("y");
  auto g = import_onnx_bytes(m.bytes(), ".");
  auto ref = evaluate_reference(*g, {RefTensor{DataType::kFloat32, shape, std::vector<double>(x.begin(), x.end())}});
  if (!ref.is_ok()) throw std::runtime_error(ref.status().to_string());
  return test::rel_l2(std::vector<float>(y.data<float>(), y.data<float>() + y.elements()), (*ref)[0].data);
}

int count_op(const nlohmann::json& j, const std::string& op) {
  int n = 0;
  for (const auto& l : j["layers"]) n += l["op_type"] == op && !l["view"].get<bool>();
  return n;
}

TEST(Fusion, MatMulAddOnRank3InputBecomesOneGemm) {
  test::OnnxModel m(18);
  m.input("x", {-1, 5, 12});
  m.initializer("w", {12, 7}, test::random_floats(84, 1));
  m.initializer("b", {7}, test::random_floats(7, 2));
  m.node("MatMul", {"x", "w"}, {"xw"}, "mm");
  m.node("Add", {"xw", "b"}, {"y"}, "add");
  m.output("y", {-1, 5, 7});
  BuilderConfig c;
  c.profiles["x"] = {{1, 5, 12}, {2, 5, 12}, {3, 5, 12}};
  auto b = build(m, c);
  EXPECT_EQ(count_op(b.inspect, "kiln.FusedGemm"), 1) << b.inspect.dump(1);
  EXPECT_EQ(b.inspect["layers"].size(), 1u);
  EXPECT_EQ(b.inspect["layers"][0]["origins"], nlohmann::json({"mm", "add"}));
  for (int64_t n : {1, 3}) EXPECT_LE(check(m, b, {n, 5, 12}, 10 + n), 1e-5);
  c.disabled_passes = {"matmul_add_to_gemm"};
  auto unfused = build(m, c);
  EXPECT_EQ(count_op(unfused.inspect, "kiln.FusedGemm"), 0);
  EXPECT_LE(check(m, unfused, {2, 5, 12}, 3), 1e-5);
}

class ActivationFusion : public ::testing::TestWithParam<const char*> {};

TEST_P(ActivationFusion, FusesIntoGemmEpilogue) {
  test::OnnxModel m(17);
  m.input("x", {-1, 9});
  m.initializer("w", {6, 9}, test::random_floats(54, 3));
  m.initializer("c", {6}, test::random_floats(6, 4));
  auto& g = m.node("Gemm", {"x", "w", "c"}, {"h"});
  auto* a = g.add_attribute();
  a->set_name("transB");
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(1);
  auto* al = g.add_attribute();
  al->set_name("alpha");
  al->set_type(onnx::AttributeProto::FLOAT);
  al->set_f(0.7f);
  auto& act = m.node(GetParam(), {"h"}, {"y"});
  if (std::string(GetParam()) == "LeakyRelu") {
    auto* s = act.add_attribute();
    s->set_name("alpha");
    s->set_type(onnx::AttributeProto::FLOAT);
    s->set_f(0.2f);
  }
  m.output("y", {-1, 6});
  BuilderConfig c;
  c.profiles["x"] = {{1, 9}, {4, 9}, {33, 9}};
  auto b = build(m, c);
  ASSERT_EQ(b.inspect["layers"].size(), 1u) << b.inspect.dump(1);
  EXPECT_EQ(b.inspect["layers"][0]["attributes"]["activation"], GetParam());
  for (int64_t n : {1, 4, 33}) EXPECT_LE(check(m, b, {n, 9}, 20 + n), 1e-5) << GetParam() << " batch " << n;
}

INSTANTIATE_TEST_SUITE_P(Kinds, ActivationFusion, ::testing::Values("Relu", "LeakyRelu", "Sigmoid", "Tanh"));

TEST(Views, GraphOutputReachedThroughReshapeIsWrittenInPlace) {
  test::OnnxModel m(17);
  m.input("x", {-1, 8});
  m.initializer("w", {8, 6}, test::random_floats(48, 5));
  m.node("MatMul", {"x", "w"}, {"h"});
  m.initializer("shape", {3}, {});  // replaced below by an int64 tensor
  auto* shape = m.graph().mutable_initializer(1);
  shape->set_data_type(7);
  shape->clear_raw_data();
  for (int64_t v : {0, 2, 3}) shape->add_int64_data(v);
  m.node("Reshape", {"h", "shape"}, {"y"});
  m.output("y", {-1, 2, 3});
  BuilderConfig c;
  c.profiles["x"] = {{1, 8}, {2, 8}, {5, 8}};
  auto b = build(m, c);
  int views = 0;
  for (const auto& l : b.inspect["layers"]) views += l["view"].get<bool>();
  EXPECT_EQ(views, 1) << b.inspect.dump(1);
  EXPECT_EQ(b.inspect["arena_bytes"], 0) << "the MatMul should write straight into the output";
  EXPECT_LE(check(m, b, {5, 8}, 6), 1e-5);
}

TEST(Views, InputToOutputIdentityIsACopy) {
  test::OnnxModel m(17);
  m.input("x", {-1, 3});
  m.node("Identity", {"x"}, {"y"});
  m.output("y", {-1, 3});
  BuilderConfig c;
  c.profiles["x"] = {{1, 3}, {2, 3}, {4, 3}};
  auto b = build(m, c);
  EXPECT_FALSE(b.inspect["layers"][0]["view"].get<bool>());
  EXPECT_EQ(check(m, b, {4, 3}, 8), 0.0);
}

TEST(MemoryPlan, ReuseShrinksTheArena) {
  test::OnnxModel m(17);
  m.input("x", {-1, 64});
  std::string prev = "x";
  for (int i = 0; i < 6; ++i) {
    const std::string w = "w" + std::to_string(i), h = "h" + std::to_string(i);
    m.initializer(w, {64, 64}, test::random_floats(64 * 64, 30 + i, -0.2f, 0.2f));
    m.node("MatMul", {prev, w}, {h});
    m.node("Tanh", {h}, {h + "t"});
    prev = h + "t";
  }
  m.node("Identity", {prev}, {"y"});
  m.output("y", {-1, 64});
  BuilderConfig c;
  c.profiles["x"] = {{1, 64}, {16, 64}, {16, 64}};
  auto reuse = build(m, c);
  c.disabled_passes = {"memory_reuse"};
  auto no_reuse = build(m, c);
  const auto a = reuse.inspect["arena_bytes"].get<uint64_t>();
  const auto b = no_reuse.inspect["arena_bytes"].get<uint64_t>();
  EXPECT_GT(a, 0u);
  EXPECT_LE(a, 2u * 16 * 64 * 4) << "two live activations at a time";
  EXPECT_GE(b, 10u * 16 * 64 * 4);
  EXPECT_LE(check(m, reuse, {16, 64}, 9), 1e-5);
  EXPECT_LE(check(m, no_reuse, {7, 64}, 9), 1e-5);
}

TEST(ConstantFolding, FoldsShapeArithmetic) {
  // y = Reshape(x, Concat(Constant[-1], Constant[2])) : the concat is folded into a constant shape.
  test::OnnxModel m(17);
  m.input("x", {-1, 4});
  for (auto [name, v] : {std::pair{"a", -1}, std::pair{"b", 2}}) {
    auto& c = m.node("Constant", {}, {name});
    auto* at = c.add_attribute();
    at->set_name("value_ints");
    at->set_type(onnx::AttributeProto::INTS);
    at->add_ints(v);
  }
  auto& cat = m.node("Concat", {"a", "b"}, {"shape"});
  auto* ax = cat.add_attribute();
  ax->set_name("axis");
  ax->set_type(onnx::AttributeProto::INT);
  ax->set_i(0);
  m.node("Relu", {"x"}, {"r"});
  m.node("Reshape", {"r", "shape"}, {"y"});
  m.output("y", {-1, 2});
  BuilderConfig c;
  c.profiles["x"] = {{1, 4}, {2, 4}, {3, 4}};
  auto b = build(m, c);
  for (const auto& l : b.inspect["layers"]) EXPECT_NE(l["op_type"], "Concat") << b.inspect.dump(1);
  EXPECT_LE(check(m, b, {3, 4}, 12), 1e-6);
}


// ---- mlp_fusion ----

void set_attr(onnx::NodeProto& n, const std::string& name, int64_t v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::INT);
  a->set_i(v);
}
void set_attr(onnx::NodeProto& n, const std::string& name, float v) {
  auto* a = n.add_attribute();
  a->set_name(name);
  a->set_type(onnx::AttributeProto::FLOAT);
  a->set_f(v);
}

// x[-1,12] -> Gemm(transB=1, alpha 0.7, C [9]) -> Relu -> Gemm(transB=0, beta 1.5, C [1,7]) -> Tanh
//          -> Gemm(transB=1, no C) -> y[-1,5]. Intermediates h1 (after Relu) and h2 (after Tanh).
test::OnnxModel dense_chain(bool w2_constant = true) {
  test::OnnxModel m(17);
  m.input("x", {-1, 12});
  m.initializer("w1", {9, 12}, test::random_floats(108, 31));
  m.initializer("c1", {9}, test::random_floats(9, 32));
  if (w2_constant) m.initializer("w2", {9, 7}, test::random_floats(63, 33));
  else m.input("w2", {9, 7});
  m.initializer("c2", {1, 7}, test::random_floats(7, 34));
  m.initializer("w3", {5, 7}, test::random_floats(35, 35));
  auto& g1 = m.node("Gemm", {"x", "w1", "c1"}, {"g1"}, "fc1");
  set_attr(g1, "transB", int64_t{1});
  set_attr(g1, "alpha", 0.7f);
  m.node("Relu", {"g1"}, {"h1"}, "relu1");
  auto& g2 = m.node("Gemm", {"h1", "w2", "c2"}, {"g2"}, "fc2");
  set_attr(g2, "beta", 1.5f);
  m.node("Tanh", {"g2"}, {"h2"}, "tanh2");
  auto& g3 = m.node("Gemm", {"h2", "w3"}, {"y"}, "fc3");
  set_attr(g3, "transB", int64_t{1});
  m.output("y", {-1, 5});
  return m;
}

BuilderConfig chain_config() {
  BuilderConfig c;
  c.profiles["x"] = {{1, 12}, {4, 12}, {300, 12}};
  return c;
}

TEST(MlpFusion, DenseChainBecomesOneFusedMlp) {
  const auto m = dense_chain();
  auto b = build(m, chain_config());
  ASSERT_EQ(b.inspect["layers"].size(), 1u) << b.inspect.dump(1);
  const auto& l = b.inspect["layers"][0];
  EXPECT_EQ(l["op_type"], "kiln.FusedMLP");
  EXPECT_EQ(l["kernel"], "cpu.f32.fused_mlp");
  EXPECT_EQ(l["origins"], nlohmann::json({"fc1", "relu1", "fc2", "tanh2", "fc3"}));
  EXPECT_EQ(l["attributes"]["activations"], "Relu,Tanh,");
  EXPECT_EQ(l["attributes"]["weight_layout"], "cpu.panel64");  // packed at build time
  EXPECT_TRUE(b.inspect["runtime_device"]["layer_tactics"][l["name"].get<std::string>()].is_string())
      << b.inspect["runtime_device"].dump();
  for (int64_t n : {1, 3, 17, 300}) EXPECT_LE(check(m, b, {n, 12}, 40 + n), 1e-5) << "batch " << n;
  // Without weight prepacking the kernel reads the "nk" layout and packs at load.
  BuilderConfig nopack = chain_config();
  nopack.disabled_passes = {"weight_prepacking"};
  auto np = build(m, nopack);
  EXPECT_EQ(np.inspect["layers"][0]["attributes"]["weight_layout"], "nk");
  EXPECT_LE(check(m, np, {5, 12}, 50), 1e-5);
}

TEST(MlpFusion, DisabledByName) {
  const auto m = dense_chain();
  BuilderConfig c = chain_config();
  c.disabled_passes = {"mlp_fusion"};
  auto b = build(m, c);
  EXPECT_EQ(count_op(b.inspect, "kiln.FusedMLP"), 0);
  EXPECT_EQ(count_op(b.inspect, "kiln.FusedGemm"), 2) << b.inspect.dump(1);
  EXPECT_LE(check(m, b, {3, 12}, 51), 1e-5);
  bool listed = false;
  for (const auto& p : list_passes()) listed = listed || p.name == "mlp_fusion";
  EXPECT_TRUE(listed);
}

TEST(MlpFusion, IntermediateThatIsAGraphOutputOrReadTwiceStopsTheChain) {
  {  // h2 is also a graph output: fc1+fc2 still fuse, fc3 stays on its own
    auto m = dense_chain();
    m.output("h2", {-1, 7});
    auto b = build(m, chain_config());
    EXPECT_EQ(count_op(b.inspect, "kiln.FusedMLP"), 1) << b.inspect.dump(1);
    EXPECT_EQ(count_op(b.inspect, "Gemm"), 1) << b.inspect.dump(1);
    EXPECT_LE(check(m, b, {4, 12}, 52), 1e-5);
  }
  {  // h1 read twice (by fc2 and by a second Gemm): fc1 alone, fc2+fc3 fuse
    auto m = dense_chain();
    m.initializer("w4", {9, 2}, test::random_floats(18, 36));
    m.node("Gemm", {"h1", "w4"}, {"z"}, "side");
    m.output("z", {-1, 2});
    auto b = build(m, chain_config());
    EXPECT_EQ(count_op(b.inspect, "kiln.FusedMLP"), 1) << b.inspect.dump(1);
    for (const auto& l : b.inspect["layers"])
      if (l["op_type"] == "kiln.FusedMLP") EXPECT_EQ(l["origins"], nlohmann::json({"fc2", "tanh2", "fc3"}));
    EXPECT_LE(check(m, b, {4, 12}, 53), 1e-5);
  }
}

TEST(MlpFusion, RuntimeWeightIsNotFused) {
  auto b = build(dense_chain(/*w2_constant=*/false), chain_config());
  EXPECT_EQ(count_op(b.inspect, "kiln.FusedMLP"), 0) << b.inspect.dump(1);
}

TEST(MlpFusion, NotInInt8Builds) {
  BuilderConfig c = chain_config();
  c.int8.enabled = true;
  c.int8.batches = 2;
  c.int8.batch_size = 16;
  int batches = 0;
  c.int8.next_batch = [&](std::map<std::string, HostTensor>* batch) -> Result<bool> {
    if (batches++ == 2) return false;
    (*batch)["x"] = HostTensor::from_floats({16, 12}, test::random_floats(16 * 12, 60 + batches, -2.f, 2.f));
    return true;
  };
  c.int8.layer_precisions = {{"*", "int8"}};
  auto b = build(dense_chain(), c);
  EXPECT_EQ(count_op(b.inspect, "kiln.FusedMLP"), 0) << b.inspect.dump(1);
  EXPECT_GE(count_op(b.inspect, "kiln.QGemm"), 1) << b.inspect.dump(1);
}

}  // namespace
}  // namespace kiln
