// `kiln eval`: top-1 accuracy of a classifier engine on an IDX image/label set (Fashion-MNIST by default
// layout), with the preprocessing x = (pixel * scale - mean) / std taken from the engine's metadata.
#include <array>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli_common.h"
#include "commands.h"
#include "data/idx_reader.h"
#include "executor.h"
#include "io_binding.h"
#include "progress.h"

namespace kiln::cli {

using data::IdxArray;
using data::read_idx;

namespace {
constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";
}

CLI::App* add_eval_command(CLI::App& app, EvalOptions* opts) {
  CLI::App* cmd = app.add_subcommand("eval", "Top-1 accuracy of a classifier engine on IDX images and labels");
  cmd->add_option("--loadEngine", opts->load_engines,
                  "Engine file(s) to evaluate; with several (comma-separated), a table with each one's argmax "
                  "agreement with the first (e.g. fp32,fp16,int8)")
      ->type_name("FILE,...")
      ->delimiter(',')
      ->required();
  cmd->add_option("--images", opts->images, "IDX image file (uint8 [N, rows, cols]; plain or .gz)")->type_name("FILE");
  cmd->add_option("--labels", opts->labels, "IDX label file (uint8 [N]; plain or .gz)")->type_name("FILE");
  cmd->add_option("--dataset", opts->dataset,
                  fmt::format("Named test set instead of --images/--labels (fashion-mnist: the t10k files in {})",
                              kFashionMnistDir))
      ->check(CLI::IsMember({"fashion-mnist"}));
  cmd->add_option("--mean", opts->mean, "Normalization mean (default: engine metadata 'normalize_mean', else 0)");
  cmd->add_option("--std", opts->std, "Normalization std (default: engine metadata 'normalize_std', else 1)");
  cmd->add_option("--scale", opts->scale, "Pixel scale (default: engine metadata 'input_scale', else 1/255)");
  cmd->add_option("--batch", opts->batch, "Images per execute(), clipped to the profile's max batch")
      ->check(at_least(1))
      ->capture_default_str();
  cmd->add_option("--threads", opts->threads, "Worker threads for the kernels (0 = library default)")
      ->check(at_least(0));
  cmd->add_option("--exportJSON", opts->export_json, "Write the accuracy and settings as JSON")->type_name("FILE");
  cmd->footer("Preprocessing: x = (pixel * scale - mean) / std, laid out as the engine input [N,1,rows,cols] or "
              "[N,rows*cols].");
  return cmd;
}

namespace {

struct Normalization {
  double scale = 1.0 / 255.0, mean = 0.0, std = 1.0;
  std::vector<std::string> defaulted;  // parameters neither flags nor metadata gave
};

// One parameter: the flag if given, else the metadata key, else the default.
Status resolve(double flag, const Engine& engine, const char* key, const char* name, double* out,
               std::vector<std::string>* defaulted) {
  if (!std::isnan(flag)) {
    *out = flag;
    return Status::ok();
  }
  const auto& md = engine.metadata();
  auto it = md.find(key);
  if (it == md.end()) {
    defaulted->push_back(fmt::format("{}={}", name, *out));
    return Status::ok();
  }
  const std::string& text = it->second;
  double value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || !std::isfinite(value)) {
    return Status(StatusCode::kParseError,
                  fmt::format("engine metadata '{}' = '{}' is not a number (override with --{})", key, text, name));
  }
  *out = value;
  return Status::ok();
}

Result<Normalization> resolve_normalization(const EvalOptions& opts, const Engine& engine) {
  Normalization n;
  Status s = resolve(opts.scale, engine, "input_scale", "scale", &n.scale, &n.defaulted);
  if (s.is_ok()) s = resolve(opts.mean, engine, "normalize_mean", "mean", &n.mean, &n.defaulted);
  if (s.is_ok()) s = resolve(opts.std, engine, "normalize_std", "std", &n.std, &n.defaulted);
  if (!s.is_ok()) return s;
  if (n.std == 0 || !std::isfinite(n.std)) return Status(StatusCode::kInvalidArgument, "--std must be non-zero");
  return n;
}

struct Dataset {
  IdxArray images, labels;
  int64_t count = 0, rows = 0, cols = 0;
};

Result<Dataset> load_dataset(const EvalOptions& opts) {
  std::string images = opts.images, labels = opts.labels;
  if (!opts.dataset.empty()) {
    if (!images.empty() || !labels.empty()) {
      return Status(StatusCode::kInvalidArgument, "eval: give --dataset or --images/--labels, not both");
    }
    images = fmt::format("{}/t10k-images-idx3-ubyte.gz", kFashionMnistDir);
    labels = fmt::format("{}/t10k-labels-idx1-ubyte.gz", kFashionMnistDir);
  } else if (images.empty() || labels.empty()) {
    return Status(StatusCode::kInvalidArgument, "eval: give --images and --labels, or --dataset=fashion-mnist");
  }
  Dataset d;
  Result<IdxArray> im = read_idx(images);
  if (!im.is_ok()) return std::move(im).take_status();
  Result<IdxArray> lb = read_idx(labels);
  if (!lb.is_ok()) return std::move(lb).take_status();
  d.images = std::move(im).value();
  d.labels = std::move(lb).value();
  if (d.images.dims.size() != 3) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("images '{}' have shape {}, expected [N, rows, cols]", images, dims_to_string(d.images.dims)));
  }
  if (d.labels.dims.size() != 1) {
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("labels '{}' have shape {}, expected [N]", labels, dims_to_string(d.labels.dims)));
  }
  if (d.labels.dims[0] != d.images.dims[0]) {
    return Status(StatusCode::kInvalidArgument, fmt::format("'{}' holds {} images but '{}' holds {} labels", images,
                                                            d.images.dims[0], labels, d.labels.dims[0]));
  }
  d.count = d.images.dims[0];
  d.rows = d.images.dims[1];
  d.cols = d.images.dims[2];
  return d;
}

// The engine input's shape for n images, checked against the image size where the engine fixes it.
Result<Dims> input_dims_for(const Dims& engine_dims, const Dataset& d, int64_t n, const std::string& name) {
  Dims want;
  if (engine_dims.size() == 4) {
    want = {n, 1, d.rows, d.cols};
  } else if (engine_dims.size() == 2) {
    want = {n, d.rows * d.cols};
  } else {
    return Status(StatusCode::kUnsupported, fmt::format("input '{}' has shape {}; eval needs [N,1,H,W] or [N,H*W]",
                                                        name, dims_to_string(engine_dims)));
  }
  for (size_t i = 1; i < want.size(); ++i) {
    if (engine_dims[i] >= 0 && engine_dims[i] != want[i]) {
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("input '{}' has shape {} but the images are {}x{}", name, dims_to_string(engine_dims),
                                d.rows, d.cols));
    }
  }
  return want;
}

// One engine's pass over the data set: top-1, and every prediction (for agreement between engines).
struct EngineEval {
  std::string path, device, precisions;
  int64_t correct = 0, batch = 0;
  double top1 = 0, seconds = 0;
  std::vector<int32_t> predicted;
  nlohmann::ordered_json doc;
};

// "int8, fp32": the distinct layer precisions of an engine, as `kiln inspect` shows them.
std::string engine_precisions(const Engine& engine) {
  std::vector<std::string> seen;
  const auto doc = nlohmann::json::parse(engine.inspect_json(), nullptr, false);
  if (doc.is_discarded()) return "?";
  for (const auto& l : doc["layers"]) {
    if (l.value("view", false)) continue;
    const std::string p = l.value("precision", "?");
    if (std::find(seen.begin(), seen.end(), p) == seen.end()) seen.push_back(p);
  }
  return join(seen, ", ");
}

Result<EngineEval> evaluate_engine(const EvalOptions& opts, const std::string& path) {
  EngineEval result;
  result.path = path;
  Result<std::shared_ptr<Engine>> engine_or = load_engine_file(path);
  if (!engine_or.is_ok()) return std::move(engine_or).take_status();
  const Engine& engine = *engine_or.value();
  result.device = engine.device();
  result.precisions = engine_precisions(engine);
  const std::vector<std::string> inputs = engine_inputs(engine), outputs = engine_outputs(engine);
  if (inputs.size() != 1 || outputs.empty()) {
    return Status(StatusCode::kUnsupported, fmt::format("eval needs an engine with one input and an output (inputs: {})",
                                                        join(inputs, ", ")));
  }
  const std::string& in_name = inputs[0];
  const std::string& out_name = outputs[0];
  if (engine.tensor_dtype(in_name) != DataType::kFloat32 || engine.tensor_dtype(out_name) != DataType::kFloat32) {
    return Status(StatusCode::kUnsupported, "eval needs a float32 input and a float32 output");
  }

  Result<Normalization> norm_or = resolve_normalization(opts, engine);
  if (!norm_or.is_ok()) return std::move(norm_or).take_status();
  const Normalization& norm = norm_or.value();
  if (!norm.defaulted.empty()) {
    report_note(fmt::format("the engine's metadata has no normalization constants and no flag gave them; using {}",
                            join(norm.defaulted, ", ")));
  }
  Result<Dataset> data_or = load_dataset(opts);
  if (!data_or.is_ok()) return std::move(data_or).take_status();
  const Dataset& data = data_or.value();

  // Batch limits: the profile's dim-0 range, or the fixed dim 0 of a static input (padded if needed).
  const Dims engine_dims = engine.tensor_shape(in_name);
  if (engine_dims.empty()) return Status(StatusCode::kUnsupported, fmt::format("input '{}' is a scalar", in_name));
  int64_t batch = opts.batch, min_batch = 1;
  if (engine_dims[0] >= 0) {
    batch = min_batch = engine_dims[0];
  } else {
    Result<ShapeProfile> profile = engine.profile_shapes(in_name);
    if (!profile.is_ok()) return std::move(profile).take_status().with_context(fmt::format("input '{}'", in_name));
    if (!profile->max.empty() && profile->max[0] < batch) {
      report_note(fmt::format("--batch {} clipped to the profile's max batch {}", batch, profile->max[0]));
      batch = profile->max[0];
    }
    if (!profile->min.empty()) min_batch = profile->min[0];
  }

  Result<std::unique_ptr<ExecutionContext>> ctx_or = engine.create_execution_context();
  if (!ctx_or.is_ok()) return std::move(ctx_or).take_status().with_context("creating an execution context");
  ExecutionContext& ctx = *ctx_or.value();
  ctx.set_num_threads(opts.threads);

  std::array<float, 256> lut;  // pixel value -> normalized input
  for (int p = 0; p < 256; ++p) lut[p] = static_cast<float>((p * norm.scale - norm.mean) / norm.std);

  const int64_t pixels = data.rows * data.cols;
  int64_t correct = 0, bound_n = -1;
  Bindings io;
  std::unique_ptr<Executor> exec;  // after io: it points into io's buffers
  ProgressBar bar("Evaluating");
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < data.count; first += batch) {
    const int64_t n = std::min(batch, data.count - first);
    const int64_t run_n = std::max(n, min_batch);  // pad when the profile's minimum is larger
    if (run_n != bound_n) {
      Result<Dims> dims = input_dims_for(engine_dims, data, run_n, in_name);
      if (!dims.is_ok()) return std::move(dims).take_status();
      exec.reset();
      Result<Bindings> b = bind_io(engine, ctx, {{in_name, dims.value()}}, "--batch");
      if (!b.is_ok()) return std::move(b).take_status();
      io = std::move(b).value();
      if (io.outputs[0].dtype != DataType::kFloat32)
        return Status(StatusCode::kUnsupported, fmt::format("output '{}' is {}; eval needs float32 logits",
                                                            io.outputs[0].name, dtype_name(io.outputs[0].dtype)));
      Result<std::unique_ptr<Executor>> x = Executor::create(engine, ctx, io, {});
      if (!x.is_ok()) return std::move(x).take_status();
      exec = std::move(x).value();
      bound_n = run_n;
    }
    float* x = reinterpret_cast<float*>(io.inputs[0].buffer.data());
    const uint8_t* px = data.images.data.data() + first * pixels;
    for (int64_t i = 0; i < n * pixels; ++i) x[i] = lut[px[i]];
    Status s = exec->upload_inputs();
    if (s.is_ok()) s = ctx.execute();
    if (s.is_ok()) s = exec->fetch_outputs();
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("images {}..{}", first, first + n - 1));

    const BoundTensor& out = io.outputs[0];
    if (out.dims.empty() || out.dims[0] != run_n) {
      return Status(StatusCode::kUnsupported, fmt::format("output '{}' has shape {}; eval needs [N, classes]", out.name,
                                                          dims_to_string(out.dims)));
    }
    const int64_t classes = volume(out.dims) / run_n;
    const float* y = reinterpret_cast<const float*>(out.buffer.data());
    for (int64_t i = 0; i < n; ++i) {
      const float* row = y + i * classes;
      const int64_t best = std::max_element(row, row + classes) - row;
      correct += best == data.labels.data[static_cast<size_t>(first + i)];
      result.predicted.push_back(static_cast<int32_t>(best));
    }
    bar.update(static_cast<double>(first + n) / data.count, fmt::format("{}/{} images", first + n, data.count));
  }
  bar.finish();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double top1 = static_cast<double>(correct) / data.count;

  fmt::print("Engine: {} (input '{}', output '{}')\n", path, in_name, out_name);
  fmt::print("Preprocessing: x = (pixel * {} - {}) / {}\n", norm.scale, norm.mean, norm.std);
  fmt::print("Evaluated {} images in {:.3f} s ({:.0f} images/s, batch {})\n", data.count, seconds,
             seconds > 0 ? data.count / seconds : 0.0, batch);
  fmt::print("Top-1 accuracy: {:.2f}% ({}/{})\n", top1 * 100.0, correct, data.count);
  result.correct = correct;
  result.top1 = top1;
  result.seconds = seconds;
  result.batch = batch;
  result.doc = {{"engine", path},
                {"device", result.device},
                {"precisions", result.precisions},
                {"images", opts.dataset.empty() ? opts.images : opts.dataset},
                {"count", data.count},
                {"correct", correct},
                {"top1", top1},
                {"batch", batch},
                {"threads", opts.threads},
                {"seconds", seconds},
                {"scale", norm.scale},
                {"mean", norm.mean},
                {"std", norm.std}};
  return result;
}

Status eval_checked(const EvalOptions& opts) {
  std::vector<EngineEval> evals;
  for (const std::string& path : opts.load_engines) {
    if (evals.size()) fmt::print("\n");
    Result<EngineEval> e = evaluate_engine(opts, path);
    if (!e.is_ok()) return std::move(e).take_status();
    evals.push_back(std::move(e).value());
  }
  nlohmann::ordered_json doc = evals.front().doc;
  if (evals.size() > 1) {
    // Argmax agreement with the first engine (the reference, e.g. FP32), image by image.
    fmt::print("\n{:<40} {:<6} {:<18} {:>8} {:>22}\n", "engine", "device", "precisions", "top-1",
               "agreement with first");
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (EngineEval& e : evals) {
      int64_t agree = 0;
      for (size_t i = 0; i < e.predicted.size() && i < evals.front().predicted.size(); ++i)
        agree += e.predicted[i] == evals.front().predicted[i];
      const double agreement = e.predicted.empty() ? 0.0 : static_cast<double>(agree) / e.predicted.size();
      fmt::print("{:<40} {:<6} {:<18} {:>7.2f}% {:>21.2f}%\n", e.path, e.device, e.precisions, e.top1 * 100,
                 agreement * 100);
      e.doc["agreement_with_first"] = agreement;
      list.push_back(e.doc);
    }
    doc = {{"engines", list}, {"count", evals.front().doc["count"]}};
  }
  if (!opts.export_json.empty()) {
    Status s = write_text_file(opts.export_json, doc.dump(2) + "\n");
    if (!s.is_ok()) return std::move(s).with_context("--exportJSON");
  }
  return Status::ok();
}

}  // namespace

int run_eval(const EvalOptions& opts) {
  Status s = eval_checked(opts);
  if (!s.is_ok()) return report_error(s);
  return kExitOk;
}

}  // namespace kiln::cli
