#include "quant/calibrate.h"

#include <chrono>
#include <cmath>

#include <fmt/format.h>

#include "backends/cpu/cpu_target.h"
#include "builder/kernel_assignment.h"
#include "data/calibration_data.h"
#include "engine/engine_model.h"
#include "quant/calibrator.h"
#include "quant/quantize_graph.h"

namespace kiln::quant {
namespace {

// Views (Flatten, Reshape, ...) do not change data, so a view's statistics are its source's.
int view_root(const Graph& g, const std::vector<int>& producers, int v) {
  while (producers[v] >= 0 && is_view_node(g.nodes[producers[v]]) && g.nodes[producers[v]].outputs[0] == v)
    v = g.nodes[producers[v]].inputs[0];
  return v;
}

// Calibration batches in memory, each a full set of inputs (both passes run over the same data).
Result<std::vector<std::map<std::string, HostTensor>>> load_batches(const Graph& g,
                                                                    const std::vector<ShapeProfile>& profiles,
                                                                    const BuilderConfig::Int8& opts) {
  std::vector<std::map<std::string, HostTensor>> batches;
  if (opts.next_batch) {
    for (int b = 0; b < opts.batches; ++b) {
      std::map<std::string, HostTensor> batch;
      auto more = opts.next_batch(&batch);
      if (!more.is_ok()) return std::move(more).take_status().with_context("calibration batch callback");
      if (!*more) break;
      batches.push_back(std::move(batch));
    }
    return batches;
  }
  if (opts.calib_data.empty())
    return Status(StatusCode::kInvalidArgument,
                  "INT8 needs calibration data (--calibData=FILE[,FILE...]) or a calibration cache (--calib=FILE)");
  if (g.inputs.size() != 1)
    return Status(StatusCode::kUnsupported,
                  fmt::format("--calibData feeds one input, but the model has {}; use the C++ next_batch callback",
                              g.inputs.size()));
  const Value& in = g.values[g.inputs[0]];
  const ShapeProfile& prof = profiles[0];
  if (in.dtype != DataType::kFloat32 || prof.max.empty())
    return Status(StatusCode::kUnsupported, fmt::format("input '{}' must be a float32 tensor with a batch dimension "
                                                        "to calibrate from files", in.name));
  Dims sample(prof.max.begin() + 1, prof.max.end());
  for (size_t d = 1; d < prof.max.size(); ++d)
    if (prof.min[d] != prof.max[d])
      return Status(StatusCode::kUnsupported, fmt::format("input '{}' has dynamic dims besides the batch ({} to {}); "
                                                          "calibration files need a fixed sample shape",
                                                          in.name, dims_to_string(prof.min), dims_to_string(prof.max)));
  auto norm = data::normalization_from_metadata(g.metadata);
  if (!norm.is_ok()) return norm.status();
  auto source = data::CalibrationBatches::open(opts.calib_data, sample, *norm);
  if (!source.is_ok()) return std::move(source).take_status().with_context("--calibData");
  const int64_t batch = std::clamp<int64_t>(opts.batch_size, prof.min[0], prof.max[0]);
  std::vector<float> rows_data;
  int64_t rows = 0;
  while (static_cast<int>(batches.size()) < opts.batches && source->next(batch, &rows_data, &rows)) {
    if (rows < prof.min[0]) break;  // a short last batch below the profile's minimum is dropped
    Dims shape = sample;
    shape.insert(shape.begin(), rows);
    std::map<std::string, HostTensor> b;
    b[in.name] = HostTensor::from_floats(shape, rows_data);
    batches.push_back(std::move(b));
  }
  return batches;
}

}  // namespace

Result<CalibrationResult> calibrate(const Graph& g, const std::vector<ShapeProfile>& profiles,
                                    const std::vector<int>& values, const BuilderConfig::Int8& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  auto algo = calib_algo_from_name(opts.algorithm);
  if (!algo.is_ok()) return std::move(algo).take_status().with_context("--calibAlgo");
  auto batches = load_batches(g, profiles, opts);
  if (!batches.is_ok()) return batches.status();
  if (batches->empty()) return Status(StatusCode::kInvalidArgument, "the calibration data holds no batch");

  // An FP32 CPU engine of the same optimized graph whose outputs also include every calibrated tensor.
  EngineModel m;
  m.graph = g;
  m.profiles = profiles;
  std::vector<int> roots;
  const std::vector<int> producers = g.producers();
  for (int v : values) {
    const int r = view_root(g, producers, v);
    roots.push_back(r);
    if (!g.is_graph_input(r) && !m.graph.is_graph_output(r)) m.graph.outputs.push_back(r);
  }
  Status s = lower_to_kernels(m, /*on_gpu=*/false, PassContext{});
  if (!s.is_ok()) return std::move(s).with_context("building the FP32 calibration engine");
  m.kiln_version = kiln::version();
  m.target = cpu::target_isa();
  auto engine = Runtime().deserialize_engine(serialize_engine(m));
  if (!engine.is_ok()) return std::move(engine).take_status().with_context("loading the FP32 calibration engine");
  auto context = (*engine)->create_execution_context();
  if (!context.is_ok()) return context.status();

  std::vector<TensorRangeCollector> collectors(values.size());
  const bool histogram = *algo != CalibAlgo::kMinMax;
  const int passes = histogram ? 2 : 1;
  const int total = passes * static_cast<int>(batches->size());
  int done = 0;
  int64_t samples = 0;
  for (int pass = 0; pass < passes; ++pass) {
    for (const auto& batch : *batches) {
      auto outputs = (*context)->infer(batch);
      if (!outputs.is_ok()) return std::move(outputs).take_status().with_context("running a calibration batch");
      for (size_t i = 0; i < values.size(); ++i) {
        const std::string& name = g.values[roots[i]].name;
        auto it = outputs->find(name);
        const HostTensor* t = it != outputs->end() ? &it->second : nullptr;
        if (!t) {
          auto in = batch.find(name);
          if (in == batch.end()) return Status(StatusCode::kInternal, "calibration lost tensor '" + name + "'");
          t = &in->second;
        }
        if (t->dtype != DataType::kFloat32)
          return Status(StatusCode::kUnsupported, fmt::format("tensor '{}' is {}; only float32 activations are "
                                                              "calibrated", name, dtype_name(t->dtype)));
        const size_t n = static_cast<size_t>(t->elements());
        if (pass == 0) collectors[i].observe_max(t->data<float>(), n);
        else collectors[i].observe_histogram(t->data<float>(), n);
      }
      if (pass == 0) samples += batch.begin()->second.shape.empty() ? 1 : batch.begin()->second.shape[0];
      if (opts.progress) opts.progress(++done, total);
    }
  }
  CalibrationResult r;
  r.samples = samples;
  for (size_t i = 0; i < values.size(); ++i) {
    const float amax = collectors[i].amax(*algo, opts.percentile);
    r.scales[g.values[values[i]].name] = TensorRangeCollector::scale_from_amax(amax);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.summary = fmt::format("{}{} over {} samples in {} batches ({:.2f} s)", calib_algo_name(*algo),
                          *algo == CalibAlgo::kPercentile ? fmt::format(" {}%", opts.percentile) : "", samples,
                          batches->size(), secs);
  return r;
}

}  // namespace kiln::quant
