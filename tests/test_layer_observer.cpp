// ExecutionContext::set_layer_observer on the course's MLP (CPU): every real (fused) layer is seen in
// order with its shapes and bytes, fused layers match the unfused float64 reference, and observing
// changes nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "test_util.h"

namespace kiln {
namespace {

struct Observed {
  std::string layer, tensor;
  DataType dtype;
  Dims shape;
  std::vector<uint8_t> bytes;
  float scale;
};

std::shared_ptr<Engine> mlp_engine() {
  BuilderConfig c;
  c.profiles["input"] = {{1, 1, 28, 28}, {8, 1, 28, 28}, {16, 1, 28, 28}};
  c.disabled_passes = {"mlp_fusion"};  // several layers to observe (fused, the MLP is one layer)
  auto out = build_engine_from_file(test::source_path("models/mlp.onnx"), c);
  if (!out.is_ok()) throw std::runtime_error(out.status().to_string());
  return test::must_load(out->engine);
}

// Installs an observer that copies every LayerOutput it is shown into `seen`.
void record_into(ExecutionContext& ctx, std::vector<Observed>* seen) {
  ctx.set_layer_observer([seen](const LayerOutput& o) {
    const auto* p = static_cast<const uint8_t*>(o.data);
    seen->push_back({o.layer, o.tensor, o.dtype, o.shape,
                     std::vector<uint8_t>(p, p + volume(o.shape) * dtype_size(o.dtype)), o.scale});
  });
}

HostTensor input(int64_t batch, uint64_t seed) {
  return HostTensor::from_floats({batch, 1, 28, 28}, test::random_floats(static_cast<size_t>(batch * 784), seed));
}

TEST(LayerObserver, SeesEveryLayerInOrderAndTheLastOneIsTheOutput) {
  auto engine = mlp_engine();
  auto ctx = std::move(engine->create_execution_context()).value();
  std::vector<Observed> seen;
  record_into(*ctx, &seen);
  const int64_t b = 5;
  auto out = ctx->infer({{"input", input(b, 11)}});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();

  // Expected: each non-view layer's outputs with storage, as `kiln inspect` lists them.
  std::vector<std::pair<std::string, std::string>> expected;
  const auto inspection = nlohmann::json::parse(engine->inspect_json());
  for (const auto& l : inspection["layers"])
    if (!l["view"].get<bool>())
      for (const auto& t : l["outputs"]) expected.emplace_back(l["name"], t["name"]);
  ASSERT_EQ(seen.size(), expected.size());
  ASSERT_GE(seen.size(), 3u);  // three GEMM layers after fusion
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].layer, expected[i].first) << i;
    EXPECT_EQ(seen[i].tensor, expected[i].second) << i;
    EXPECT_EQ(seen[i].dtype, DataType::kFloat32);
    EXPECT_EQ(seen[i].scale, 0.f);
    ASSERT_EQ(seen[i].shape.size(), 2u);
    EXPECT_EQ(seen[i].shape[0], b);
  }
  const HostTensor& logits = out->at("logits");
  EXPECT_EQ(seen.back().tensor, "logits");
  EXPECT_EQ(seen.back().shape, (Dims{b, 10}));
  EXPECT_EQ(seen.back().bytes, logits.bytes);  // bit for bit
}

TEST(LayerObserver, FusedLayersMatchTheUnfusedFloat64Reference) {
  auto engine = mlp_engine();
  auto ctx = std::move(engine->create_execution_context()).value();
  std::vector<Observed> seen;
  record_into(*ctx, &seen);
  const std::map<std::string, HostTensor> inputs{{"input", input(16, 12)}};
  ASSERT_TRUE(ctx->infer(inputs).is_ok());
  auto ref = evaluate_onnx_reference(test::source_path("models/mlp.onnx"), inputs);
  ASSERT_TRUE(ref.is_ok()) << ref.status().to_string();
  auto fused = nlohmann::json::parse(engine->inspect_json())["layers"];
  int fused_checked = 0;
  for (const Observed& o : seen) {
    auto r = ref->find(o.tensor);
    ASSERT_NE(r, ref->end()) << o.tensor << " has no ONNX counterpart";
    ASSERT_EQ(r->second.shape, o.shape) << o.tensor;
    std::vector<float> a(o.bytes.size() / 4);
    std::memcpy(a.data(), o.bytes.data(), o.bytes.size());
    const double* rd = r->second.data<double>();
    EXPECT_LE(test::rel_l2(a, std::vector<double>(rd, rd + a.size())), 1e-5) << o.layer;
    for (const auto& l : fused)
      if (l["name"] == o.layer && l["op_type"] == "kiln.FusedGemm") ++fused_checked;
  }
  EXPECT_GE(fused_checked, 1);
}

TEST(LayerObserver, ObservingChangesNoResultAndCanBeTurnedOff) {
  auto engine = mlp_engine();
  auto ctx = std::move(engine->create_execution_context()).value();
  const std::map<std::string, HostTensor> inputs{{"input", input(7, 13)}};
  auto plain = ctx->infer(inputs);
  ASSERT_TRUE(plain.is_ok());
  std::vector<Observed> seen;
  record_into(*ctx, &seen);
  auto observed = ctx->infer(inputs);
  ASSERT_TRUE(observed.is_ok());
  EXPECT_EQ(plain->at("logits").bytes, observed->at("logits").bytes);
  const size_t per_run = seen.size();
  EXPECT_GT(per_run, 0u);
  ctx->set_layer_observer(nullptr);
  auto after = ctx->infer(inputs);
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(seen.size(), per_run);
  EXPECT_EQ(plain->at("logits").bytes, after->at("logits").bytes);
}

TEST(LayerObserver, AnObserverExceptionBecomesAnError) {
  auto engine = mlp_engine();
  auto ctx = std::move(engine->create_execution_context()).value();
  ctx->set_layer_observer([](const LayerOutput&) { throw std::runtime_error("stop here"); });
  auto out = ctx->infer({{"input", input(2, 14)}});
  ASSERT_FALSE(out.is_ok());
  EXPECT_NE(out.status().to_string().find("stop here"), std::string::npos) << out.status().to_string();
}

}  // namespace
}  // namespace kiln
