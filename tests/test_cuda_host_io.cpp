// Host memory as IO of CUDA engines. execute() on host addresses: the batch in chunks with overlapped
// copies (pinned and pageable, forced chunk counts, CUDA graphs, mixed host/device, profiling), and the
// batch-split analysis. Low-latency mode (ExecutionContext::set_low_latency): the resident kernel against
// the float64 reference with host memory in and out, several contexts and engines at once, start/stop
// cycles, idling out and coming back, and the clear errors. GPU cases skip without a GPU unless
// KILN_TEST_CUDA=require.
//
// A resident kernel that runs makes device-wide waits (cudaFree, lazy module loading) wait until it idles
// out (KILN_LOW_LATENCY_IDLE_MS, 200 ms by default): to keep the tests quick, every context runs once on
// the normal path before its resident kernel starts, and buffers are freed after the kernels stopped.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <thread>
#include <cstring>
#include <limits>

#include "onnx/importer.h"
#include "runtime/engine_impl.h"
#include "ops/reference_eval.h"
#include "op_harness.h"
#include "test_util.h"

namespace kiln {
namespace {

using test::rel_l2;
using test::source_path;

const char* kMlp = "models/mlp.onnx";

BuilderConfig mlp_config(const std::string& device, int64_t max_batch, bool fp16) {
  BuilderConfig c;
  c.device = device;
  c.fp16 = fp16;
  c.tf32 = false;
  c.profiles["input"] = {{1, 1, 28, 28}, {1, 1, 28, 28}, {max_batch, 1, 28, 28}};
  return c;
}

std::shared_ptr<Engine> build_mlp(const BuilderConfig& c) {
  auto out = build_engine_from_file(source_path(kMlp), c);
  if (!out.is_ok()) throw std::runtime_error("building the MLP: " + out.status().to_string());
  return test::must_load(out->engine);
}

std::vector<double> reference(const std::vector<float>& x, int64_t b) {
  static auto g = import_onnx_file(source_path(kMlp));
  EXPECT_TRUE(g.is_ok()) << g.status().to_string();
  RefTensor in{DataType::kFloat32, {b, 1, 28, 28}, std::vector<double>(x.begin(), x.end())};
  auto out = evaluate_reference(*g, {in});
  EXPECT_TRUE(out.is_ok()) << out.status().to_string();
  return out.is_ok() ? (*out)[0].data : std::vector<double>{};
}

// Host IO buffers for up to max_rows rows: ordinary (pageable) memory or pinned memory.
struct HostIo {
  float* x = nullptr;
  float* y = nullptr;
  std::vector<float> x_vec, y_vec;
  bool pinned = false;
  HostIo(int64_t max_rows, bool pin) : pinned(pin) {
    const size_t xn = static_cast<size_t>(max_rows) * 784, yn = static_cast<size_t>(max_rows) * 10;
    if (pin) {
      auto a = gpu::host_alloc_pinned(xn * 4);
      auto b = gpu::host_alloc_pinned(yn * 4);
      if (!a.is_ok() || !b.is_ok()) throw std::runtime_error("host_alloc_pinned failed");
      x = static_cast<float*>(*a);
      y = static_cast<float*>(*b);
    } else {
      x_vec.resize(xn);
      y_vec.resize(yn);
      x = x_vec.data();
      y = y_vec.data();
    }
  }
  ~HostIo() {
    if (pinned) {
      (void)gpu::host_free_pinned(x);
      (void)gpu::host_free_pinned(y);
    }
  }
  void bind(ExecutionContext& ctx) {
    ASSERT_TRUE(ctx.set_tensor_address("input", x).is_ok());
    ASSERT_TRUE(ctx.set_tensor_address("logits", y).is_ok());
  }
};

// One execute() of b fresh random rows with the output poisoned; returns rel-L2 against float64.
double run_once(ExecutionContext& ctx, HostIo& io, int64_t b, uint64_t seed) {
  auto x = test::random_floats(static_cast<size_t>(b) * 784, seed, -2.f, 2.f);
  std::memcpy(io.x, x.data(), x.size() * 4);
  for (int64_t i = 0; i < b * 10; ++i) io.y[i] = std::numeric_limits<float>::quiet_NaN();
  Status s = ctx.set_input_shape("input", {b, 1, 28, 28});
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  s = ctx.execute();
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  if (!s.is_ok()) return INFINITY;
  return rel_l2(std::vector<float>(io.y, io.y + b * 10), reference(x, b));
}

struct Precision {
  const char* name;
  bool fp16;
  double tolerance;
};

class CudaLowLatency : public ::testing::TestWithParam<Precision> {};

// The resident kernel's layouts (KILN_LOW_LATENCY_CTAS, KILN_LOW_LATENCY_INPUT) and its trace
// (KILN_LOW_LATENCY_TRACE), each set while the mode starts.
struct ResidentLayout {
  const char* ctas;
  const char* input;
  const char* trace = "1";
  std::string describe() const {
    return std::string(ctas) + " CTAs, input read by " + input + ", trace " + (trace[0] == '1' ? "on" : "off");
  }
};
constexpr ResidentLayout kResidentLayouts[] = {{"8", "cta0"}, {"8", "spread"}, {"16", "cta0"}, {"16", "spread"},
                                               {"8", "cta0", "0"}};

struct ScopedResidentLayout {
  explicit ScopedResidentLayout(const ResidentLayout& layout)
      : ctas("KILN_LOW_LATENCY_CTAS", layout.ctas), input("KILN_LOW_LATENCY_INPUT", layout.input),
        trace("KILN_LOW_LATENCY_TRACE", layout.trace) {}
  test::ScopedEnv ctas, input, trace;
};

TEST_P(CudaLowLatency, MatchesFloat64ReferenceWithHostMemory) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  auto engine = build_mlp(mlp_config("cuda", 8, p.fp16));
  HostIo pageable(8, false), pinned(8, true);  // before the context: freed after its resident kernel stopped
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  pageable.bind(c);
  EXPECT_LE(run_once(c, pageable, 8, 1), p.tolerance) << "normal path before low-latency mode";

  Status s = c.set_low_latency(true, 8);
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  ASSERT_TRUE(c.low_latency());
  EXPECT_EQ(c.tensor_location("input"), MemoryLocation::kPageableHost);
  uint64_t seed = 100;
  for (HostIo* io : {&pageable, &pinned}) {
    io->bind(c);
    for (int i = 0; i < 200; ++i) {
      const int64_t b = i % 5 == 4 ? 1 + (i / 5) % 8 : 1;  // mostly batch 1, every fifth run 1..8 rows
      const double err = run_once(c, *io, b, seed++);
      ASSERT_LE(err, p.tolerance) << p.name << (io->pinned ? " pinned" : " pageable") << " run " << i << " batch " << b;
    }
  }
  // Start, stop, start again (and again with other max_rows) keeps answering right.
  for (int cycle = 0; cycle < 3; ++cycle) {
    ASSERT_TRUE(c.set_low_latency(false).is_ok());
    s = c.set_low_latency(true, cycle == 1 ? 2 : 8);
    ASSERT_TRUE(s.is_ok()) << "cycle " << cycle << ": " << s.to_string();
    for (int64_t b : {1, 2, 1})
      EXPECT_LE(run_once(c, pinned, b, seed++), p.tolerance) << "cycle " << cycle << " batch " << b;
  }
  // More rows than it was started for: kOutOfRange, and the mode keeps working afterwards.
  ASSERT_TRUE(c.set_low_latency(true, 2).is_ok());
  ASSERT_TRUE(c.set_input_shape("input", {3, 1, 28, 28}).is_ok());
  s = c.execute();
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange) << s.to_string();
  EXPECT_LE(run_once(c, pinned, 2, seed++), p.tolerance);
  // Off: the normal path serves the same host buffers.
  ASSERT_TRUE(c.set_low_latency(false).is_ok());
  EXPECT_FALSE(c.low_latency());
  EXPECT_LE(run_once(c, pinned, 5, seed++), p.tolerance) << "normal path after low-latency mode";
}

// The resident kernel ends by itself after idling (so that a device-wide wait such as cudaFree is delayed,
// never stuck) and the next request launches it again.
TEST_P(CudaLowLatency, IdleKernelEndsAndTheNextRequestBringsItBack) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  auto engine = build_mlp(mlp_config("cuda", 8, p.fp16));
  HostIo pinned(8, true);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  pinned.bind(c);
  EXPECT_LE(run_once(c, pinned, 1, 7), p.tolerance) << "normal path first";
  setenv("KILN_LOW_LATENCY_IDLE_MS", "20", 1);
  Status s = c.set_low_latency(true, 4);
  unsetenv("KILN_LOW_LATENCY_IDLE_MS");
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  uint64_t seed = 500;
  for (int round = 0; round < 4; ++round) {
    for (int64_t b : {1, 4, 1}) EXPECT_LE(run_once(c, pinned, b, seed++), p.tolerance) << "round " << round;
    // A device-wide wait (cudaFree) while the mode is on returns once the kernel has idled out.
    const auto t0 = std::chrono::steady_clock::now();
    auto d = gpu::device_alloc(1 << 20);
    ASSERT_TRUE(d.is_ok()) << d.status().to_string();
    ASSERT_TRUE(gpu::device_free(*d).is_ok());
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2)) << "cudaFree waited too long";
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 2 ? 60 : 5));
  }
}

// The resident kernel's row limit (16) fits the course MLP in FP32 and FP16, in every resident layout.
TEST_P(CudaLowLatency, SixteenRowsFit) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  auto engine = build_mlp(mlp_config("cuda", 16, p.fp16));
  HostIo pinned(16, true);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  pinned.bind(c);
  EXPECT_LE(run_once(c, pinned, 16, 70), p.tolerance) << "normal path first";
  for (const ResidentLayout& layout : kResidentLayouts) {
    const ScopedResidentLayout scoped(layout);
    Status s = c.set_low_latency(true, 16);
    ASSERT_TRUE(s.is_ok()) << layout.describe() << ": " << s.to_string();
    for (int64_t b : {16, 1, 9, 16})
      EXPECT_LE(run_once(c, pinned, b, 80 + static_cast<uint64_t>(b)), p.tolerance) << layout.describe() << ", batch " << b;
    // Back-to-back requests, each with fresh input: a share read before the host's write would show here.
    for (int i = 0; i < 60; ++i)
      ASSERT_LE(run_once(c, pinned, i % 3 == 2 ? 16 : 1, 1000 + static_cast<uint64_t>(i)), p.tolerance)
          << layout.describe() << ", request " << i;
    ASSERT_TRUE(c.set_low_latency(false).is_ok());
  }
}

// ---- execute() on host memory: chunks, lanes, staging ------------------------------------------------
// Host buffers for `rows` rows of the MLP, pinned or pageable (HostIo above, larger).
TEST_P(CudaLowLatency, HostMemoryExecuteMatchesFloat64AtEveryChunking) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  auto engine = build_mlp(mlp_config("cuda", 8192, p.fp16));
  EXPECT_EQ(engine->impl().batch_split_blocker, "") << "the MLP's rows are independent";
  HostIo pageable(8192, false), pinned(8192, true);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  uint64_t seed = 900;
  for (bool graph : {false, true}) {
    c.set_cuda_graph(graph);
    for (HostIo* io : {&pageable, &pinned}) {
      io->bind(c);
      EXPECT_EQ(c.tensor_location("input"), io->pinned ? MemoryLocation::kPinnedHost : MemoryLocation::kPageableHost);
      for (const char* chunks : {"", "3", "16"}) {  // "" = the automatic plan
        if (*chunks) setenv("KILN_HOST_IO_CHUNKS", chunks, 1);
        for (int64_t b : {8192, 1, 1000, 4097, 8192}) {
          const double err = run_once(c, *io, b, seed++);
          EXPECT_LE(err, p.tolerance) << p.name << (graph ? " graph" : "") << (io->pinned ? " pinned" : " pageable")
                                      << " chunks '" << chunks << "' batch " << b;
        }
        unsetenv("KILN_HOST_IO_CHUNKS");
      }
    }
  }
  // Staging threads: one (the caller alone) and several.
  pageable.bind(c);
  for (int threads : {1, 6}) {
    c.set_num_threads(threads);
    EXPECT_LE(run_once(c, pageable, 8192, seed++), p.tolerance) << "threads " << threads;
  }
  // Profiling on host memory: one chunk, layer by layer, with times.
  c.set_profiling(true);
  EXPECT_LE(run_once(c, pageable, 300, seed++), p.tolerance) << "profiling";
  EXPECT_FALSE(c.last_layer_timings().empty());
  c.set_profiling(false);
}

TEST(CudaHostIo, MixedHostInputAndDeviceOutputAndEnqueueRefusesHostMemory) {
  REQUIRE_GPU();
  auto engine = build_mlp(mlp_config("cuda", 64, false));
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  ExecutionContext& c = **ctx;
  HostIo io(64, false);
  auto y_dev = gpu::device_alloc(64 * 10 * 4);
  ASSERT_TRUE(y_dev.is_ok());
  ASSERT_TRUE(c.set_tensor_address("input", io.x).is_ok());
  ASSERT_TRUE(c.set_tensor_address("logits", *y_dev).is_ok());
  EXPECT_EQ(c.tensor_location("logits"), MemoryLocation::kDevice);
  auto x = test::random_floats(64 * 784, 31, -2.f, 2.f);
  std::memcpy(io.x, x.data(), x.size() * 4);
  ASSERT_TRUE(c.set_input_shape("input", {64, 1, 28, 28}).is_ok());
  auto stream = gpu::stream_create();
  ASSERT_TRUE(stream.is_ok());
  ASSERT_TRUE(gpu::memset_async(*y_dev, 0xFF, 64 * 10 * 4, *stream).is_ok());
  ASSERT_TRUE(gpu::stream_synchronize(*stream).is_ok());
  Status s = c.execute();
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  std::vector<float> y(64 * 10);
  ASSERT_TRUE(gpu::copy_to_host_async(y.data(), *y_dev, y.size() * 4, *stream).is_ok());
  ASSERT_TRUE(gpu::stream_synchronize(*stream).is_ok());
  EXPECT_LE(rel_l2(y, reference(x, 64)), 1e-5);
  s = c.enqueue(*stream);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("'input'"), std::string::npos) << s.to_string();
  (void)gpu::stream_destroy(*stream);
  (void)gpu::device_free(*y_dev);
}

// An FP16 engine's float32 input, which its fused MLP rounds to float16 first, is converted by the staging
// threads (pinned with >= 4 threads, pageable always) and the outputs are the same bits as with the
// conversion off (KILN_HOST_IO_CAST=0); an FP32 engine's input never is; a bad setting is refused by name.
TEST(CudaHostIo, Fp16InputConvertedOnTheHostGivesTheSameBits) {
  REQUIRE_GPU();
  auto fp16 = build_mlp(mlp_config("cuda", 8192, true));
  auto fp32 = build_mlp(mlp_config("cuda", 8192, false));
  EXPECT_EQ(fp16->impl().input_host_form.at(0).dtype, DataType::kFloat16);
  EXPECT_FALSE(fp32->impl().input_host_form.at(0));
  EXPECT_NE(fp16->inspect_json().find("\"host_io_as\":\"float16\""), std::string::npos) << "kiln inspect shows it";
  EXPECT_EQ(fp32->inspect_json().find("host_io_as"), std::string::npos);
  HostIo pageable(8192, false), pinned(8192, true);
  auto ctx = fp16->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  uint64_t seed = 4000;
  for (bool graph : {false, true}) {
    c.set_cuda_graph(graph);
    for (HostIo* io : {&pageable, &pinned}) {
      io->bind(c);
      for (int threads : {2, 6}) {
        c.set_num_threads(threads);
        for (int64_t b : {8192, 333, 4097}) {
          const std::string what = std::string(graph ? "graph " : "") + (io->pinned ? "pinned" : "pageable") +
                                   ", threads " + std::to_string(threads) + ", batch " + std::to_string(b);
          std::vector<float> off;
          {
            test::ScopedEnv cast("KILN_HOST_IO_CAST", "0");
            EXPECT_LE(run_once(c, *io, b, seed), 1e-2) << what << ", conversion off";
            EXPECT_EQ(c.last_host_io_f16_inputs(), 0) << what;
            off.assign(io->y, io->y + b * 10);
          }
          EXPECT_LE(run_once(c, *io, b, seed++), 1e-2) << what;
          // >= 1 MiB of input; pinned input needs >= 4 threads
          const int want = b * 784 * 4 >= (1 << 20) && (!io->pinned || threads >= 4) ? 1 : 0;
          EXPECT_EQ(c.last_host_io_f16_inputs(), want) << what;
          EXPECT_EQ(std::memcmp(off.data(), io->y, off.size() * 4), 0) << what << ": outputs differ";
        }
      }
    }
  }
  {  // the FP32 engine: never converted
    auto ctx32 = fp32->create_execution_context();
    ASSERT_TRUE(ctx32.is_ok());
    pinned.bind(**ctx32);
    EXPECT_LE(run_once(**ctx32, pinned, 8192, seed++), 1e-5);
    EXPECT_EQ((*ctx32)->last_host_io_f16_inputs(), 0);
  }
  test::ScopedEnv bad("KILN_HOST_IO_CAST", "yes");
  pinned.bind(c);
  ASSERT_TRUE(c.set_input_shape("input", {8192, 1, 28, 28}).is_ok());
  Status s = c.execute();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("KILN_HOST_IO_CAST"), std::string::npos) << s.to_string();
}

// Beyond the MLP: an FP16 engine of other layers starts with a Cast float32 -> float16 of its input (the
// precision pass), which rounds like the host's conversion, so host IO sends that input as float16 too: the
// same bits as with the conversion off, pinned and pageable.
TEST(CudaHostIo, Fp16EngineInputCastIsDoneOnTheHost) {
  REQUIRE_GPU();
  constexpr int64_t kFeatures = 1024, kOut = 32, kMaxBatch = 512;  // 2 MiB of float32 input at 512 rows
  test::OnnxModel m;
  m.input("x", {-1, kFeatures});
  m.output("y", {-1, kOut});
  m.initializer("shift", {kFeatures}, test::random_floats(kFeatures, 7, -0.5f, 0.5f));
  m.initializer("w", {kFeatures, kOut}, test::random_floats(kFeatures * kOut, 8, -0.05f, 0.05f));
  m.node("Add", {"x", "shift"}, {"a"});
  m.node("MatMul", {"a", "w"}, {"z"});
  m.node("Softmax", {"z"}, {"y"});
  BuilderConfig cfg;
  cfg.device = "cuda";
  cfg.fp16 = true;
  cfg.profiles["x"] = {{1, kFeatures}, {kMaxBatch, kFeatures}, {kMaxBatch, kFeatures}};
  auto built = build_engine_from_bytes(m.bytes(), "", cfg);
  ASSERT_TRUE(built.is_ok()) << built.status().to_string();
  auto engine = test::must_load(built->engine);
  EXPECT_EQ(engine->impl().input_host_form.at(0).dtype, DataType::kFloat16) << engine->inspect_json();
  auto graph = import_onnx_bytes(m.bytes(), "");
  ASSERT_TRUE(graph.is_ok()) << graph.status().to_string();

  const size_t xn = kMaxBatch * kFeatures, yn = kMaxBatch * kOut;
  std::vector<float> x_vec(xn), y_vec(yn);
  auto xp = gpu::host_alloc_pinned(xn * 4), yp = gpu::host_alloc_pinned(yn * 4);
  ASSERT_TRUE(xp.is_ok() && yp.is_ok());
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  c.set_num_threads(6);
  uint64_t seed = 6000;
  for (bool pinned : {false, true}) {
    float* x = pinned ? static_cast<float*>(*xp) : x_vec.data();
    float* y = pinned ? static_cast<float*>(*yp) : y_vec.data();
    ASSERT_TRUE(c.set_tensor_address("x", x).is_ok());
    ASSERT_TRUE(c.set_tensor_address("y", y).is_ok());
    for (int64_t b : {kMaxBatch, int64_t{300}, int64_t{7}}) {
      const std::string what = std::string(pinned ? "pinned" : "pageable") + ", batch " + std::to_string(b);
      auto input = test::random_floats(static_cast<size_t>(b * kFeatures), seed++, -2.f, 2.f);
      std::memcpy(x, input.data(), input.size() * 4);
      ASSERT_TRUE(c.set_input_shape("x", {b, kFeatures}).is_ok());
      std::vector<float> off;
      for (const char* cast : {"0", "1"}) {
        test::ScopedEnv env("KILN_HOST_IO_CAST", cast);
        std::fill(y, y + b * kOut, std::numeric_limits<float>::quiet_NaN());
        Status s = c.execute();
        ASSERT_TRUE(s.is_ok()) << what << ": " << s.to_string();
        const int want = cast[0] == '1' && b * kFeatures * 4 >= (1 << 20) ? 1 : 0;
        EXPECT_EQ(c.last_host_io_f16_inputs(), want) << what << ", KILN_HOST_IO_CAST=" << cast;
        if (off.empty()) {
          off.assign(y, y + b * kOut);
          continue;
        }
        EXPECT_EQ(std::memcmp(off.data(), y, off.size() * 4), 0) << what << ": outputs differ";
      }
      RefTensor in{DataType::kFloat32, {b, kFeatures}, std::vector<double>(input.begin(), input.end())};
      auto ref = evaluate_reference(*graph, {in});
      ASSERT_TRUE(ref.is_ok()) << ref.status().to_string();
      EXPECT_LE(rel_l2(std::vector<float>(y, y + b * kOut), (*ref)[0].data), 1e-2) << what;
    }
  }
  (void)gpu::host_free_pinned(*xp);
  (void)gpu::host_free_pinned(*yp);
}

// An INT8 engine's input, which its first layer quantizes with the calibrated scale, is quantized by the
// staging threads by default (a quarter of the bytes cross PCIe): the same bits as with the conversion off,
// pinned and pageable, with and without a CUDA graph; kiln inspect shows the form and its scale;
// KILN_HOST_IO_QUANTIZE=0 leaves it to the GPU.
TEST(CudaHostIo, Int8InputQuantizedOnTheHostGivesTheSameBits) {
  REQUIRE_GPU();
  BuilderConfig cfg = mlp_config("cuda", 8192, false);
  cfg.int8.enabled = true;
  cfg.int8.cache_file = source_path("bench/mlp_int8.cache");
  auto engine = build_mlp(cfg);
  const HostInputForm form = engine->impl().input_host_form.at(0);
  EXPECT_EQ(form.dtype, DataType::kInt8) << engine->inspect_json();
  EXPECT_GT(form.scale, 0.f);
  EXPECT_NE(engine->inspect_json().find("\"host_io_as\":\"int8\""), std::string::npos) << "kiln inspect shows it";
  HostIo pageable(8192, false), pinned(8192, true);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  c.set_num_threads(6);
  // The same chunks with the conversion on and off: the chunk plan follows the conversion, and the engine's
  // last layer (FP32 cuBLASLt) picks its algorithm by the chunk's rows, so different chunks sum in another
  // order (GPU run 32: outputs differed with the plans left free, both within tolerance).
  test::ScopedEnv chunks("KILN_HOST_IO_CHUNKS", "8");
  uint64_t seed = 7000;
  for (bool graph : {false, true}) {
    c.set_cuda_graph(graph);
    for (HostIo* io : {&pageable, &pinned}) {
      io->bind(c);
      for (int64_t b : {8192, 4097, 333}) {
        const std::string what = std::string(graph ? "graph " : "") + (io->pinned ? "pinned" : "pageable") +
                                 ", batch " + std::to_string(b);
        std::vector<float> off;
        {
          test::ScopedEnv cast("KILN_HOST_IO_CAST", "0");
          EXPECT_LE(run_once(c, *io, b, seed), 0.1) << what << ", conversion off";
          EXPECT_EQ(c.last_host_io_f16_inputs(), 0) << what;
          off.assign(io->y, io->y + b * 10);
        }
        EXPECT_LE(run_once(c, *io, b, seed++), 0.1) << what;
        EXPECT_EQ(c.last_host_io_f16_inputs(), b * 784 * 4 >= (1 << 20) ? 1 : 0) << what;
        EXPECT_EQ(std::memcmp(off.data(), io->y, off.size() * 4), 0) << what << ": outputs differ";
      }
    }
  }
  {  // KILN_HOST_IO_QUANTIZE=0: nothing is quantized on the host
    test::ScopedEnv off("KILN_HOST_IO_QUANTIZE", "0");
    pinned.bind(c);
    EXPECT_LE(run_once(c, pinned, 8192, seed++), 0.1);
    EXPECT_EQ(c.last_host_io_f16_inputs(), 0);
  }
}

// Pageable float32 input staged with streaming stores (KILN_HOST_IO_STAGING_COPY=stream): the same bits as
// with memcpy; a bad setting is refused by name.
TEST(CudaHostIo, StreamingStagingCopyGivesTheSameBits) {
  REQUIRE_GPU();
  auto engine = build_mlp(mlp_config("cuda", 8192, false));
  HostIo pageable(8192, false);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  pageable.bind(c);
  uint64_t seed = 5000;
  for (int64_t b : {8192, 4097, 100}) {
    std::vector<float> plain;
    {
      test::ScopedEnv copy("KILN_HOST_IO_STAGING_COPY", "memcpy");
      EXPECT_LE(run_once(c, pageable, b, seed), 1e-5) << "batch " << b;
      plain.assign(pageable.y, pageable.y + b * 10);
    }
    test::ScopedEnv copy("KILN_HOST_IO_STAGING_COPY", "stream");
    EXPECT_LE(run_once(c, pageable, b, seed++), 1e-5) << "batch " << b;
    EXPECT_EQ(std::memcmp(plain.data(), pageable.y, plain.size() * 4), 0) << "batch " << b << ": outputs differ";
  }
  test::ScopedEnv bad("KILN_HOST_IO_STAGING_COPY", "fast");
  ASSERT_TRUE(c.set_input_shape("input", {8192, 1, 28, 28}).is_ok());
  Status s = c.execute();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("KILN_HOST_IO_STAGING_COPY"), std::string::npos) << s.to_string();
}

INSTANTIATE_TEST_SUITE_P(Precisions, CudaLowLatency,
                         ::testing::Values(Precision{"fp32", false, 1e-5}, Precision{"fp16", true, 1e-2}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(CudaLowLatencyMany, TwoContextsOfOneEngineAndASecondEngineAtOnce) {
  REQUIRE_GPU();
  auto fp32 = build_mlp(mlp_config("cuda", 4, false));
  auto fp16 = build_mlp(mlp_config("cuda", 4, true));
  std::vector<std::unique_ptr<HostIo>> io;  // before the contexts: freed after their resident kernels stopped
  for (int i = 0; i < 3; ++i) io.push_back(std::make_unique<HostIo>(4, i == 1));
  auto a = fp32->create_execution_context();
  auto b = fp32->create_execution_context();
  auto h = fp16->create_execution_context();
  ASSERT_TRUE(a.is_ok() && b.is_ok() && h.is_ok());
  std::vector<ExecutionContext*> ctxs = {a->get(), b->get(), h->get()};
  const double tol[] = {1e-5, 1e-5, 1e-2};
  for (size_t i = 0; i < ctxs.size(); ++i) {
    io[i]->bind(*ctxs[i]);
    EXPECT_LE(run_once(*ctxs[i], *io[i], 4, 10 + i), tol[i]) << "normal path, context " << i;
  }
  for (size_t i = 0; i < ctxs.size(); ++i) {
    Status s = ctxs[i]->set_low_latency(true, 4);
    ASSERT_TRUE(s.is_ok()) << "context " << i << ": " << s.to_string();
  }
  uint64_t seed = 500;
  for (int round = 0; round < 50; ++round)
    for (size_t i = 0; i < ctxs.size(); ++i) {
      const int64_t rows = 1 + (round + static_cast<int>(i)) % 4;
      ASSERT_LE(run_once(*ctxs[i], *io[i], rows, seed++), tol[i]) << "context " << i << " round " << round;
    }
  // Stopping one leaves the others answering.
  ASSERT_TRUE(ctxs[0]->set_low_latency(false).is_ok());
  for (size_t i = 1; i < ctxs.size(); ++i) EXPECT_LE(run_once(*ctxs[i], *io[i], 1, seed++), tol[i]) << "context " << i;
  for (ExecutionContext* c : ctxs) ASSERT_TRUE(c->set_low_latency(false).is_ok());
}

// A synchronous copy (gpu::copy_to_device_async or copy_to_host_async) on a stream of its own: the resident
// kernel keeps running on its stream.
Status copy_and_wait(Status (*copy)(void*, const void*, size_t, gpu::Stream), void* dst, const void* src,
                     size_t bytes) {
  auto st = gpu::stream_create();
  if (!st.is_ok()) return st.status();
  Status s = copy(dst, src, bytes, *st);
  if (s.is_ok()) s = gpu::stream_synchronize(*st);
  (void)gpu::stream_destroy(*st);
  return s;
}

TEST_P(CudaLowLatency, DeviceMemoryInAndOut) {
  // Device-resident IO: the kernel reads the input from device memory and writes the output there; also
  // device in / host out and host in / device out. Outputs poisoned (NaN) in device memory before each run.
  // Every resident layout (cluster size, who reads the input).
  REQUIRE_GPU();
  const Precision p = GetParam();
  auto engine = build_mlp(mlp_config("cuda", 16, p.fp16));
  HostIo host(16, true);
  auto dx = gpu::device_alloc(16 * 784 * 4), dy = gpu::device_alloc(16 * 10 * 4);
  ASSERT_TRUE(dx.is_ok() && dy.is_ok());
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok()) << ctx.status().to_string();
  ExecutionContext& c = **ctx;
  host.bind(c);
  EXPECT_LE(run_once(c, host, 4, 1), p.tolerance) << "normal path before low-latency mode";
  const std::vector<float> nan(16 * 10, std::numeric_limits<float>::quiet_NaN());
  uint64_t seed = 900;
  for (const ResidentLayout& layout : kResidentLayouts) {
    const std::string ctas = layout.describe();
    {
      const ScopedResidentLayout scoped(layout);
      Status s = c.set_low_latency(true, 16);
      ASSERT_TRUE(s.is_ok()) << ctas << ": " << s.to_string();
    }
    for (int mode = 0; mode < 3; ++mode) {  // 0: device in+out, 1: device in, host out, 2: host in, device out
      const bool in_dev = mode != 2, out_dev = mode != 1;
      ASSERT_TRUE(c.set_tensor_address("input", in_dev ? *dx : static_cast<void*>(host.x)).is_ok());
      ASSERT_TRUE(c.set_tensor_address("logits", out_dev ? *dy : static_cast<void*>(host.y)).is_ok());
      EXPECT_EQ(c.tensor_location("input"), in_dev ? MemoryLocation::kDevice : MemoryLocation::kPinnedHost);
      for (int64_t b : {int64_t{1}, int64_t{3}, int64_t{16}, int64_t{1}}) {
        auto x = test::random_floats(static_cast<size_t>(b) * 784, seed++, -2.f, 2.f);
        if (in_dev) ASSERT_TRUE(copy_and_wait(gpu::copy_to_device_async, *dx, x.data(), x.size() * 4).is_ok());
        else std::memcpy(host.x, x.data(), x.size() * 4);
        if (out_dev) ASSERT_TRUE(copy_and_wait(gpu::copy_to_device_async, *dy, nan.data(), nan.size() * 4).is_ok());
        else std::memcpy(host.y, nan.data(), nan.size() * 4);
        ASSERT_TRUE(c.set_input_shape("input", {b, 1, 28, 28}).is_ok());
        Status s = c.execute();
        ASSERT_TRUE(s.is_ok()) << ctas << ", mode " << mode << " batch " << b << ": " << s.to_string();
        std::vector<float> y(static_cast<size_t>(b) * 10);
        if (out_dev) ASSERT_TRUE(copy_and_wait(gpu::copy_to_host_async, y.data(), *dy, y.size() * 4).is_ok());
        else std::memcpy(y.data(), host.y, y.size() * 4);
        EXPECT_LE(rel_l2(y, reference(x, b)), p.tolerance) << p.name << ", " << ctas << ", mode " << mode << " batch " << b;
      }
    }
    ASSERT_TRUE(c.set_low_latency(false).is_ok());
  }
  (void)gpu::device_free(*dx);
  (void)gpu::device_free(*dy);
}

TEST(CudaLowLatencyErrors, NonMlpGraphIsUnsupportedNamingTheLayer) {
  REQUIRE_GPU();
  test::OnnxModel m;
  m.input("x", {-1, 16});
  m.output("y", {-1, 8});
  m.initializer("w", {16, 8}, test::random_floats(128, 1));
  m.node("Gemm", {"x", "w"}, {"g"}, "fc");
  m.node("Softmax", {"g"}, {"y"}, "probs");
  BuilderConfig c;
  c.device = "cuda";
  c.profiles["x"] = {{1, 16}, {1, 16}, {4, 16}};
  auto out = build_engine_from_bytes(m.bytes(), "", c);
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  auto engine = test::must_load(out->engine);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  Status s = (*ctx)->set_low_latency(true, 1);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.to_string();
  EXPECT_NE(s.to_string().find("probs"), std::string::npos) << s.to_string();
  EXPECT_FALSE((*ctx)->low_latency());
}

TEST(CudaLowLatencyErrors, Int8EngineIsUnsupported) {
  REQUIRE_GPU();
  BuilderConfig c = mlp_config("cuda", 16, false);
  c.int8.enabled = true;
  c.int8.batches = 2;
  c.int8.batch_size = 16;
  c.int8.layer_precisions = {{"*", "int8"}};
  int batches = 0;
  c.int8.next_batch = [&](std::map<std::string, HostTensor>* batch) -> Result<bool> {
    if (batches++ == 2) return false;
    (*batch)["input"] = HostTensor::from_floats({16, 1, 28, 28}, test::random_floats(16 * 784, 9, -2.f, 2.f));
    return true;
  };
  auto engine = build_mlp(c);
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  Status s = (*ctx)->set_low_latency(true, 1);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.to_string();
  EXPECT_NE(s.to_string().find("is not a dense layer"), std::string::npos) << s.to_string();
}

// Runs everywhere.
// A resident layout the kernel does not have is refused by name, and the mode stays off.
TEST(CudaLowLatencyErrors, UnknownResidentLayoutIsRefused) {
  REQUIRE_GPU();
  auto engine = build_mlp(mlp_config("cuda", 2, false));
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  {
    test::ScopedEnv cluster("KILN_LOW_LATENCY_CTAS", "12");
    Status s = (*ctx)->set_low_latency(true, 1);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.to_string().find("KILN_LOW_LATENCY_CTAS=12"), std::string::npos) << s.to_string();
    EXPECT_FALSE((*ctx)->low_latency());
  }
  {
    test::ScopedEnv input("KILN_LOW_LATENCY_INPUT", "everyone");
    Status s = (*ctx)->set_low_latency(true, 1);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
    EXPECT_NE(s.to_string().find("KILN_LOW_LATENCY_INPUT='everyone'"), std::string::npos) << s.to_string();
    EXPECT_FALSE((*ctx)->low_latency());
  }
  test::ScopedEnv trace("KILN_LOW_LATENCY_TRACE", "yes");
  Status s = (*ctx)->set_low_latency(true, 1);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.to_string().find("KILN_LOW_LATENCY_TRACE='yes'"), std::string::npos) << s.to_string();
  EXPECT_FALSE((*ctx)->low_latency());
}

TEST(CudaLowLatencyErrors, CpuEngineSaysItIsForCuda) {
  auto engine = build_mlp(mlp_config("cpu", 2, false));
  auto ctx = engine->create_execution_context();
  ASSERT_TRUE(ctx.is_ok());
  Status s = (*ctx)->set_low_latency(true, 1);
  EXPECT_EQ(s.code(), StatusCode::kUnsupported) << s.to_string();
  EXPECT_NE(s.to_string().find("CUDA"), std::string::npos) << s.to_string();
  EXPECT_FALSE((*ctx)->low_latency());
}

}  // namespace
}  // namespace kiln
