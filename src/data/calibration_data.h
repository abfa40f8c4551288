// Calibration (and held-out evaluation) data for ONE model input: float32 batches of a fixed per-sample
// shape, from a spec naming one or more files, comma-separated. Each file is
//   - IDX (MNIST layout, plain or .gz): uint8 [N, ...], normalized as x = (p * scale - mean) / std;
//   - .npy: [N, ...] with trailing dims holding one sample, or exactly the per-sample shape (one
//     sample); values used as they are (converted to float32);
//   - raw (.bin, .raw): little-endian float32 samples back to back, used as they are.
// Other names are recognized by content (gzip or IDX magic, npy magic), else read as raw. Paths may not
// contain commas.
// Memory: everything is loaded at open. IDX data stays uint8 and is normalized per batch (Fashion-MNIST
// train: 47 MB); npy and raw data are held as float32 (4 bytes per value). Slices share the loaded data.
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::data {

// The builder takes it from the model's metadata keys input_scale, normalize_mean and normalize_std.
struct Normalization {
  double scale = 1.0 / 255.0, mean = 0.0, std = 1.0;
};

// The model's preprocessing from its metadata keys input_scale, normalize_mean and normalize_std (missing
// keys keep the defaults); a value that is not a number is an error naming the key.
Result<Normalization> normalization_from_metadata(const std::map<std::string, std::string>& metadata);

class CalibrationBatches {
 public:
  // Errors name the file and what is wrong with it; a sample-size mismatch names the file's shape and
  // the per-sample shape the model input expects.
  static Result<CalibrationBatches> open(const std::string& spec, const Dims& per_sample_shape,
                                         const Normalization& normalization);

  int64_t samples() const { return samples_; }
  const Dims& sample_shape() const { return sample_shape_; }
  int64_t sample_volume() const { return sample_volume_; }

  // The next up to `batch` samples (at least 1) as [rows, sample_shape...] float32 into *out (resized);
  // false, with *rows = 0, when all have been read. The last batch may be short.
  bool next(int64_t batch, std::vector<float>* out, int64_t* rows);
  void rewind() { cursor_ = 0; }
  // Samples [first, first + count) into out (count * sample_volume() floats); the range must be valid.
  void copy_samples(int64_t first, int64_t count, float* out) const;

  // Samples [first, first + count) as batches of their own (rewound), sharing the loaded data: calibrate
  // on the first samples, evaluate on later ones.
  Result<CalibrationBatches> slice(int64_t first, int64_t count) const;

 private:
  struct Part {  // one file's samples [first, first + count)
    std::string path;
    std::shared_ptr<const std::vector<uint8_t>> pixels;  // IDX, normalized through pixel_values_
    std::shared_ptr<const std::vector<float>> values;    // npy, raw
    int64_t first = 0, count = 0;
  };
  Status add_file(const std::string& path);

  std::vector<Part> parts_;
  Dims sample_shape_;
  int64_t sample_volume_ = 0;
  std::array<float, 256> pixel_values_{};  // the normalized value of each uint8 pixel
  int64_t samples_ = 0;
  int64_t cursor_ = 0;
};

}  // namespace kiln::data
