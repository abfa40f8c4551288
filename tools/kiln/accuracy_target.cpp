#include "accuracy_target.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <unistd.h>

#include <fmt/format.h>

#include "cli_common.h"
#include "data/calibration_data.h"
#include "data/idx_reader.h"

namespace kiln::cli {
namespace {

struct HeldOut {
  data::CalibrationBatches images;
  std::vector<uint8_t> labels;
};

// Held-out samples: those of --accuracyData (default: the calibration file) after the ones calibration used.
Result<HeldOut> open_held_out(const BuildFlags& flags, const Engine& fp32) {
  const std::string images = flags.accuracy_data.empty() ? flags.calib_data : flags.accuracy_data;
  const std::string labels = data::labels_path_for_images(images);
  if (images.empty() || labels.empty() || !std::filesystem::exists(labels))
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("--accuracyTarget needs labelled held-out data: IDX images ('{}') with a labels file "
                              "beside them ('{}'); give --accuracyData=IMAGES", images, labels.empty() ? "?" : labels));
  const std::string input = engine_inputs(fp32).at(0);
  Dims sample = fp32.tensor_shape(input);
  sample.erase(sample.begin());
  auto norm = data::normalization_from_metadata(fp32.metadata());
  if (!norm.is_ok()) return norm.status();
  auto all = data::CalibrationBatches::open(images, sample, *norm);
  if (!all.is_ok()) return std::move(all).take_status().with_context("--accuracyData");
  auto y = data::read_idx_labels(labels);
  if (!y.is_ok()) return y.status();
  // Skip the samples calibration saw when evaluating on the calibration file itself.
  const int64_t first = flags.accuracy_data.empty()
                            ? std::min<int64_t>(all->samples(), int64_t{flags.calib_batches} * flags.calib_batch_size)
                            : 0;
  const int64_t count = std::min<int64_t>(all->samples() - first, flags.accuracy_samples);
  if (count <= 0 || static_cast<int64_t>(y->size()) < first + count)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("no held-out samples left in '{}' ({} samples, {} labels, calibration used the first {})",
                              images, all->samples(), y->size(), first));
  auto slice = all->slice(first, count);
  if (!slice.is_ok()) return slice.status();
  return HeldOut{std::move(slice).value(), std::vector<uint8_t>(y->begin() + first, y->begin() + first + count)};
}

struct Measured {
  double top1 = 0;   // percent
  double ms = 0;     // median infer() latency at the profile's opt batch
};

Result<Measured> measure(const Engine& engine, HeldOut& data) {
  const std::string input = engine_inputs(engine).at(0), output = engine_outputs(engine).at(0);
  auto ctx = engine.create_execution_context();
  if (!ctx.is_ok()) return ctx.status();
  auto prof = engine.profile_shapes(input);
  const int64_t max_batch = prof.is_ok() ? prof->max[0] : engine.tensor_shape(input)[0];
  const int64_t opt_batch = prof.is_ok() ? prof->opt[0] : max_batch;
  Measured m;
  int64_t correct = 0, seen = 0;
  std::vector<float> x;
  int64_t rows = 0;
  data.images.rewind();
  while (data.images.next(std::min<int64_t>(max_batch, 1024), &x, &rows)) {
    Dims shape = data.images.sample_shape();
    shape.insert(shape.begin(), rows);
    auto out = (*ctx)->infer({{input, HostTensor::from_floats(shape, x)}});
    if (!out.is_ok()) return out.status();
    const HostTensor& y = out->at(output);
    const int64_t classes = y.shape.back();
    for (int64_t i = 0; i < rows; ++i) {
      const float* row = y.data<float>() + i * classes;
      correct += std::max_element(row, row + classes) - row == data.labels[seen + i];
    }
    seen += rows;
  }
  m.top1 = 100.0 * correct / std::max<int64_t>(seen, 1);
  // Speed at the opt batch, end to end through infer() (host data in and out), median of 25 runs.
  Dims shape = data.images.sample_shape();
  shape.insert(shape.begin(), opt_batch);
  std::vector<float> batch(static_cast<size_t>(volume(shape)));
  data.images.copy_samples(0, std::min<int64_t>(opt_batch, data.images.samples()), batch.data());
  std::map<std::string, HostTensor> in{{input, HostTensor::from_floats(shape, batch)}};
  std::vector<double> times;
  for (int i = 0; i < 30; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto out = (*ctx)->infer(in);
    if (!out.is_ok()) return out.status();
    if (i >= 5) times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  m.ms = times[times.size() / 2];
  return m;
}

}  // namespace

Result<BuiltEngine> build_with_accuracy_target(const BuildFlags& flags) {
  if (!flags.int8) return Status(StatusCode::kInvalidArgument, "--accuracyTarget needs --int8");
  BuildFlags fp32_flags = flags;
  fp32_flags.int8 = false;
  fp32_flags.calib_data.clear();
  fp32_flags.calib_cache.clear();
  fp32_flags.layer_precisions.clear();
  fp32_flags.save_engine.clear();
  auto fp32 = build_from_flags(fp32_flags);
  if (!fp32.is_ok()) return std::move(fp32).take_status().with_context("FP32 reference engine");
  auto held = open_held_out(flags, *fp32->engine);
  if (!held.is_ok()) return held.status();
  auto base = measure(*fp32->engine, *held);
  if (!base.is_ok()) return base.status();
  fmt::print("[I] Accuracy target: top-1 drop <= {} points on {} held-out samples; FP32 top-1 {:.2f}%, {:.3f} ms/batch\n",
             flags.accuracy_target, held->labels.size(), base->top1, base->ms);

  // Scales are computed once; every trial build reads them from the cache.
  BuildFlags trial = flags;
  trial.save_engine.clear();
  std::string temp_cache;
  if (trial.calib_cache.empty()) {
    temp_cache = (std::filesystem::temp_directory_path() / fmt::format("kiln-accuracy-{}.cache", ::getpid())).string();
    std::filesystem::remove(temp_cache);
    trial.calib_cache = temp_cache;
  }
  struct Cleanup {
    std::string path;
    ~Cleanup() {
      if (!path.empty()) std::filesystem::remove(path);
    }
  } cleanup{temp_cache};

  auto current = build_from_flags(trial);
  if (!current.is_ok()) return current.status();
  auto score = measure(*current->engine, *held);
  if (!score.is_ok()) return score.status();
  fmt::print("[I] INT8: top-1 {:.2f}% (drop {:.2f}), {:.3f} ms/batch\n", score->top1, base->top1 - score->top1, score->ms);
  const Measured first_int8 = *score;
  std::vector<std::string> moved;
  while (base->top1 - score->top1 > flags.accuracy_target) {
    const std::vector<std::string> candidates = current->summary.int8_layer_names;
    if (candidates.empty()) break;
    // Try each remaining INT8 layer in FP32; keep the move that recovers the most accuracy.
    std::optional<std::pair<BuiltEngine, Measured>> best;
    std::string best_layer;
    for (const std::string& layer : candidates) {
      BuildFlags f = trial;
      f.layer_precisions.push_back(layer + ":fp32");
      auto b = build_from_flags(f);
      if (!b.is_ok()) return b.status();
      auto m = measure(*b->engine, *held);
      if (!m.is_ok()) return m.status();
      fmt::print("[I]   trying {} in FP32: top-1 {:.2f}%\n", layer, m->top1);
      if (!best || m->top1 > best->second.top1) {
        best.emplace(std::move(b).value(), *m);
        best_layer = layer;
      }
    }
    trial.layer_precisions.push_back(best_layer + ":fp32");
    moved.push_back(best_layer);
    fmt::print("[I] Moved {} to FP32: top-1 {:.2f}% -> {:.2f}%, {:.3f} -> {:.3f} ms/batch\n", best_layer, score->top1,
               best->second.top1, score->ms, best->second.ms);
    current = std::move(best->first);
    score = best->second;
  }
  const double drop = base->top1 - score->top1;
  fmt::print("[I] Accuracy target {}: top-1 drop {:.2f} points; {} moved to FP32{}; speed {:.3f} ms/batch "
             "(INT8 everywhere {:.3f}, FP32 {:.3f})\n",
             drop <= flags.accuracy_target ? "met" : "NOT met", drop, moved.size(),
             moved.empty() ? "" : " (" + join(moved, ", ") + ")", score->ms, first_int8.ms, base->ms);
  if (drop > flags.accuracy_target)
    return Status(StatusCode::kRuntimeError,
                  fmt::format("--accuracyTarget={} not met: the top-1 drop is still {:.2f} points with every layer "
                              "in FP32", flags.accuracy_target, drop));
  if (!flags.save_engine.empty()) {
    Status s = write_binary_file(flags.save_engine, current->bytes.data(), current->bytes.size());
    if (!s.is_ok()) return std::move(s).with_context("--saveEngine");
  }
  return current;
}

}  // namespace kiln::cli
