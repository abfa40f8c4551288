// The course's MLP built with --int8 on the CPU: calibration on Fashion-MNIST training images, accuracy
// on the 10,000 test images against the FP32 engine, cache round trips, layer precisions, errors.
#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "data/idx_reader.h"
#include "../test_util.h"

namespace kiln {
namespace {

using test::source_path;

// KILN_FASHION_MNIST: where the GPU machine (no Debian datasets) has the files gpu-test.sh packs.
const std::string kData = std::getenv("KILN_FASHION_MNIST") ? std::getenv("KILN_FASHION_MNIST")
                                                               : "/usr/share/datasets/fashion-mnist";
const std::string kTrain = kData + "/train-images-idx3-ubyte.gz";

bool have_data() { return std::filesystem::exists(kTrain); }

BuilderConfig int8_config() {
  BuilderConfig c;
  c.profiles["input"] = {{1, 1, 28, 28}, {256, 1, 28, 28}, {1024, 1, 28, 28}};
  c.int8.enabled = true;
  c.int8.calib_data = kTrain;
  c.int8.batches = 4;
  c.int8.batch_size = 256;
  return c;
}

Result<BuildOutput> build(const BuilderConfig& c) { return build_engine_from_file(source_path("models/mlp.onnx"), c); }

// Top-1 over the test set and the predicted classes.
struct Eval {
  double top1 = 0;
  std::vector<int> predicted;
};

Eval evaluate(const std::vector<uint8_t>& engine_bytes) {
  auto images = data::read_idx(kData + "/t10k-images-idx3-ubyte.gz");
  auto labels = data::read_idx(kData + "/t10k-labels-idx1-ubyte.gz");
  EXPECT_TRUE(images.is_ok() && labels.is_ok());
  auto engine = test::must_load(engine_bytes);
  auto ctx = engine->create_execution_context();
  EXPECT_TRUE(ctx.is_ok());
  const int64_t n = images->dims[0], batch = 1000;
  Eval e;
  int correct = 0;
  for (int64_t first = 0; first < n; first += batch) {
    const int64_t b = std::min(batch, n - first);
    std::vector<float> x(static_cast<size_t>(b * 784));
    for (size_t i = 0; i < x.size(); ++i)
      x[i] = static_cast<float>((images->data[first * 784 + i] / 255.0 - 0.2860) / 0.3530);
    auto out = (*ctx)->infer({{"input", HostTensor::from_floats({b, 1, 28, 28}, x)}});
    EXPECT_TRUE(out.is_ok()) << out.status().to_string();
    const float* y = out->at("logits").data<float>();
    for (int64_t i = 0; i < b; ++i) {
      const int cls = static_cast<int>(std::max_element(y + i * 10, y + i * 10 + 10) - (y + i * 10));
      e.predicted.push_back(cls);
      correct += cls == labels->data[first + i];
    }
  }
  e.top1 = 100.0 * correct / n;
  return e;
}

// Percent of images where both engines predict the same class.
double agreement_percent(const Eval& a, const Eval& b) {
  int agree = 0;
  for (size_t i = 0; i < a.predicted.size(); ++i) agree += a.predicted[i] == b.predicted[i];
  return 100.0 * agree / a.predicted.size();
}

TEST(Int8Mlp, AccuracyWithinHalfAPointOfFp32) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  BuilderConfig fp32;
  fp32.profiles = int8_config().profiles;
  auto f = build(fp32);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const Eval ref = evaluate(f->engine);
  // The default (percentile) must meet the aim; every calibrator must stay within half a point.
  for (const char* algo : {"percentile", "minmax", "entropy"}) {
    BuilderConfig c = int8_config();
    c.int8.algorithm = algo;
    auto q = build(c);
    ASSERT_TRUE(q.is_ok()) << q.status().to_string();
    EXPECT_EQ(q->summary.int8_layers, 2) << algo;  // fc1 and fc2; fc3 writes the logits and stays FP32
    const Eval e = evaluate(q->engine);
    const double agreement = agreement_percent(e, ref);
    const bool is_default = std::string(algo) == BuilderConfig().int8.algorithm;
    EXPECT_NEAR(e.top1, ref.top1, is_default ? 0.2 : 1.0) << algo;
    EXPECT_GE(agreement, is_default ? 99.5 : 95.0) << algo;
    std::printf("[ INT8 %-10s ] top-1 %.2f%% (FP32 %.2f%%), argmax agreement %.2f%%\n", algo, e.top1, ref.top1,
                agreement);
  }
}

// The same on the GPU (label gpu): INT8 alone and INT8 with FP16 for the float layers.
TEST(Int8MlpGpu, AccuracyMatchesFp32) {
  REQUIRE_GPU();
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  BuilderConfig fp32;
  fp32.profiles = int8_config().profiles;
  auto f = build(fp32);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  const Eval ref = evaluate(f->engine);
  for (bool fp16 : {false, true}) {
    BuilderConfig c = int8_config();
    c.device = "cuda";
    c.fp16 = fp16;
    auto q = build(c);
    ASSERT_TRUE(q.is_ok()) << q.status().to_string();
    EXPECT_EQ(q->summary.int8_layers, 2);
    const Eval e = evaluate(q->engine);
    const double agreement = agreement_percent(e, ref);
    EXPECT_NEAR(e.top1, ref.top1, 0.2) << "fp16 " << fp16;
    EXPECT_GE(agreement, 99.5) << "fp16 " << fp16;
    std::printf("[ CUDA INT8%s ] top-1 %.2f%% (FP32 CPU %.2f%%), argmax agreement %.2f%%\n", fp16 ? "+FP16" : "",
                e.top1, ref.top1, agreement);
  }
}

TEST(Int8Mlp, EngineShowsInt8LayersAndScales) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  auto q = build(int8_config());
  ASSERT_TRUE(q.is_ok()) << q.status().to_string();
  auto doc = nlohmann::json::parse(test::must_load(q->engine)->inspect_json());
  int qgemm = 0, quantize = 0, chained = 0;
  for (const auto& l : doc["layers"]) {
    if (l["op_type"] == "kiln.QGemm") {
      ++qgemm;
      EXPECT_EQ(l["precision"], "int8");
      EXPECT_GT(l["int8"]["input_scale"].get<double>(), 0);
      chained += l["int8"]["output_scale"].get<double>() > 0;
    }
    quantize += l["op_type"] == "QuantizeLinear";
  }
  EXPECT_EQ(qgemm, 2);
  EXPECT_EQ(quantize, 1);  // the input only: fc1 hands INT8 straight to fc2
  EXPECT_EQ(chained, 1);
}

TEST(Int8Mlp, CacheRoundTripGivesTheSameEngine) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  const std::string cache = ::testing::TempDir() + "/mlp_int8.cache";
  std::filesystem::remove(cache);
  BuilderConfig c = int8_config();
  c.int8.cache_file = cache;
  auto first = build(c);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_TRUE(std::filesystem::exists(cache));
  std::ifstream f(cache);
  std::string header;
  std::getline(f, header);
  EXPECT_EQ(header, "TRT-8601-PercentileCalibration");
  // From the cache: no calibration data needed, identical engine.
  c.int8.calib_data.clear();
  auto second = build(c);
  ASSERT_TRUE(second.is_ok()) << second.status().to_string();
  EXPECT_NE(second->summary.calibration.find("cache"), std::string::npos);
  EXPECT_EQ(first->engine, second->engine);
  // A cache missing a tensor the model needs is an error naming it.
  {
    std::ofstream out(cache);
    out << "TRT-8601-EntropyCalibration2\ninput: 3c010a14\n";
  }
  auto missing = build(c);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().message().find("no INT8 scale"), std::string::npos) << missing.status().to_string();
  // A malformed line is an error naming the line.
  {
    std::ofstream out(cache);
    out << "TRT-8601-EntropyCalibration2\ninput 3c010a14\n";
  }
  auto malformed = build(c);
  ASSERT_FALSE(malformed.is_ok());
  EXPECT_NE(malformed.status().to_string().find("line 2"), std::string::npos) << malformed.status().to_string();
}

TEST(Int8Mlp, LayerPrecisions) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  BuilderConfig c = int8_config();
  auto doc_of = [](const BuildOutput& o) { return nlohmann::json::parse(test::must_load(o.engine)->inspect_json()); };
  c.int8.layer_precisions = {{"*", "int8"}};
  auto all = build(c);
  ASSERT_TRUE(all.is_ok()) << all.status().to_string();
  EXPECT_EQ(all->summary.int8_layers, 3);
  c.int8.layer_precisions = {{"/1/Gemm", "fp32"}};
  auto one = build(c);
  ASSERT_TRUE(one.is_ok()) << one.status().to_string();
  EXPECT_EQ(one->summary.int8_layers, 1);
  const auto doc = doc_of(*one);  // kept alive: the loop below walks into it
  for (const auto& l : doc["layers"])
    if (l["name"] == "/1/Gemm") EXPECT_EQ(l["precision"], "fp32");
  c.int8.layer_precisions = {{"/nope/Gemm", "fp32"}};
  auto bad = build(c);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_NE(bad.status().message().find("/nope/Gemm"), std::string::npos);
  c.int8.layer_precisions = {{"/1/Gemm", "int4"}};
  EXPECT_FALSE(build(c).is_ok());
}

TEST(Int8Mlp, BestTimesEachInt8Layer) {
  if (!have_data()) GTEST_SKIP() << "Fashion-MNIST not installed";
  BuilderConfig c = int8_config();
  c.best = true;
  auto b = build(c);
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  ASSERT_EQ(b->summary.best_choices.size(), 2u);  // /1/Gemm and /3/Gemm, each timed in INT8 and in FP32
  EXPECT_NE(b->summary.best_choices[0].find("/1/Gemm"), std::string::npos);
  EXPECT_NE(b->summary.calibration.find("percentile"), std::string::npos);  // calibrated once, then reused
  const Eval e = evaluate(b->engine);
  EXPECT_GT(e.top1, 87.5);
}

TEST(Int8Mlp, CalibrationDataErrors) {
  BuilderConfig c = int8_config();
  c.int8.calib_data.clear();
  auto none = build(c);
  ASSERT_FALSE(none.is_ok());
  EXPECT_NE(none.status().message().find("--calibData"), std::string::npos) << none.status().to_string();
  // Raw float32 data whose size is no multiple of one 1x28x28 sample.
  const std::string raw = ::testing::TempDir() + "/calib_wrong.bin";
  {
    std::ofstream out(raw, std::ios::binary);
    std::vector<float> v(100, 0.5f);
    out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * 4));
  }
  c.int8.calib_data = raw;
  auto wrong = build(c);
  ASSERT_FALSE(wrong.is_ok());
  EXPECT_NE(wrong.status().to_string().find("calib_wrong.bin"), std::string::npos) << wrong.status().to_string();
  c.int8.calib_data = "/nonexistent/calib.npy";
  auto missing = build(c);
  ASSERT_FALSE(missing.is_ok());
  EXPECT_NE(missing.status().to_string().find("/nonexistent/calib.npy"), std::string::npos);
}

}  // namespace
}  // namespace kiln
