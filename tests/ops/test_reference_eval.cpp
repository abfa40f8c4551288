#include <cmath>

#include <gtest/gtest.h>

#include "ops/float16.h"
#include "ops/reference_eval.h"

namespace kiln {
namespace {

int add_value(Graph& g, const std::string& name, DataType dt, Dims shape, std::optional<Tensor> c = std::nullopt) {
  Value v;
  v.name = name;
  v.dtype = dt;
  v.shape = std::move(shape);
  v.rank_known = true;
  v.constant = std::move(c);
  return g.add_value(std::move(v));
}

void add_node(Graph& g, const std::string& op, std::vector<int> in, std::vector<int> out, int opset = 17) {
  Node n;
  n.name = op + std::to_string(g.nodes.size());
  n.op_type = op;
  n.opset = opset;
  n.inputs = std::move(in);
  n.outputs = std::move(out);
  g.nodes.push_back(std::move(n));
}

TEST(OpReferenceEval, SmallMlpMatchesHandComputation) {
  Graph g;
  const std::vector<float> w = {0.5f, -1.f, 2.f, 0.25f, 1.5f, -0.75f};  // [3,2]
  const std::vector<float> b = {0.1f, -0.2f};
  const int x = add_value(g, "x", DataType::kFloat32, {2, 3});
  const int wv = add_value(g, "w", DataType::kFloat32, {3, 2}, Tensor::from_vector(DataType::kFloat32, {3, 2}, w));
  const int bv = add_value(g, "b", DataType::kFloat32, {2}, Tensor::from_vector(DataType::kFloat32, {2}, b));
  const int sv = add_value(g, "s", DataType::kInt64, {1},
                           Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{-1}));
  const int mm = add_value(g, "mm", DataType::kFloat32, {2, 2});
  const int ad = add_value(g, "ad", DataType::kFloat32, {2, 2});
  const int re = add_value(g, "re", DataType::kFloat32, {2, 2});
  const int y = add_value(g, "y", DataType::kFloat32, {4});
  add_node(g, "MatMul", {x, wv}, {mm});
  add_node(g, "Add", {mm, bv}, {ad});
  add_node(g, "Relu", {ad}, {re});
  add_node(g, "Reshape", {re, sv}, {y});
  g.inputs = {x};
  g.outputs = {y, mm};
  const std::vector<double> xs = {1, -2, 3, 0.5, 4, -1};
  auto out = evaluate_reference(g, {RefTensor{DataType::kFloat32, {2, 3}, xs}});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  ASSERT_EQ(out->size(), 2u);
  std::vector<double> expect;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      double acc = b[j];
      for (int k = 0; k < 3; ++k) acc += xs[i * 3 + k] * w[k * 2 + j];
      expect.push_back(std::max(acc, 0.0));
    }
  EXPECT_EQ(out->at(0).shape, (Dims{4}));
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out->at(0).data[i], expect[i], 1e-12);
  EXPECT_EQ(out->at(1).shape, (Dims{2, 2}));
}

TEST(OpReferenceEval, IntegerShapeArithmetic) {
  // Concat(int64 consts) -> Mul by 2 -> Div by -3 -> Cast to int32.
  Graph g;
  auto i64 = [](std::vector<int64_t> v) {
    return Tensor::from_vector(DataType::kInt64, {static_cast<int64_t>(v.size())}, v);
  };
  const int a = add_value(g, "a", DataType::kInt64, {2}, i64({1, 7}));
  const int b = add_value(g, "b", DataType::kInt64, {1}, i64({-5}));
  const int two = add_value(g, "two", DataType::kInt64, {}, Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{2}));
  const int m3 = add_value(g, "m3", DataType::kInt64, {}, Tensor::from_vector(DataType::kInt64, {}, std::vector<int64_t>{-3}));
  const int c = add_value(g, "c", DataType::kInt64, {3});
  const int m = add_value(g, "m", DataType::kInt64, {3});
  const int d = add_value(g, "d", DataType::kInt64, {3});
  const int y = add_value(g, "y", DataType::kInt32, {3});
  add_node(g, "Concat", {a, b}, {c});
  g.nodes.back().attrs.set("axis", int64_t{0});
  add_node(g, "Mul", {c, two}, {m});
  add_node(g, "Div", {m, m3}, {d});
  add_node(g, "Cast", {d}, {y});
  g.nodes.back().attrs.set("to", int64_t{6});
  g.outputs = {y};
  auto out = evaluate_reference(g, {});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(out->at(0).dtype, DataType::kInt32);
  EXPECT_EQ(out->at(0).data, (std::vector<double>{0, -4, 3}));  // 2/-3, 14/-3, -10/-3 truncated
  const Tensor t = tensor_from_ref(out->at(0), DataType::kInt32);
  EXPECT_EQ(t.data<int32_t>()[1], -4);
}

TEST(OpReferenceEval, ErrorsCarryNodeContext) {
  Graph g;
  const int x = add_value(g, "x", DataType::kFloat32, {2, 3});
  const int s = add_value(g, "s", DataType::kInt64, {1}, Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{5}));
  const int y = add_value(g, "y", DataType::kFloat32, {5});
  add_node(g, "Reshape", {x, s}, {y});
  g.inputs = {x};
  g.outputs = {y};
  auto out = evaluate_reference(g, {RefTensor{DataType::kFloat32, {2, 3}, {1, 2, 3, 4, 5, 6}}});
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().to_string().find("node 'Reshape0' (Reshape, opset 17)"), std::string::npos)
      << out.status().to_string();
  EXPECT_FALSE(evaluate_reference(g, {}).is_ok());  // wrong number of inputs
}

TEST(OpReferenceEval, TensorRoundTrips) {
  const std::vector<double> vals = {1.5, -2.25, 3, 100, -7};
  for (DataType dt : {DataType::kFloat32, DataType::kFloat64, DataType::kFloat16, DataType::kInt64,
                      DataType::kInt32, DataType::kInt8}) {
    const Tensor t = tensor_from_ref(RefTensor{dt, {5}, vals}, dt);
    EXPECT_EQ(t.nbytes(), 5 * dtype_size(dt));
    const RefTensor r = ref_from_tensor(t);
    EXPECT_EQ(r.shape, (Dims{5}));
    if (dt == DataType::kFloat32 || dt == DataType::kFloat64 || dt == DataType::kFloat16) {
      EXPECT_EQ(r.data, vals) << dtype_name(dt);
    } else {
      EXPECT_EQ(r.data, (std::vector<double>{1, -2, 3, 100, -7})) << dtype_name(dt);  // truncated
    }
  }
  const Tensor u8 = tensor_from_ref(RefTensor{DataType::kUInt8, {2}, {255, 3.9}}, DataType::kUInt8);
  EXPECT_EQ(u8.data<uint8_t>()[0], 255);
  EXPECT_EQ(u8.data<uint8_t>()[1], 3);
  const Tensor b = tensor_from_ref(RefTensor{DataType::kBool, {3}, {0, 2, -0.5}}, DataType::kBool);
  EXPECT_EQ(std::vector<uint8_t>(b.raw(), b.raw() + 3), (std::vector<uint8_t>{0, 1, 1}));
  const Tensor h = tensor_from_ref(RefTensor{DataType::kFloat16, {1}, {1.0 / 3}}, DataType::kFloat16);
  EXPECT_EQ(h.data<uint16_t>()[0], 0x3555);
  // Large int64 values survive exactly.
  const Tensor big = Tensor::from_vector(DataType::kInt64, {1}, std::vector<int64_t>{int64_t{1} << 52});
  EXPECT_EQ(tensor_from_ref(ref_from_tensor(big), DataType::kInt64).data<int64_t>()[0], int64_t{1} << 52);
}

}  // namespace
}  // namespace kiln
