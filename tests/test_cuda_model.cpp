// CUDA engines end to end on the course's MLP: every precision against the float64 reference, IO
// formats, dynamic batch, CUDA graphs, caller streams, round trips and the timing cache. These need a
// GPU: they skip without one, unless KILN_TEST_CUDA=require (the "gpu" ctest label) makes that a failure.
// The clear-error cases at the end run everywhere.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "engine/engine_model.h"
#include "onnx/importer.h"
#include "ops/float16.h"
#include "ops/reference_eval.h"
#include "test_util.h"

namespace kiln {
namespace {

using test::rel_l2;
using test::source_path;

const char* kMlp = "models/mlp.onnx";

BuilderConfig cuda_config(int64_t min, int64_t opt, int64_t max) {
  BuilderConfig c;
  c.device = "cuda";
  c.profiles["input"] = {{min, 1, 28, 28}, {opt, 1, 28, 28}, {max, 1, 28, 28}};
  return c;
}

std::vector<uint8_t> build(const BuilderConfig& c, BuildSummary* summary = nullptr) {
  auto out = build_engine_from_file(source_path(kMlp), c);
  EXPECT_TRUE(out.is_ok()) << out.status().to_string();
  if (!out.is_ok()) return {};
  if (summary) *summary = out->summary;
  return out->engine;
}

std::vector<double> reference(const std::vector<float>& x, int64_t b) {
  auto g = import_onnx_file(source_path(kMlp));
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  RefTensor in{DataType::kFloat32, {b, 1, 28, 28}, std::vector<double>(x.begin(), x.end())};
  auto out = evaluate_reference(*g, {in});
  EXPECT_TRUE(out.is_ok()) << out.status().to_string();
  return out.is_ok() ? (*out)[0].data : std::vector<double>{};
}

// Device buffers for one run, outputs poisoned with NaN bytes before every enqueue.
struct DeviceRun {
  void* x = nullptr;
  void* y = nullptr;
  size_t x_bytes = 0, y_bytes = 0;
  DeviceRun(size_t xb, size_t yb) : x_bytes(xb), y_bytes(yb) {
    auto a = gpu::device_alloc(xb);
    auto b = gpu::device_alloc(yb);
    EXPECT_TRUE(a.is_ok() && b.is_ok());
    x = a.is_ok() ? a.value() : nullptr;
    y = b.is_ok() ? b.value() : nullptr;
  }
  ~DeviceRun() {
    (void)gpu::device_free(x);
    (void)gpu::device_free(y);
  }
};

// Runs x (float32, batch b) through a context with device IO on `stream`; returns float32 logits.
std::vector<float> run_on_device(ExecutionContext& ctx, const std::vector<float>& x, int64_t b, gpu::Stream stream) {
  DeviceRun d(x.size() * 4, static_cast<size_t>(b) * 10 * 4);
  EXPECT_TRUE(ctx.set_input_shape("input", {b, 1, 28, 28}).is_ok());
  EXPECT_TRUE(gpu::copy_to_device_async(d.x, x.data(), d.x_bytes, stream).is_ok());
  EXPECT_TRUE(gpu::memset_async(d.y, 0xFF, d.y_bytes, stream).is_ok());
  EXPECT_TRUE(ctx.set_tensor_address("input", d.x).is_ok());
  EXPECT_TRUE(ctx.set_tensor_address("logits", d.y).is_ok());
  Status s = ctx.enqueue(stream);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  std::vector<float> y(static_cast<size_t>(b) * 10);
  EXPECT_TRUE(gpu::copy_to_host_async(y.data(), d.y, d.y_bytes, stream).is_ok());
  EXPECT_TRUE(gpu::stream_synchronize(stream).is_ok());
  return y;
}

struct PrecisionCase {
  const char* name;
  bool fp16, tf32;
  double tolerance;
};

class CudaMlpPrecision : public ::testing::TestWithParam<PrecisionCase> {};

TEST_P(CudaMlpPrecision, MatchesFloat64ReferenceAcrossTheProfile) {
  REQUIRE_GPU();
  const PrecisionCase p = GetParam();
  BuilderConfig c = cuda_config(1, 256, 8192);
  c.fp16 = p.fp16;
  c.tf32 = p.tf32;
  auto engine = test::must_load(build(c));
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  auto stream = gpu::stream_create();
  ASSERT_TRUE(stream.is_ok());
  uint64_t seed = 11;
  for (int64_t b : {1, 7, 256, 8192, 3}) {
    auto x = test::random_floats(static_cast<size_t>(b * 784), seed++, -2.f, 2.f);
    const double err = rel_l2(run_on_device(**ctx, x, b, *stream), reference(x, b));
    EXPECT_LE(err, p.tolerance) << p.name << " batch " << b;
    // The one-call API (pinned staging) computes the same thing.
    auto out = (*ctx)->infer({{"input", HostTensor::from_floats({b, 1, 28, 28}, x)}});
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    const HostTensor& y = out->at("logits");
    std::vector<float> yv(y.data<float>(), y.data<float>() + y.elements());
    EXPECT_LE(rel_l2(yv, reference(x, b)), p.tolerance) << p.name << " infer() batch " << b;
  }
  (void)gpu::stream_destroy(*stream);
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaMlpPrecision,
                         ::testing::Values(PrecisionCase{"fp32", false, false, 1e-5},
                                           PrecisionCase{"tf32", false, true, 1e-3},
                                           PrecisionCase{"fp16", true, true, 1e-2}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CudaMlp, GemmLayersCarryBiasAndReluAndATimedTactic) {
  REQUIRE_GPU();
  // With mlp_fusion off, each Gemm(+bias+ReLU) is one cuBLASLt layer with its own timed tactic.
  BuilderConfig c = cuda_config(1, 8192, 8192);
  c.disabled_passes.insert("mlp_fusion");
  auto engine = test::must_load(build(c));
  auto j = nlohmann::json::parse(engine->inspect_json());
  EXPECT_EQ(j["device"], "cuda");
  int gemms = 0;
  for (const auto& l : j["layers"]) {
    if (l["view"].get<bool>()) continue;
    const std::string kernel = l["kernel"];
    EXPECT_EQ(kernel.rfind("cuda.", 0), 0u) << kernel;
    if (kernel.find("gemm") == std::string::npos) continue;
    ++gemms;
    EXPECT_TRUE(l["attributes"].contains("kiln_tactic")) << l.dump();
    EXPECT_TRUE(l["attributes"].contains("kiln_tactic_ms")) << l.dump();
    EXPECT_EQ(l["precision"], "tf32");
  }
  EXPECT_EQ(gemms, 3);  // Gemm+bias+ReLU, Gemm+bias+ReLU, Gemm+bias: one layer each
}

TEST(CudaMlp, DenseChainBecomesOneFusedMlpLayer) {
  REQUIRE_GPU();
  // By default the three dense layers are one kiln.FusedMLP: float32 weights run cuda.f32.fused_mlp (per-layer
  // cuBLASLt), float16 weights cuda.f16.fused_mlp, whose tactic (fused kernel or per-layer) is timed.
  for (bool fp16 : {false, true}) {
    BuilderConfig c = cuda_config(1, 8192, 8192);
    c.fp16 = fp16;
    auto engine = test::must_load(build(c));
    auto j = nlohmann::json::parse(engine->inspect_json());
    int fused = 0;
    for (const auto& l : j["layers"]) {
      if (l["op_type"] != "kiln.FusedMLP") continue;
      ++fused;
      EXPECT_EQ(l["kernel"], fp16 ? "cuda.f16.fused_mlp" : "cuda.f32.fused_mlp") << l.dump();
      ASSERT_TRUE(l["attributes"].contains("kiln_tactic")) << l.dump();
      const std::string tactic = l["attributes"]["kiln_tactic"];
      EXPECT_NE(tactic.find(fp16 ? "fused" : "per-layer cuBLASLt"), std::string::npos) << tactic;
      EXPECT_TRUE(l["attributes"].contains("kiln_tactic_ms")) << l.dump();
      // Per-layer: every layer's cuBLASLt algorithms are timed at M=8192 and at M=1 (tactic bands).
      if (tactic.rfind("per-layer", 0) == 0) EXPECT_NE(tactic.find("M=8192, M=1"), std::string::npos) << tactic;
    }
    EXPECT_EQ(fused, 1) << j.dump(1);
  }
}

// Batch 1 of a 1..8192 profile runs a tactic timed at M=1, not the M=8192 one (whose tiles are slow there):
// every Gemm records both bands, and both ends of the profile stay exact in FP32.
TEST(CudaMlp, Fp32DynamicBatchTunesAnM1Band) {
  REQUIRE_GPU();
  BuilderConfig c = cuda_config(1, 8192, 8192);
  c.tf32 = false;
  c.disabled_passes.insert("mlp_fusion");  // one Gemm layer each (the fused layer's bands: DenseChain... test)
  auto engine = test::must_load(build(c));
  auto j = nlohmann::json::parse(engine->inspect_json());
  int gemms = 0;
  for (const auto& l : j["layers"]) {
    if (std::string(l["kernel"]).find("gemm") == std::string::npos) continue;  // Gemm and FusedGemm (+ReLU)
    ++gemms;
    EXPECT_EQ(l["precision"], "fp32");
    const auto& attrs = l["attributes"];
    // [m, 8 algorithm ints] per band, opt first.
    const auto data = attrs["kiln_tactic_data"].get<std::vector<int64_t>>();
    ASSERT_EQ(data.size(), 18u) << l.dump();
    EXPECT_EQ(data[0], 8192);
    EXPECT_EQ(data[9], 1);
    const std::string name = attrs["kiln_tactic"];
    EXPECT_EQ(name.rfind("M=8192: ", 0), 0u) << name;
    EXPECT_NE(name.find("; M=1: "), std::string::npos) << name;
  }
  EXPECT_EQ(gemms, 3);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  uint64_t seed = 21;
  for (int64_t b : {1, 8192, 1}) {
    auto x = test::random_floats(static_cast<size_t>(b * 784), seed++, -2.f, 2.f);
    auto out = (*ctx)->infer({{"input", HostTensor::from_floats({b, 1, 28, 28}, x)}});
    ASSERT_TRUE(out.is_ok()) << out.status().to_string();
    const HostTensor& y = out->at("logits");
    std::vector<float> yv(y.data<float>(), y.data<float>() + y.elements());
    EXPECT_LE(rel_l2(yv, reference(x, b)), 1e-5) << "batch " << b;
  }
}

TEST(CudaMlp, Fp16IoFormatsGiveHalfTensors) {
  REQUIRE_GPU();
  BuilderConfig c = cuda_config(1, 64, 64);
  c.fp16 = true;
  c.input_formats = {DataType::kFloat16};
  c.output_formats = {DataType::kFloat16};
  auto engine = test::must_load(build(c));
  EXPECT_EQ(engine->tensor_dtype("input"), DataType::kFloat16);
  EXPECT_EQ(engine->tensor_dtype("logits"), DataType::kFloat16);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  const int64_t b = 33;
  auto x = test::random_floats(static_cast<size_t>(b * 784), 5, -2.f, 2.f);
  // The reference sees exactly the fp16-rounded input the engine gets.
  HostTensor in;
  in.dtype = DataType::kFloat16;
  in.shape = {b, 1, 28, 28};
  in.bytes.resize(x.size() * 2);
  std::vector<float> rounded(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const uint16_t h = double_to_half(x[i]);
    std::memcpy(in.bytes.data() + 2 * i, &h, 2);
    rounded[i] = static_cast<float>(half_to_double(h));
  }
  auto out = (*ctx)->infer({{"input", in}});
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  const HostTensor& y = out->at("logits");
  ASSERT_EQ(y.dtype, DataType::kFloat16);
  std::vector<float> yv(static_cast<size_t>(y.elements()));
  for (size_t i = 0; i < yv.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, y.bytes.data() + 2 * i, 2);
    yv[i] = static_cast<float>(half_to_double(h));
  }
  EXPECT_LE(rel_l2(yv, reference(rounded, b)), 1e-2);
}

TEST(CudaMlp, CudaGraphReplaysAndRecapturesOnShapeChange) {
  REQUIRE_GPU();
  auto engine = test::must_load(build(cuda_config(1, 64, 512)));
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  (*ctx)->set_cuda_graph(true);
  auto stream = gpu::stream_create();
  ASSERT_TRUE(stream.is_ok());
  uint64_t seed = 100;
  for (int64_t b : {64, 64, 5, 512, 5}) {
    auto x = test::random_floats(static_cast<size_t>(b * 784), seed++, -2.f, 2.f);
    EXPECT_LE(rel_l2(run_on_device(**ctx, x, b, *stream), reference(x, b)), 1e-3) << "batch " << b;
  }
  (void)gpu::stream_destroy(*stream);
}

TEST(CudaMlp, SaveLoadGivesBitIdenticalOutputs) {
  REQUIRE_GPU();
  auto bytes = build(cuda_config(1, 16, 16));
  auto a = test::must_load(bytes);
  auto b = test::must_load(std::vector<uint8_t>(bytes));
  auto x = test::random_floats(16 * 784, 3, -2.f, 2.f);
  auto ca = a->create_execution_context();
  auto cb = b->create_execution_context();
  ASSERT_TRUE(ca.is_ok() && cb.is_ok());
  auto ya = (*ca)->infer({{"input", HostTensor::from_floats({16, 1, 28, 28}, x)}});
  auto yb = (*cb)->infer({{"input", HostTensor::from_floats({16, 1, 28, 28}, x)}});
  ASSERT_TRUE(ya.is_ok() && yb.is_ok());
  EXPECT_EQ(ya->at("logits").bytes, yb->at("logits").bytes);
}

TEST(CudaMlp, TimingCacheIsReusedAcrossBuilds) {
  REQUIRE_GPU();
  const std::string cache = (std::filesystem::temp_directory_path() / "kiln_test_timing.cache").string();
  std::filesystem::remove(cache);
  BuilderConfig c = cuda_config(1, 512, 8192);
  c.timing_cache_file = cache;
  BuildSummary first, second;
  build(c, &first);
  build(c, &second);
  EXPECT_GT(first.tactics_timed, 0);
  EXPECT_EQ(second.tactics_timed, 0);
  EXPECT_EQ(second.timing_cache_hits, 6);  // 3 dense layers (in one kiln.FusedMLP), each with an M=512 and an M=1 band
  // A corrupt cache is re-timed with a warning, not an error.
  std::ofstream(cache) << "not a timing cache";
  BuildSummary third;
  build(c, &third);
  EXPECT_GT(third.tactics_timed, 0);
  std::filesystem::remove(cache);
}

// These run everywhere: without a GPU (CI) they check the errors; with one, the mismatch error.
TEST(CudaErrors, BuildingForCudaWithoutAGpuSaysSo) {
  if (gpu::available()) GTEST_SKIP() << "a GPU is present";
  BuilderConfig c = cuda_config(1, 1, 1);
  auto out = build_engine_from_file(source_path(kMlp), c);
  ASSERT_FALSE(out.is_ok());
  const std::string msg = out.status().to_string();
  EXPECT_NE(msg.find("--device=cuda"), std::string::npos) << msg;
}

TEST(CudaErrors, EngineForAnotherGpuIsAClearError) {
  BuilderConfig c;
  c.profiles["input"] = {{1, 1, 28, 28}, {1, 1, 28, 28}, {1, 1, 28, 28}};
  auto out = build_engine_from_file(source_path(kMlp), c);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  auto m = deserialize_engine(out->engine);
  ASSERT_TRUE(m.is_ok());
  m->device = "cuda";
  m->device_json = R"({"gpu":"NVIDIA Imaginary 9000","cc_major":12,"cc_minor":7,"sm_count":7,"cuda_runtime":99000})";
  auto e = Runtime().deserialize_engine(serialize_engine(*m));
  ASSERT_FALSE(e.is_ok());
  const std::string msg = e.status().to_string();
#ifdef KILN_WITH_CUDA
  EXPECT_NE(msg.find("NVIDIA Imaginary 9000"), std::string::npos) << msg;
  if (gpu::available()) EXPECT_NE(msg.find("but this GPU is"), std::string::npos) << msg;
#else
  EXPECT_NE(msg.find("no CUDA backend"), std::string::npos) << msg;
#endif
}

}  // namespace
}  // namespace kiln
