// Batch-1 latency of the course MLP with FP32 host memory in and out, on the GPU (issue 8 point 2):
//   low_latency   execute() through the resident kernel (set_low_latency)
//   cuda_graph    execute() with pinned host IO and a CUDA graph (H2D + layers + D2H + stream sync)
//   low_latency_device / cuda_graph_device   the same two with input and output in device memory
//   ping_floor    a trivial resident kernel answering a mapped-memory ping (no compute)
//   empty_graph   an empty CUDA graph launch + stream synchronize
// Usage: bench_low_latency [--model=models/mlp.onnx] [--iterations=20000] [--json=path]
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kiln/gpu.h"
#include "kiln/kiln.h"

cudaError_t launch_ping_kernel(uint32_t* request_dev, uint32_t* done_dev, cudaStream_t stream);
double cluster_sync_ns(int threads, bool dsmem_stores, int iterations);
double mapped_read_ns(int iterations);
double mapped_read3_ns(int stride, int iterations);

namespace {

using Clock = std::chrono::steady_clock;

struct Stats {
  std::string name;
  double p50 = 0, p99 = 0, mean = 0, min = 0;
  size_t samples = 0;
};

Stats measure(const std::string& name, int iterations, const std::function<bool()>& once) {
  for (int i = 0; i < std::min(iterations / 10, 1000); ++i)
    if (!once()) return {name + " (failed)"};
  std::vector<double> us;
  us.reserve(static_cast<size_t>(iterations));
  for (int i = 0; i < iterations; ++i) {
    const auto t0 = Clock::now();
    if (!once()) return {name + " (failed)"};
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  std::sort(us.begin(), us.end());
  Stats s{name};
  s.samples = us.size();
  s.p50 = us[us.size() / 2];
  s.p99 = us[std::min(us.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(us.size())))];
  s.min = us.front();
  double sum = 0;
  for (double v : us) sum += v;
  s.mean = sum / static_cast<double>(us.size());
  std::printf("%-14s p50 %8.2f us   p99 %8.2f us   mean %8.2f us   min %8.2f us   (%zu runs)\n", s.name.c_str(), s.p50,
              s.p99, s.mean, s.min, s.samples);
  return s;
}

bool ok(const kiln::Status& s, const char* what) {
  if (!s.is_ok()) std::fprintf(stderr, "%s: %s\n", what, s.to_string().c_str());
  return s.is_ok();
}

bool cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
  return e == cudaSuccess;
}

}  // namespace

int main(int argc, char** argv) {
  std::string model = KILN_BENCH_DEFAULT_MODEL, json_path;
  int iterations = 20000;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--model=", 0) == 0) model = a.substr(8);
    else if (a.rfind("--iterations=", 0) == 0) iterations = std::stoi(a.substr(13));
    else if (a.rfind("--json=", 0) == 0) json_path = a.substr(7);
    else {
      std::fprintf(stderr, "usage: %s [--model=path] [--iterations=N] [--json=path]\n", argv[0]);
      return 2;
    }
  }
  if (!kiln::gpu::available()) {
    std::fprintf(stderr, "bench_low_latency needs a GPU\n");
    return 1;
  }
  kiln::BuilderConfig c;
  c.device = "cuda";
  c.tf32 = false;
  c.profiles["input"] = {{1, 1, 28, 28}, {1, 1, 28, 28}, {8, 1, 28, 28}};
  auto built = kiln::build_engine_from_file(model, c);
  if (!ok(built.status(), "build")) return 1;
  auto engine = kiln::Runtime().deserialize_engine(built->engine);
  if (!ok(engine.status(), "load")) return 1;
  auto ctx_r = (*engine)->create_execution_context();
  if (!ok(ctx_r.status(), "context")) return 1;
  kiln::ExecutionContext& ctx = **ctx_r;

  auto xp = kiln::gpu::host_alloc_pinned(784 * 4);
  auto yp = kiln::gpu::host_alloc_pinned(10 * 4);
  if (!ok(xp.status(), "pinned") || !ok(yp.status(), "pinned")) return 1;
  float* x = static_cast<float*>(*xp);
  float* y = static_cast<float*>(*yp);
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-2.f, 2.f);
  for (int i = 0; i < 784; ++i) x[i] = d(rng);
  if (!ok(ctx.set_input_shape("input", {1, 1, 28, 28}), "shape") || !ok(ctx.set_tensor_address("input", x), "addr") ||
      !ok(ctx.set_tensor_address("logits", y), "addr"))
    return 1;
  std::vector<Stats> results;

  // (b) normal path first: its kernels load before any resident kernel runs.
  ctx.set_cuda_graph(true);
  results.push_back(measure("cuda_graph", iterations, [&] { return ok(ctx.execute(), "execute (graph)"); }));
  std::vector<float> y_graph(y, y + 10);

  // (a) low-latency mode.
  if (!ok(ctx.set_low_latency(true, 1), "set_low_latency")) return 1;
  results.push_back(measure("low_latency", iterations, [&] { return ok(ctx.execute(), "execute (low latency)"); }));
  double diff = 0;
  for (int i = 0; i < 10; ++i) diff = std::max(diff, static_cast<double>(std::fabs(y[i] - y_graph[i])));
  std::printf("max |low_latency - cuda_graph| over the 10 logits: %.3g\n", diff);
  std::printf("resident kernel: %s\n", ctx.low_latency_info().c_str());
  // (c) device-resident input and output: the resident kernel reads and writes device memory, against the
  // CUDA graph path on the same buffers (execute() = graph replay + synchronize).
  auto dx = kiln::gpu::device_alloc(784 * 4), dy = kiln::gpu::device_alloc(10 * 4);
  if (!ok(dx.status(), "device_alloc") || !ok(dy.status(), "device_alloc")) return 1;
  {
    auto st = kiln::gpu::stream_create();
    if (!ok(st.status(), "stream") || !ok(kiln::gpu::copy_to_device_async(*dx, x, 784 * 4, *st), "copy") ||
        !ok(kiln::gpu::stream_synchronize(*st), "sync"))
      return 1;
    (void)kiln::gpu::stream_destroy(*st);
  }
  if (!ok(ctx.set_tensor_address("input", *dx), "addr") || !ok(ctx.set_tensor_address("logits", *dy), "addr")) return 1;
  results.push_back(measure("low_latency_device", iterations, [&] { return ok(ctx.execute(), "execute (low latency, device)"); }));
  std::printf("resident kernel (device IO): %s\n", ctx.low_latency_info().c_str());
  if (!ok(ctx.set_low_latency(false), "set_low_latency(false)")) return 1;
  results.push_back(measure("cuda_graph_device", iterations, [&] { return ok(ctx.execute(), "execute (graph, device)"); }));
  if (!ok(ctx.set_tensor_address("input", x), "addr") || !ok(ctx.set_tensor_address("logits", y), "addr")) return 1;
  (void)kiln::gpu::device_free(*dx);
  (void)kiln::gpu::device_free(*dy);

  // (d) the floor: a resident ping with no compute.
  {
    uint32_t* flags = nullptr;
    if (!cuda_ok(cudaHostAlloc(reinterpret_cast<void**>(&flags), 256, cudaHostAllocMapped), "cudaHostAlloc")) return 1;
    std::memset(flags, 0, 256);
    uint32_t* dev = nullptr;
    if (!cuda_ok(cudaHostGetDevicePointer(reinterpret_cast<void**>(&dev), flags, 0), "cudaHostGetDevicePointer")) return 1;
    cudaStream_t s;
    if (!cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream")) return 1;
    if (!cuda_ok(launch_ping_kernel(dev, dev + 32, s), "launch ping")) return 1;
    std::atomic_ref<uint32_t> request(flags[0]), done(flags[32]);
    uint32_t seq = 0;
    results.push_back(measure("ping_floor", iterations, [&] {
      const uint32_t want = ++seq;
      request.store(want, std::memory_order_release);
      const auto deadline = Clock::now() + std::chrono::seconds(2);
      for (uint32_t spins = 0; done.load(std::memory_order_acquire) != want;)
        if (++spins % 4096 == 0 && Clock::now() > deadline) {
          std::fprintf(stderr, "ping kernel did not answer\n");
          return false;
        }
      return true;
    }));
    request.store(0xFFFFFFFFu, std::memory_order_release);
    if (!cuda_ok(cudaStreamSynchronize(s), "ping stop")) return 1;
    (void)cudaStreamDestroy(s);
    (void)cudaFreeHost(flags);
  }

  // (d) an empty CUDA graph launch + synchronize.
  {
    cudaStream_t s;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    if (!cuda_ok(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream") ||
        !cuda_ok(cudaGraphCreate(&g, 0), "cudaGraphCreate") ||
        !cuda_ok(cudaGraphInstantiate(&ge, g, 0), "cudaGraphInstantiate"))
      return 1;
    results.push_back(measure("empty_graph", iterations, [&] {
      return cuda_ok(cudaGraphLaunch(ge, s), "cudaGraphLaunch") && cuda_ok(cudaStreamSynchronize(s), "sync");
    }));
    (void)cudaGraphExecDestroy(ge);
    (void)cudaGraphDestroy(g);
    (void)cudaStreamDestroy(s);
  }
  (void)kiln::gpu::host_free_pinned(x);
  (void)kiln::gpu::host_free_pinned(y);

  // Building blocks of the resident kernel's request (its trace gives the phases).
  for (int threads : {128, 512})
    for (bool stores : {false, true})
      std::printf("cluster barrier, 8 CTAs x %d threads%s: %.0f ns\n", threads, stores ? ", DSMEM stores before" : "",
                  cluster_sync_ns(threads, stores, 20000));
  std::printf("dependent read of mapped host memory: %.0f ns\n", mapped_read_ns(2000));
  std::printf("three independent reads, one thread, same 128-byte line: %.0f ns; three lines: %.0f ns\n",
              mapped_read3_ns(4, 2000), mapped_read3_ns(32, 2000));

  if (!json_path.empty()) {
    std::ofstream f(json_path);
    f << "{\"batch\": 1, \"results\": [";
    for (size_t i = 0; i < results.size(); ++i)
      f << (i ? ", " : "") << "{\"name\": \"" << results[i].name << "\", \"p50_us\": " << results[i].p50
        << ", \"p99_us\": " << results[i].p99 << ", \"mean_us\": " << results[i].mean << ", \"min_us\": " << results[i].min
        << ", \"samples\": " << results[i].samples << "}";
    f << "]}\n";
  }
  for (const Stats& s : results)
    if (s.samples == 0) return 1;
  return 0;
}
