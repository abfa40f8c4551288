// The batch-split analysis (runtime/batch_split.h) that lets execute() on host memory cut a batch into
// chunks: yes for the course's MLP, no (with the reason) when the profile fixes the batch or a layer
// mixes rows.
#include <gtest/gtest.h>

#include "builder/shape_inference.h"
#include "onnx/importer.h"
#include "runtime/batch_split.h"
#include "test_util.h"

namespace kiln {
namespace {

struct Mlp {
  Graph g;
  std::vector<ShapeProfile> profiles;
};

Mlp mlp(int64_t min_batch, int64_t max_batch) {
  auto g = import_onnx_file(test::source_path("models/mlp.onnx"));
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  Mlp m{std::move(*g), {}};
  auto p = resolve_profiles(m.g, {{"input", {{min_batch, 1, 28, 28}, {max_batch, 1, 28, 28}, {max_batch, 1, 28, 28}}}});
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  m.profiles = *p;
  return m;
}

// Appends `op` (with attrs) after the graph's output and makes its result the new output.
void append(Mlp& m, const std::string& op, Attributes attrs) {
  Node n;
  n.name = "appended_" + op;
  n.op_type = op;
  n.inputs = {m.g.outputs[0]};
  Value v;
  v.name = op + "_out";
  v.dtype = DataType::kFloat32;
  n.outputs = {m.g.add_value(std::move(v))};
  n.attrs = std::move(attrs);
  m.g.outputs = {n.outputs[0]};
  m.g.nodes.push_back(std::move(n));
}

TEST(BatchSplit, MlpRowsAreIndependent) {
  Mlp m = mlp(1, 8192);
  EXPECT_EQ(batch_split_blocker(m.g, m.profiles), "");
}

TEST(BatchSplit, FixedBatchCannotBeSplit) {
  Mlp m = mlp(8, 8);
  EXPECT_NE(batch_split_blocker(m.g, m.profiles).find("fixed"), std::string::npos);
}

TEST(BatchSplit, SoftmaxOverTheBatchMixesRows) {
  Mlp ok = mlp(1, 64);
  Attributes last;
  last.set("axis", int64_t{-1});
  append(ok, "Softmax", last);
  EXPECT_EQ(batch_split_blocker(ok.g, ok.profiles), "");

  Mlp bad = mlp(1, 64);
  Attributes batch;
  batch.set("axis", int64_t{0});
  append(bad, "Softmax", batch);
  const std::string why = batch_split_blocker(bad.g, bad.profiles);
  EXPECT_NE(why.find("appended_Softmax"), std::string::npos) << why;
  EXPECT_NE(why.find("batch"), std::string::npos) << why;
}

TEST(BatchSplit, TransposeMovingTheBatchMixesRows) {
  Mlp m = mlp(1, 64);
  Attributes perm;
  perm.set("perm", std::vector<int64_t>{1, 0});
  append(m, "Transpose", perm);
  EXPECT_NE(batch_split_blocker(m.g, m.profiles), "");
}

}  // namespace
}  // namespace kiln
