// `kiln compare`: runs an engine unchanged with a layer observer and compares the output of each of its
// real (fused) layers with the same tensor in another engine, or in the float64 reference of the ONNX
// model, then names the first layer whose relative L2 error passes the threshold.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "data/calibration_data.h"
#include "host_buffers.h"

namespace kiln::cli {

CLI::App* add_compare_command(CLI::App& app, CompareOptions* opts) {
  CLI::App* cmd = app.add_subcommand("compare", "Per-layer error of an engine against another engine or its ONNX model");
  cmd->add_option("--loadEngine", opts->load_engine, "Engine file to check")->type_name("FILE")->required();
  cmd->add_option("--against", opts->against, "Reference engine file (observed the same way)")->type_name("FILE");
  cmd->add_option("--onnx", opts->onnx, "Reference: the ONNX model evaluated node by node in float64")
      ->type_name("FILE");
  cmd->add_option("--data", opts->data,
                  "Input samples for the (single) input: IDX images (normalized as the engine's metadata says), .npy "
                  "or raw float32 files, comma-separated; the first --batch samples are used")
      ->type_name("FILE,...");
  cmd->add_option("--batch", opts->batch, "Batch of the random inputs (dim 0, kept inside the profile)")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--seed", opts->seed, "Seed of the random N(0,1) inputs")->capture_default_str();
  cmd->add_option("--threshold", opts->threshold, "Relative L2 error above which a layer diverges")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--threads", opts->threads, "Worker threads for the kernels (0 = library default)")
      ->check(at_least(0));
  cmd->add_option("--exportJSON", opts->export_json, "Write every layer's numbers as JSON")->type_name("FILE");
  cmd->footer("Tensors are matched by name; an INT8 layer's 'x::int8' input is compared with x, and the "
              "'x/to_float16', 'x/float32' casts of FP16 engines with x.");
  return cmd;
}

namespace {

// A tensor widened to float64 (INT8 dequantized), with the layer that wrote it ("" for inputs and ONNX).
struct Tensor64 {
  std::string layer, tensor;
  DataType dtype = DataType::kUndefined;
  Dims shape;
  std::vector<double> values;
};

Tensor64 widen(std::string layer, std::string tensor, DataType dtype, const Dims& shape, const void* data,
               float scale = 0) {
  Tensor64 t{std::move(layer), std::move(tensor), dtype, shape,
             values_to_doubles(static_cast<const uint8_t*>(data), dtype, volume(shape))};
  if (scale != 0)
    for (double& x : t.values) x *= scale;
  return t;
}

// Seeded N(0,1) by Box-Muller over mt19937_64's fully specified bits, so runs agree across machines.
std::vector<double> normal_values(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto uniform = [&] { return ((rng() >> 11) + 1) * 0x1.0p-53; };  // (0, 1]
  std::vector<double> v(n);
  for (double& x : v) x = std::sqrt(-2 * std::log(uniform())) * std::cos(2 * std::numbers::pi * uniform());
  return v;
}

// Each input's shape: dim 0 is the batch (kept inside the profile), other dynamic dims the profile's opt.
Result<std::map<std::string, Dims>> input_shapes(const Engine& engine, int64_t batch) {
  std::map<std::string, Dims> shapes;
  for (const std::string& name : engine_inputs(engine)) {
    Dims d = engine.tensor_shape(name);
    Result<ShapeProfile> profile = engine.profile_shapes(name);
    if (!profile.is_ok()) return std::move(profile).take_status().with_context(fmt::format("input '{}'", name));
    for (size_t i = 0; i < d.size(); ++i) {
      if (d[i] >= 0) continue;
      d[i] = i == 0 ? std::clamp(batch, profile->min[0], profile->max[0]) : profile->opt[i];
      if (i == 0 && d[0] != batch)
        report_note(fmt::format("--batch {} is outside the profile of input '{}'; using {}", batch, name, d[0]));
    }
    shapes[name] = d;
  }
  return shapes;
}

struct ObservedRun {
  std::vector<Tensor64> layers;                // every observed layer output, in layer order
  std::map<std::string, HostTensor> inputs;    // as fed, in the engine's dtypes
  std::map<std::string, HostTensor> outputs;
};

// Runs the engine once on `values` with a layer observer that keeps every layer output as float64.
Result<ObservedRun> run_observed(const Engine& engine, const std::map<std::string, Dims>& shapes,
                                 const std::map<std::string, std::vector<double>>& values, int threads) {
  ObservedRun run;
  for (const auto& [name, dims] : shapes) {
    if (engine.tensor_mode(name) != TensorIOMode::kInput)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("the engines differ: '{}' is not an input of both (inputs: {})", name,
                                join(engine_inputs(engine), ", ")));
    HostTensor& t = run.inputs[name];
    t.dtype = engine.tensor_dtype(name);
    t.shape = dims;
    t.bytes.resize(static_cast<size_t>(volume(dims)) * dtype_size(t.dtype));
    doubles_to_values(values.at(name), t.dtype, t.bytes.data());
  }
  Result<std::unique_ptr<ExecutionContext>> ctx = engine.create_execution_context();
  if (!ctx.is_ok()) return std::move(ctx).take_status().with_context("creating an execution context");
  (*ctx)->set_num_threads(threads);
  (*ctx)->set_layer_observer([&run](const LayerOutput& o) {
    run.layers.push_back(widen(o.layer, o.tensor, o.dtype, o.shape, o.data, o.scale));
  });
  auto outputs = (*ctx)->infer(run.inputs);
  if (!outputs.is_ok()) return std::move(outputs).take_status();
  run.outputs = std::move(outputs).value();
  return run;
}

// Reference tensors by name: engine B's inputs, layer outputs and outputs, or every ONNX tensor.
using Reference = std::map<std::string, Tensor64>;

Reference reference_from_engine(const ObservedRun& run) {
  Reference ref;
  for (const Tensor64& t : run.layers) ref[t.tensor] = t;
  for (const auto* io : {&run.inputs, &run.outputs})
    for (const auto& [name, t] : *io)
      if (!ref.count(name)) ref[name] = widen("", name, t.dtype, t.shape, t.bytes.data());
  return ref;
}

Result<Reference> reference_from_onnx(const std::string& path, const std::map<std::string, HostTensor>& inputs) {
  auto values = evaluate_onnx_reference(path, inputs);
  if (!values.is_ok()) return std::move(values).take_status().with_context("evaluating the ONNX reference");
  Reference ref;
  for (const auto& [name, t] : *values) ref[name] = widen("", name, t.dtype, t.shape, t.bytes.data());
  return ref;
}

// The reference tensor an engine value stands for: the same name, else the one a pass derived it from
// ("x::int8" is x quantized; "x/to_float16" and "x/float32" are the casts the FP16 precision pass adds).
const Tensor64* counterpart(const Reference& ref, const std::string& name) {
  if (auto it = ref.find(name); it != ref.end()) return &it->second;
  for (std::string_view suffix : {"::int8", "/to_float16", "/to_float32", "/float16", "/float32"}) {
    if (name.size() <= suffix.size() || !name.ends_with(suffix)) continue;
    if (auto it = ref.find(name.substr(0, name.size() - suffix.size())); it != ref.end()) return &it->second;
  }
  return nullptr;
}

struct LayerError {
  const Tensor64* engine = nullptr;
  const Tensor64* reference = nullptr;  // null: no counterpart
  std::string precision;
  double rel_l2 = 0, max_abs = 0;
  bool same_size = true;
};

// ||a - r|| / ||r|| (0 when both are zero, inf when only r is) and max |a - r|; NaN in a stays NaN.
void measure(LayerError& e) {
  const std::vector<double>& a = e.engine->values;
  const std::vector<double>& r = e.reference->values;
  e.same_size = a.size() == r.size();
  if (!e.same_size) return;
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - r[i]);
    num += d * d;
    den += r[i] * r[i];
    if (!(d <= e.max_abs)) e.max_abs = d;  // written so that NaN propagates
  }
  e.rel_l2 = den > 0 ? std::sqrt(num / den) : num == 0 ? 0.0 : INFINITY;
}

bool over(const LayerError& e, double threshold) {
  return e.reference && (!e.same_size || !(e.rel_l2 <= threshold));
}

// Rows of a 2-D output whose argmax is the same in the engine and the reference.
int64_t argmax_agreement(const Tensor64& a, const Tensor64& r) {
  const int64_t rows = a.shape[0], cols = a.shape[1];
  int64_t agree = 0;
  for (int64_t i = 0; i < rows; ++i) {
    auto row = [&](const Tensor64& t) { return t.values.begin() + i * cols; };
    agree += std::max_element(row(a), row(a) + cols) - row(a) == std::max_element(row(r), row(r) + cols) - row(r);
  }
  return agree;
}

// The first dims[0] samples of the files (fewer if they hold fewer: dims[0] shrinks), for a one-input engine.
Result<std::vector<double>> data_values(const Engine& engine, const std::string& spec, Dims* dims) {
  if (engine_inputs(engine).size() != 1)
    return Status(StatusCode::kUnsupported, "--data feeds engines with one input");
  auto norm = data::normalization_from_metadata(engine.metadata());
  if (!norm.is_ok()) return norm.status();
  auto batches = data::CalibrationBatches::open(spec, Dims(dims->begin() + 1, dims->end()), *norm);
  if (!batches.is_ok()) return batches.status();
  std::vector<float> x;
  int64_t rows = 0;
  if (!batches->next((*dims)[0], &x, &rows)) return Status(StatusCode::kInvalidArgument, "'" + spec + "' holds no sample");
  (*dims)[0] = rows;
  return std::vector<double>(x.begin(), x.end());
}

std::string number(double x) { return fmt::format("{:.3e}", x); }

Status compare_checked(const CompareOptions& opts) {
  Result<std::shared_ptr<Engine>> engine_or = load_engine_file(opts.load_engine);
  if (!engine_or.is_ok()) return std::move(engine_or).take_status();
  const Engine& engine = **engine_or;
  std::shared_ptr<Engine> against;
  if (!opts.against.empty()) {
    Result<std::shared_ptr<Engine>> b = load_engine_file(opts.against);
    if (!b.is_ok()) return std::move(b).take_status();
    against = std::move(b).value();
  }

  Result<std::map<std::string, Dims>> shapes = input_shapes(engine, opts.batch);
  if (!shapes.is_ok()) return std::move(shapes).take_status();
  std::map<std::string, std::vector<double>> values;
  std::map<std::string, uint64_t> seeds;  // one stream per input: the seed, then seed + 1, ...
  std::string source = "random N(0,1)";
  if (!opts.data.empty()) {
    Result<std::vector<double>> real = data_values(engine, opts.data, &shapes->begin()->second);
    if (!real.is_ok()) return std::move(real).take_status().with_context("--data");
    values[shapes->begin()->first] = std::move(real).value();
    source = opts.data;
  } else {
    for (const auto& [name, dims] : *shapes) {
      seeds[name] = opts.seed + seeds.size();
      values[name] = normal_values(static_cast<size_t>(volume(dims)), seeds[name]);
    }
  }
  const int64_t batch = shapes->empty() || shapes->begin()->second.empty() ? 0 : shapes->begin()->second[0];

  Result<ObservedRun> run = run_observed(engine, *shapes, values, opts.threads);
  if (!run.is_ok()) return std::move(run).take_status().with_context(opts.load_engine);
  Reference ref;
  if (against) {
    Result<ObservedRun> ref_run = run_observed(*against, *shapes, values, opts.threads);
    if (!ref_run.is_ok()) return std::move(ref_run).take_status().with_context(opts.against);
    ref = reference_from_engine(*ref_run);
  } else {
    Result<Reference> r = reference_from_onnx(opts.onnx, run->inputs);
    if (!r.is_ok()) return std::move(r).take_status();
    ref = std::move(r).value();
  }

  std::map<std::string, std::string> precision;  // per layer, as `kiln inspect` shows it
  const auto inspection = nlohmann::json::parse(engine.inspect_json());
  for (const auto& l : inspection["layers"])
    precision[l["name"].get<std::string>()] = l.value("precision", "");
  std::vector<LayerError> errors;
  const LayerError* first_over = nullptr;
  for (const Tensor64& t : run->layers) {
    LayerError& e = errors.emplace_back();
    e.engine = &t;
    e.reference = counterpart(ref, t.tensor);
    e.precision = precision[t.layer];
    if (e.reference) measure(e);
  }
  for (const LayerError& e : errors)
    if (!first_over && over(e, opts.threshold)) first_over = &e;

  // The report.
  const std::string ref_name = against ? fmt::format("{} (engine, {})", opts.against, against->device())
                                       : fmt::format("{} (ONNX, float64 reference of every node)", opts.onnx);
  fmt::print("Engine: {} ({}, {} layers)\nReference: {}\n", opts.load_engine, engine.device(), engine.num_layers(),
             ref_name);
  for (const auto& [name, t] : run->inputs)
    fmt::print("Input '{}': {} {} ({})\n", name, dtype_name(t.dtype), dims_to_string(t.shape),
               opts.data.empty() ? fmt::format("random N(0,1), seed {}", seeds[name]) : source);
  size_t layer_w = 5, tensor_w = 6;
  for (const LayerError& e : errors) {
    layer_w = std::max(layer_w, e.engine->layer.size());
    tensor_w = std::max(tensor_w, e.engine->tensor.size());
  }
  fmt::print("\n{:<{}}  {:<{}}  {:<8}  {:<9}  {:>10}  {:>10}\n", "layer", layer_w, "tensor", tensor_w, "dtype",
             "precision", "rel L2", "max abs");
  for (const LayerError& e : errors) {
    std::string result = !e.reference   ? "no counterpart"
                         : !e.same_size ? fmt::format("{} elements vs {}", e.engine->values.size(),
                                                      e.reference->values.size())
                                        : fmt::format("{:>10}  {:>10}", number(e.rel_l2), number(e.max_abs));
    fmt::print("{:<{}}  {:<{}}  {:<8}  {:<9}  {}{}\n", e.engine->layer, layer_w, e.engine->tensor, tensor_w,
               dtype_name(e.engine->dtype), e.precision.empty() ? "-" : e.precision, result,
               over(e, opts.threshold) ? "  <" : "");
  }
  if (first_over)
    fmt::print("\nfirst layer over the threshold {}: {} ({}, rel L2 {})\n", opts.threshold, first_over->engine->layer,
               first_over->engine->tensor, number(first_over->rel_l2));
  else
    fmt::print("\nno layer over the threshold {}\n", opts.threshold);

  nlohmann::ordered_json argmax = nlohmann::ordered_json::array();
  for (const auto& [name, t] : run->outputs) {
    const Tensor64* r = counterpart(ref, name);
    const bool is_float = t.dtype == DataType::kFloat32 || t.dtype == DataType::kFloat16;
    if (!r || !is_float || t.shape.size() != 2 || r->shape != t.shape || t.shape[0] == 0) continue;
    const int64_t agree = argmax_agreement(widen("", name, t.dtype, t.shape, t.bytes.data()), *r);
    fmt::print("argmax agreement on '{}': {}/{} rows ({:.2f}%)\n", name, agree, t.shape[0], 100.0 * agree / t.shape[0]);
    argmax.push_back({{"output", name}, {"agree", agree}, {"rows", t.shape[0]}});
  }

  if (!opts.export_json.empty()) {
    nlohmann::ordered_json layers = nlohmann::ordered_json::array();
    for (const LayerError& e : errors) {
      nlohmann::ordered_json l = {{"layer", e.engine->layer}, {"tensor", e.engine->tensor},
                                  {"dtype", dtype_name(e.engine->dtype)}, {"precision", e.precision},
                                  {"shape", dims_to_string(e.engine->shape)}};
      l["counterpart"] = e.reference ? nlohmann::ordered_json(e.reference->tensor) : nullptr;
      if (e.reference && e.same_size) {
        l["rel_l2"] = e.rel_l2;  // inf/NaN become null
        l["max_abs"] = e.max_abs;
      }
      l["over_threshold"] = over(e, opts.threshold);
      layers.push_back(std::move(l));
    }
    nlohmann::ordered_json doc = {
        {"engine", opts.load_engine},
        {"reference", {{"kind", against ? "engine" : "onnx"}, {"path", against ? opts.against : opts.onnx}}},
        {"batch", batch},
        {"seed", opts.seed},
        {"data", opts.data},
        {"threshold", opts.threshold},
        {"layers", std::move(layers)},
        {"first_over_threshold", first_over ? nlohmann::ordered_json{{"layer", first_over->engine->layer},
                                                                     {"tensor", first_over->engine->tensor},
                                                                     {"rel_l2", first_over->rel_l2}}
                                            : nlohmann::ordered_json(nullptr)},
        {"argmax_agreement", std::move(argmax)}};
    Status s = write_text_file(opts.export_json, doc.dump(2) + "\n");
    if (!s.is_ok()) return std::move(s).with_context("--exportJSON");
  }
  return Status::ok();
}

}  // namespace

int run_compare(const CompareOptions& opts) {
  if (opts.against.empty() == opts.onnx.empty())
    return report_error("compare: give the reference as exactly one of --against=ENGINE or --onnx=MODEL", kExitUsage);
  Status s = compare_checked(opts);
  if (!s.is_ok()) return report_error(s);
  return kExitOk;
}

}  // namespace kiln::cli
