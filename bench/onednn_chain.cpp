// The bare oneDNN peer for Kiln's CPU runtime: the course MLP as three dnnl::matmul primitives.
//
//   bench_onednn_chain [--model=PATH | --random-weights] [--batches=1,2,4,...] [Google Benchmark flags]
//
// Weights come from models/mlp.onnx (the default path is compiled in) so the peer computes the same
// function as Kiln; --random-weights uses normal random weights of the same shapes instead. Each layer is
// one matmul with the bias fused and ReLU as a post-op (the last layer without). Weights are described with
// format_tag::any and reordered into the primitive's preferred layout once, outside the timed loop;
// activations are plain row-major. Primitives, memories and argument maps are built once per batch, so the
// timed loop is three execute() calls and a stream wait. Input is random normal (seed 123), never zeros.
//
// --batches registers BM_chain_sweep/batch:N (f32 chain) for each listed batch, for bench/compare.py's sweep
// (select them with --benchmark_filter=BM_chain_sweep).
//
// Threads: oneDNN's OpenMP runtime; set OMP_NUM_THREADS. Timing is per iteration (manual time); see
// iteration_stats.h for the counters. BM_sgemm_layer1 times one plain f32 matmul 8192x784x256 to give the
// sgemm rate that the batch-8192 goal is stated against.
#include "iteration_stats.h"

#include <benchmark/benchmark.h>
#include <omp.h>
#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <oneapi/dnnl/dnnl.hpp>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#ifndef KILN_BENCH_DEFAULT_MODEL
#define KILN_BENCH_DEFAULT_MODEL "models/mlp.onnx"
#endif

namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// One fully connected layer as Gemm stores it: y = x * W + b, W given as [K, N] or, with transB, [N, K].
struct Layer {
  int64_t k = 0;  // input features
  int64_t n = 0;  // output features
  bool trans_b = false;
  bool relu = false;
  std::vector<float> w;     // as stored in the model
  std::vector<float> bias;  // [n]
  float w_at(int64_t ki, int64_t ni) const { return trans_b ? w[ni * k + ki] : w[ki * n + ni]; }
};

struct Model {
  std::vector<Layer> layers;
  std::string source;  // "PATH" or "random"
};

std::vector<float> tensor_floats(const onnx::TensorProto& t) {
  if (t.data_type() != onnx::TensorProto::FLOAT) throw std::runtime_error("initializer " + t.name() + " is not float32");
  if (t.has_data_location() && t.data_location() == onnx::TensorProto::EXTERNAL)
    throw std::runtime_error("initializer " + t.name() + " uses external data (not supported here)");
  int64_t count = 1;
  for (auto d : t.dims()) count *= d;
  std::vector<float> out(static_cast<size_t>(count));
  if (!t.raw_data().empty()) {
    if (t.raw_data().size() != out.size() * sizeof(float)) throw std::runtime_error("initializer " + t.name() + ": raw_data size");
    std::memcpy(out.data(), t.raw_data().data(), t.raw_data().size());
  } else {
    if (t.float_data_size() != count) throw std::runtime_error("initializer " + t.name() + ": float_data size");
    std::copy(t.float_data().begin(), t.float_data().end(), out.begin());
  }
  return out;
}

// Reads every Gemm (+ following Relu) of the model, in node order.
Model load_onnx(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  onnx::ModelProto m;
  if (!m.ParseFromIstream(&f)) throw std::runtime_error("cannot parse " + path);
  const auto& g = m.graph();
  std::unordered_map<std::string, const onnx::TensorProto*> inits;
  for (const auto& t : g.initializer()) inits[t.name()] = &t;
  Model model;
  model.source = path;
  for (int i = 0; i < g.node_size(); ++i) {
    const auto& node = g.node(i);
    if (node.op_type() != "Gemm") continue;
    Layer L;
    float alpha = 1.f, beta = 1.f;
    int64_t trans_a = 0;
    for (const auto& a : node.attribute()) {
      if (a.name() == "transB") L.trans_b = a.i() != 0;
      if (a.name() == "transA") trans_a = a.i();
      if (a.name() == "alpha") alpha = a.f();
      if (a.name() == "beta") beta = a.f();
    }
    if (trans_a != 0 || alpha != 1.f || beta != 1.f || node.input_size() != 3)
      throw std::runtime_error("Gemm " + node.name() + ": only transA=0, alpha=beta=1 with a bias is supported");
    const auto* b = inits.at(node.input(1));
    const auto* c = inits.at(node.input(2));
    if (b->dims_size() != 2) throw std::runtime_error("Gemm " + node.name() + ": B is not 2-D");
    L.k = L.trans_b ? b->dims(1) : b->dims(0);
    L.n = L.trans_b ? b->dims(0) : b->dims(1);
    L.w = tensor_floats(*b);
    L.bias = tensor_floats(*c);
    if (static_cast<int64_t>(L.bias.size()) != L.n) throw std::runtime_error("Gemm " + node.name() + ": bias is not [N]");
    L.relu = i + 1 < g.node_size() && g.node(i + 1).op_type() == "Relu" && g.node(i + 1).input(0) == node.output(0);
    model.layers.push_back(std::move(L));
  }
  if (model.layers.empty()) throw std::runtime_error(path + " has no Gemm nodes");
  return model;
}

// Same shapes as models/mlp.onnx, normal random weights (He-scaled so activations stay O(1)).
Model random_model() {
  const int64_t dims[] = {784, 256, 128, 10};
  std::mt19937 rng(7);
  Model model;
  model.source = "random";
  for (int i = 0; i < 3; ++i) {
    Layer L;
    L.k = dims[i];
    L.n = dims[i + 1];
    L.trans_b = true;
    L.relu = i < 2;
    std::normal_distribution<float> nd(0.f, std::sqrt(2.f / static_cast<float>(L.k)));
    L.w.resize(static_cast<size_t>(L.k * L.n));
    for (auto& x : L.w) x = nd(rng);
    L.bias.resize(static_cast<size_t>(L.n));
    for (auto& x : L.bias) x = 0.1f * nd(rng);
    model.layers.push_back(std::move(L));
  }
  return model;
}

std::vector<float> random_normal(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void write(const memory& m, const float* src, size_t bytes) { std::memcpy(m.get_data_handle(), src, bytes); }

// The chain at one batch size: everything allocated and reordered at construction, run() only executes.
// int8: the INT8 peer of Kiln's INT8 engine: s8 input (already quantized: the chain does not time the
// input's quantization, Kiln does), s8 weights quantized per output channel, per-channel output scales,
// s8 activations between layers and f32 logits, bias and ReLU fused as in the f32 chain.
// bf16: the peer of Kiln's BF16 engine (kiln build --bf16): bf16 input (already converted, not timed; Kiln
// converts the float input), bf16 weights and activations, f32 bias and logits.
enum class Precision { kF32, kInt8, kBf16 };

class Chain {
 public:
  Chain(const Model& model, int64_t batch, const dnnl::engine& eng, Precision precision = Precision::kF32)
      : batch_(batch), precision_(precision) {
    dnnl::stream s(eng);
    const int64_t k0 = model.layers.front().k;
    const bool int8 = precision == Precision::kInt8;
    const dt act = int8 ? dt::s8 : precision == Precision::kBf16 ? dt::bf16 : dt::f32;
    memory cur(memory::desc({batch, k0}, act, tag::ab), eng);
    input_ = cur;
    for (size_t li = 0; li < model.layers.size(); ++li) {
      const Layer& L = model.layers[li];
      const bool last = li + 1 == model.layers.size();
      const memory::desc src_md({batch, L.k}, act, tag::ab);
      const memory::desc w_any({L.k, L.n}, act, tag::any);
      const memory::desc b_md({1, L.n}, dt::f32, tag::ab);
      const memory::desc dst_md({batch, L.n}, last ? dt::f32 : act, tag::ab);
      dnnl::post_ops po;
      if (L.relu) po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(po);
      std::vector<float> w_scale(static_cast<size_t>(L.n), 1.f);
      if (int8) {
        for (int64_t n = 0; n < L.n; ++n) {
          float amax = 0;
          for (int64_t k = 0; k < L.k; ++k) amax = std::max(amax, std::fabs(L.w_at(k, n)));
          w_scale[n] = amax > 0 ? amax / 127 : 1.f;
        }
        // Activation scales of a calibrated model (input amax ~2, hidden amax ~15); values only set magnitudes.
        std::vector<float> out_scales(static_cast<size_t>(L.n));
        for (int64_t n = 0; n < L.n; ++n) out_scales[n] = (li == 0 ? 2.f : 15.f) / 127 * w_scale[n] / (last ? 1.f : 15.f / 127);
        attr.set_output_scales(1 << 1, out_scales);
      }
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, w_any, b_md, dst_md), attr, eng);

      // Model layout -> the primitive's preferred layout, once (bf16: the reorder converts the f32 weights).
      memory w_user(memory::desc({L.k, L.n}, int8 ? dt::s8 : dt::f32, L.trans_b ? tag::ba : tag::ab), eng);
      if (int8) {
        std::vector<int8_t> q(L.w.size());
        for (int64_t k = 0; k < L.k; ++k)
          for (int64_t n = 0; n < L.n; ++n)
            q[L.trans_b ? n * L.k + k : k * L.n + n] = static_cast<int8_t>(std::lrint(L.w_at(k, n) / w_scale[n]));
        std::memcpy(w_user.get_data_handle(), q.data(), q.size());
      } else {
        write(w_user, L.w.data(), L.w.size() * sizeof(float));
      }
      memory w(pd.weights_desc(), eng);
      dnnl::reorder(w_user, w).execute(s, w_user, w);
      memory b(b_md, eng);
      write(b, L.bias.data(), L.bias.size() * sizeof(float));
      memory dst(dst_md, eng);

      prims_.emplace_back(pd);
      args_.push_back({{DNNL_ARG_SRC, cur}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, dst}});
      impl_ += (impl_.empty() ? "" : ",") + std::string(pd.impl_info_str());
      cur = dst;
    }
    s.wait();
    output_ = cur;
    out_features_ = model.layers.back().n;
  }

  void set_input(const std::vector<float>& x) {
    if (precision_ == Precision::kF32) return write(input_, x.data(), x.size() * sizeof(float));
    if (precision_ == Precision::kBf16) {
      const dnnl::engine eng = input_.get_engine();
      memory f32(memory::desc({batch_, static_cast<int64_t>(x.size()) / batch_}, dt::f32, tag::ab), eng);
      write(f32, x.data(), x.size() * sizeof(float));
      dnnl::stream s(eng);
      dnnl::reorder(f32, input_).execute(s, f32, input_);
      s.wait();
      return;
    }
    auto* q = static_cast<int8_t*>(input_.get_data_handle());
    for (size_t i = 0; i < x.size(); ++i) q[i] = static_cast<int8_t>(std::clamp(std::lrint(x[i] * 40), -127L, 127L));
  }
  void run(dnnl::stream& s) {
    for (size_t i = 0; i < prims_.size(); ++i) prims_[i].execute(s, args_[i]);
    s.wait();
  }
  const float* output() const { return static_cast<const float*>(output_.get_data_handle()); }
  int64_t out_features() const { return out_features_; }
  const std::string& impl() const { return impl_; }

 private:
  int64_t batch_;
  Precision precision_ = Precision::kF32;
  int64_t out_features_ = 0;
  memory input_, output_;
  std::vector<dnnl::matmul> prims_;
  std::vector<std::unordered_map<int, memory>> args_;
  std::string impl_;
};

// float64 reference of the whole model, used once to check the chain computes the right function.
std::vector<double> reference(const Model& model, const std::vector<float>& x, int64_t batch) {
  std::vector<double> cur(x.begin(), x.end());
  for (const auto& L : model.layers) {
    std::vector<double> next(static_cast<size_t>(batch * L.n));
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t n = 0; n < L.n; ++n) {
        double acc = L.bias[n];
        for (int64_t k = 0; k < L.k; ++k) acc += cur[b * L.k + k] * static_cast<double>(L.w_at(k, n));
        next[b * L.n + n] = L.relu && acc < 0 ? 0.0 : acc;
      }
    cur = std::move(next);
  }
  return cur;
}

struct Globals {
  Model model;
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{eng};
  std::map<std::pair<int64_t, Precision>, std::unique_ptr<Chain>> chains;

  Chain& chain(int64_t batch, Precision precision = Precision::kF32) {
    auto& c = chains[{batch, precision}];
    if (!c) {
      c = std::make_unique<Chain>(model, batch, eng, precision);
      c->set_input(random_normal(static_cast<size_t>(batch * model.layers.front().k), 123));
    }
    return *c;
  }
};
Globals* g = nullptr;

int64_t chain_flops_per_sample(const Model& m) {
  int64_t f = 0;
  for (const auto& L : m.layers) f += 2 * L.k * L.n;
  return f;
}

void run_chain(benchmark::State& state, Precision precision) {
  const int64_t batch = state.range(0);
  Chain& c = g->chain(batch, precision);
  c.run(g->stream);  // warm-up outside the timed loop
  kiln_bench::IterationStats stats;
  for (auto _ : state) stats.time(state, [&] { c.run(g->stream); });
  benchmark::DoNotOptimize(c.output()[0]);
  stats.report(state);
  state.counters["batch"] = static_cast<double>(batch);
  state.counters["omp_threads"] = omp_get_max_threads();
  state.counters["flop"] = static_cast<double>(chain_flops_per_sample(g->model) * batch);
  state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(chain_flops_per_sample(g->model) * batch) * 1e-9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(c.impl());
}

void BM_chain(benchmark::State& state) { run_chain(state, Precision::kF32); }
void BM_chain_int8(benchmark::State& state) { run_chain(state, Precision::kInt8); }
void BM_chain_bf16(benchmark::State& state) { run_chain(state, Precision::kBf16); }

// One plain matmul of layer 1's shape at batch 8192: f32 (the sgemm rate of this oneDNN on this machine,
// which the batch-8192 goal is stated against), s8 x s8 -> s32 (its INT8 GEMM rate: VNNI or AMX) or
// bf16 x bf16 -> f32 (its BF16 rate: AMX-BF16, AVX512_BF16, or emulated).
enum class GemmType { kF32, kS8, kBf16 };
void gemm_layer1(benchmark::State& state, GemmType type) {
  const int64_t m = state.range(0), k = 784, n = 256;
  static std::map<std::pair<int64_t, GemmType>, std::tuple<dnnl::matmul, std::unordered_map<int, memory>>> cache;
  auto it = cache.find({m, type});
  if (it == cache.end()) {
    const bool int8 = type == GemmType::kS8;
    const dt in = int8 ? dt::s8 : type == GemmType::kBf16 ? dt::bf16 : dt::f32;
    const memory::desc src_md({m, k}, in, tag::ab), dst_md({m, n}, int8 ? dt::s32 : dt::f32, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, memory::desc({k, n}, in, tag::any), dst_md),
                                          g->eng);
    memory src(src_md, g->eng), w(pd.weights_desc(), g->eng), dst(dst_md, g->eng);
    const auto xs = random_normal(static_cast<size_t>(m * k), 11), ws = random_normal(static_cast<size_t>(k * n), 12);
    if (int8) {  // random int8 values in [-64, 64]
      memory w_user(memory::desc({k, n}, in, tag::ab), g->eng);
      auto q = [](const std::vector<float>& v, const memory& mem) {
        auto* d = static_cast<int8_t*>(mem.get_data_handle());
        for (size_t i = 0; i < v.size(); ++i) d[i] = static_cast<int8_t>(std::clamp(std::lrint(v[i] * 32), -64L, 64L));
      };
      q(xs, src);
      q(ws, w_user);
      dnnl::reorder(w_user, w).execute(g->stream, w_user, w);
    } else {  // float32 values, converted by the reorders where the product is bf16
      memory src_user(memory::desc({m, k}, dt::f32, tag::ab), g->eng), w_user(memory::desc({k, n}, dt::f32, tag::ab), g->eng);
      write(src_user, xs.data(), xs.size() * sizeof(float));
      write(w_user, ws.data(), ws.size() * sizeof(float));
      dnnl::reorder(src_user, src).execute(g->stream, src_user, src);
      dnnl::reorder(w_user, w).execute(g->stream, w_user, w);
    }
    g->stream.wait();
    it = cache.emplace(std::make_pair(m, type),
                       std::make_tuple(dnnl::matmul(pd), std::unordered_map<int, memory>{
                                                             {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, dst}}))
             .first;
    state.SetLabel(pd.impl_info_str());
  }
  auto& [prim, args] = it->second;
  auto run = [&] {
    prim.execute(g->stream, args);
    g->stream.wait();
  };
  run();
  kiln_bench::IterationStats stats;
  for (auto _ : state) stats.time(state, run);
  stats.report(state);
  const double flop = 2.0 * static_cast<double>(m * k * n);
  state.counters["batch"] = static_cast<double>(m);
  state.counters["omp_threads"] = omp_get_max_threads();
  state.counters["flop"] = flop;
  state.counters["GFLOPS"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void BM_sgemm_layer1(benchmark::State& state) { gemm_layer1(state, GemmType::kF32); }
void BM_s8gemm_layer1(benchmark::State& state) { gemm_layer1(state, GemmType::kS8); }
void BM_bf16gemm_layer1(benchmark::State& state) { gemm_layer1(state, GemmType::kBf16); }

BENCHMARK(BM_chain)->ArgName("batch")->Arg(1)->Arg(64)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_chain_int8)->ArgName("batch")->Arg(1)->Arg(64)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_chain_bf16)->ArgName("batch")->Arg(1)->Arg(64)->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_sgemm_layer1)->ArgName("m")->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_s8gemm_layer1)->ArgName("m")->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_bf16gemm_layer1)->ArgName("m")->Arg(8192)->UseManualTime()->Unit(benchmark::kMicrosecond);

// Checks the chain against the float64 reference at an odd batch; returns the relative L2 error.
double check(const Model& model, Precision precision = Precision::kF32) {
  const int64_t batch = 7;
  Chain c(model, batch, g->eng, precision);
  const auto x = random_normal(static_cast<size_t>(batch * model.layers.front().k), 99);
  c.set_input(x);
  std::memset(const_cast<float*>(c.output()), 0xff, static_cast<size_t>(batch * c.out_features()) * sizeof(float));  // NaN poison
  c.run(g->stream);
  const auto ref = reference(model, x, batch);
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(c.output()[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::isnan(num) ? INFINITY : std::sqrt(num / den);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  std::string model_path = KILN_BENCH_DEFAULT_MODEL;
  bool random = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--model=", 0) == 0) {
      model_path = a.substr(8);
    } else if (a == "--random-weights") {
      random = true;
    } else if (a.rfind("--batches=", 0) == 0) {
      std::string list = a.substr(10);
      for (size_t pos = 0; pos < list.size();) {
        const size_t comma = std::min(list.find(',', pos), list.size());
        const long b = std::strtol(list.substr(pos, comma - pos).c_str(), nullptr, 10);
        if (b <= 0) {
          std::fprintf(stderr, "bench_onednn_chain: bad batch in '%s'\n", a.c_str());
          return 2;
        }
        benchmark::RegisterBenchmark("BM_chain_sweep", BM_chain)->ArgName("batch")->Arg(b)->UseManualTime()->Unit(
            benchmark::kMicrosecond);
        pos = comma + 1;
      }
    } else {
      std::fprintf(stderr, "bench_onednn_chain: unknown argument '%s'\n", a.c_str());
      return 2;
    }
  }
  Globals globals;
  g = &globals;
  try {
    globals.model = random ? random_model() : load_onnx(model_path);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_onednn_chain: %s (use --model=PATH or --random-weights)\n", e.what());
    return 1;
  }
  const double err = check(globals.model);
  std::fprintf(stderr, "bench_onednn_chain: weights from %s; layers", globals.model.source.c_str());
  for (const auto& L : globals.model.layers) std::fprintf(stderr, " %lldx%lld%s", (long long)L.k, (long long)L.n, L.relu ? "+relu" : "");
  std::fprintf(stderr, "; check vs float64 reference at batch 7: rel L2 error %.2e\n", err);
  if (!(err < 1e-4)) {
    std::fprintf(stderr, "bench_onednn_chain: chain output does not match the reference\n");
    return 1;
  }
  const double err_bf16 = check(globals.model, Precision::kBf16);
  std::fprintf(stderr, "bench_onednn_chain: bf16 chain vs float64 reference: rel L2 error %.2e\n", err_bf16);
  if (!(err_bf16 < 1e-2)) {
    std::fprintf(stderr, "bench_onednn_chain: the bf16 chain's output does not match the reference\n");
    return 1;
  }
  const dnnl::version_t* v = dnnl::version();
  benchmark::AddCustomContext("weights", globals.model.source);
  char err_str[32];
  std::snprintf(err_str, sizeof err_str, "%.3g", err);
  benchmark::AddCustomContext("check_rel_l2_error", err_str);
  benchmark::AddCustomContext("onednn_version", std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
                                                    std::to_string(v->patch) + " (" + v->hash + ", cpu_runtime " +
                                                    std::to_string(v->cpu_runtime) + ")");
  benchmark::AddCustomContext("omp_max_threads", std::to_string(omp_get_max_threads()));
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
