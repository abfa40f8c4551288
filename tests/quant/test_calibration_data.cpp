#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "data/calibration_data.h"
#include "data/idx_reader.h"
#include "data/npy_reader.h"

namespace kiln::data {
namespace {

namespace fs = std::filesystem;

std::string idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::string b = {0, 0, 0x08, static_cast<char>(dims.size())};
  for (uint32_t d : dims) {
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<char>(d >> shift));
  }
  return b + std::string(data.begin(), data.end());
}

// A .npy file image: magic, version, header length (2 bytes for v1, 4 for v2/v3), the dict padded to a
// multiple of 64 bytes, then the data.
std::string npy_bytes(const std::string& descr, const std::string& shape, const std::string& data, int major = 1,
                      bool fortran = false) {
  std::string dict =
      fmt::format("{{'descr': '{}', 'fortran_order': {}, 'shape': {}, }}", descr, fortran ? "True" : "False", shape);
  const size_t prefix = major == 1 ? 10 : 12;
  dict.append(63 - (prefix + dict.size()) % 64, ' ');
  dict += '\n';
  std::string b = "\x93NUMPY";
  b += static_cast<char>(major);
  b += '\0';
  for (size_t i = 0; i < prefix - 8; ++i) b += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
  return b + dict + data;
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class CalibData : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("kiln_calib_data_{}_{}", ::getpid(),
                                                   ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string write_gzip(const std::string& name, const std::string& bytes) {
    const std::string path = (dir_ / name).string();
    gzFile f = gzopen(path.c_str(), "wb");
    EXPECT_NE(f, nullptr);
    EXPECT_EQ(gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size())), static_cast<int>(bytes.size()));
    gzclose(f);
    return path;
  }

  fs::path dir_;
};

// Every batch of `batches` concatenated, checking the batch sizes on the way.
std::vector<float> read_all(CalibrationBatches& b, int64_t batch, std::vector<int64_t>* row_counts) {
  std::vector<float> all, out;
  int64_t rows = 0;
  while (b.next(batch, &out, &rows)) {
    EXPECT_EQ(out.size(), static_cast<size_t>(rows * b.sample_volume()));
    all.insert(all.end(), out.begin(), out.end());
    row_counts->push_back(rows);
  }
  EXPECT_EQ(rows, 0);
  return all;
}

void expect_error(const Result<CalibrationBatches>& r, const std::vector<std::string>& fragments) {
  ASSERT_FALSE(r.is_ok());
  for (const auto& f : fragments) {
    EXPECT_NE(r.status().to_string().find(f), std::string::npos)
        << "'" << r.status().to_string() << "' lacks '" << f << "'";
  }
}

TEST_F(CalibData, IdxIsNormalizedAndBatched) {
  std::vector<uint8_t> pixels(5 * 2 * 3);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 8);
  const std::string plain = write("images-idx3-ubyte", idx_bytes({5, 2, 3}, pixels));
  const std::string gz = write_gzip("images-idx3-ubyte.gz", idx_bytes({5, 2, 3}, pixels));
  const Normalization norm{1.0 / 255.0, 0.25, 0.5};
  for (const std::string& path : {plain, gz}) {
    auto b = CalibrationBatches::open(path, {1, 2, 3}, norm);
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    EXPECT_EQ(b->samples(), 5);
    std::vector<int64_t> rows;
    const std::vector<float> all = read_all(*b, 2, &rows);
    EXPECT_EQ(rows, (std::vector<int64_t>{2, 2, 1}));
    ASSERT_EQ(all.size(), pixels.size());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_FLOAT_EQ(all[i], static_cast<float>((pixels[i] / 255.0 - 0.25) / 0.5)) << i;
    }
    b->rewind();
    EXPECT_EQ(read_all(*b, 100, &rows), all);
  }
}

TEST_F(CalibData, IdxFlatSampleShape) {
  const std::string path = write("imgs", idx_bytes({4, 2, 2}, std::vector<uint8_t>(16, 255)));
  auto b = CalibrationBatches::open(path, {4}, Normalization{});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 4);
  std::vector<float> out;
  int64_t rows = 0;
  ASSERT_TRUE(b->next(3, &out, &rows));
  EXPECT_EQ(rows, 3);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
}

TEST_F(CalibData, NpyDtypesAndVersions) {
  const std::vector<float> f32 = {1.5f, -2.0f, 0.25f, 3.0f, 4.0f, 5.0f};
  const std::vector<double> f64 = {1.5, -2.0, 0.25, 3.0, 4.0, 5.0};
  const std::vector<int64_t> i64 = {1, -2, 0, 3, 4, 5};
  const std::vector<uint8_t> u8 = {1, 2, 0, 3, 4, 255};
  struct Case {
    std::string descr, data;
    int major;
    std::vector<float> expected;
  };
  const Case cases[] = {
      {"<f4", raw_bytes(f32), 1, f32},
      {"<f8", raw_bytes(f64), 2, f32},
      {"<i8", raw_bytes(i64), 3, {1, -2, 0, 3, 4, 5}},
      {"|u1", raw_bytes(u8), 1, {1, 2, 0, 3, 4, 255}},
  };
  for (const Case& c : cases) {
    const std::string path = write("a.npy", npy_bytes(c.descr, "(3, 2)", c.data, c.major));
    auto npy = read_npy(path);
    ASSERT_TRUE(npy.is_ok()) << npy.status().to_string();
    EXPECT_EQ(npy->dims, (std::vector<int64_t>{3, 2}));
    EXPECT_EQ(npy->dtype, c.descr);
    EXPECT_EQ(npy->data, c.expected) << c.descr;

    // Used as they are (no normalization), 3 samples of 2.
    auto b = CalibrationBatches::open(path, {2}, Normalization{});
    ASSERT_TRUE(b.is_ok()) << b.status().to_string();
    std::vector<int64_t> rows;
    EXPECT_EQ(read_all(*b, 2, &rows), c.expected);
    EXPECT_EQ(rows, (std::vector<int64_t>{2, 1}));
  }
}

TEST_F(CalibData, NpyOfExactlyTheSampleShapeIsOneSample) {
  const std::vector<float> v = {1, 2, 3, 4, 5, 6};
  const std::string path = write("one.npy", npy_bytes("<f4", "(1, 2, 3)", raw_bytes(v)));
  auto b = CalibrationBatches::open(path, {1, 2, 3}, Normalization{});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 1);
  // [N, ...] whose trailing dims hold one sample: here N = 2 samples of [3].
  b = CalibrationBatches::open(write("two.npy", npy_bytes("<f4", "(2, 3)", raw_bytes(v))), {1, 3}, Normalization{});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 2);
}

TEST_F(CalibData, RawFloatFiles) {
  const std::vector<float> v = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f};
  const std::string path = write("input.bin", raw_bytes(v));
  auto b = CalibrationBatches::open(path, {2, 2}, Normalization{});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 2);
  std::vector<int64_t> rows;
  EXPECT_EQ(read_all(*b, 8, &rows), v);

  auto bad = CalibrationBatches::open(path, {3}, Normalization{});
  expect_error(bad, {path, "32 bytes", "12 bytes", "[3]"});
  expect_error(CalibrationBatches::open(write("empty.raw", ""), {3}, Normalization{}), {"empty.raw", "0 bytes"});
}

TEST_F(CalibData, SeveralFilesAndSlices) {
  std::vector<uint8_t> pixels(3 * 4);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i);
  const std::string idx = write("a-images-idx3-ubyte", idx_bytes({3, 2, 2}, pixels));
  const std::vector<float> v = {100, 101, 102, 103, 104, 105, 106, 107};
  const std::string raw = write("b.raw", raw_bytes(v));
  auto b = CalibrationBatches::open(idx + " , " + raw, {4}, Normalization{1.0, 0.0, 1.0});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  ASSERT_EQ(b->samples(), 5);
  std::vector<float> expected(pixels.begin(), pixels.end());
  expected.insert(expected.end(), v.begin(), v.end());
  std::vector<int64_t> rows;
  EXPECT_EQ(read_all(*b, 2, &rows), expected);
  EXPECT_EQ(rows, (std::vector<int64_t>{2, 2, 1}));

  // A slice across the file boundary: samples 2..3 (the IDX's last, the raw file's first).
  auto s = b->slice(2, 2);
  ASSERT_TRUE(s.is_ok()) << s.status().to_string();
  EXPECT_EQ(s->samples(), 2);
  rows.clear();
  EXPECT_EQ(read_all(*s, 10, &rows), std::vector<float>(expected.begin() + 8, expected.begin() + 16));
  // A slice of a slice, and an empty one.
  auto ss = s->slice(1, 1);
  ASSERT_TRUE(ss.is_ok());
  rows.clear();
  EXPECT_EQ(read_all(*ss, 10, &rows), std::vector<float>(v.begin(), v.begin() + 4));
  auto empty = b->slice(5, 0);
  ASSERT_TRUE(empty.is_ok());
  std::vector<float> out;
  int64_t n = -1;
  EXPECT_FALSE(empty->next(4, &out, &n));
  EXPECT_EQ(n, 0);
  for (auto [first, count] : {std::pair<int64_t, int64_t>{-1, 1}, {0, 6}, {6, 0}, {4, 2}, {0, -1}, {1, INT64_MAX}}) {
    auto r = b->slice(first, count);
    ASSERT_FALSE(r.is_ok()) << first << " " << count;
    EXPECT_EQ(r.status().code(), StatusCode::kOutOfRange);
  }
}

TEST_F(CalibData, WrongShapeNamesBothShapes) {
  const std::string idx = write("imgs-idx3-ubyte", idx_bytes({2, 28, 28}, std::vector<uint8_t>(2 * 784)));
  expect_error(CalibrationBatches::open(idx, {1, 32, 32}, Normalization{}),
               {idx, "[2, 28, 28]", "784 values per sample", "[1, 32, 32]", "1024 values"});
  const std::string npy = write("x.npy", npy_bytes("<f4", "(2, 5)", std::string(40, '\0')));
  expect_error(CalibrationBatches::open(npy, {4}, Normalization{}), {npy, "[2, 5]", "[4]"});
  const std::string labels = write("labels-idx1-ubyte", idx_bytes({3}, {1, 2, 3}));
  expect_error(CalibrationBatches::open(labels, {1}, Normalization{}), {labels, "label file"});
}

TEST_F(CalibData, BadSpecsAndArguments) {
  const std::string raw = write("a.bin", std::string(16, '\0'));
  expect_error(CalibrationBatches::open("", {4}, Normalization{}), {"empty file name"});
  expect_error(CalibrationBatches::open(raw + ",", {4}, Normalization{}), {"empty file name"});
  expect_error(CalibrationBatches::open((dir_ / "missing.bin").string(), {4}, Normalization{}),
               {"missing.bin", "no such file"});
  expect_error(CalibrationBatches::open(dir_.string(), {4}, Normalization{}), {"is a directory"});
  expect_error(CalibrationBatches::open(raw, {-1, 4}, Normalization{}), {"[-1, 4]"});
  expect_error(CalibrationBatches::open(raw, {1 << 20, 1 << 20, 1 << 20}, Normalization{}), {"2^31"});
  expect_error(CalibrationBatches::open(raw, {4}, Normalization{1.0, 0.0, 0.0}), {"std 0"});
}

TEST_F(CalibData, NpyErrorsNameTheFileAndProblem) {
  const std::string f32(24, '\0');
  struct Case {
    std::string name, bytes, fragment;
  };
  const std::string good = npy_bytes("<f4", "(2, 3)", f32);
  const Case cases[] = {
      {"fortran.npy", npy_bytes("<f4", "(2, 3)", f32, 1, true), "fortran_order is True"},
      {"truncated_data.npy", good.substr(0, good.size() - 1), "truncated data"},
      {"truncated_header.npy", good.substr(0, 40), "truncated header"},
      {"tiny.npy", good.substr(0, 7), "bad magic"},
      {"magic.npy", "NUMPY" + good.substr(5), "bad magic"},
      {"big_endian.npy", npy_bytes(">f4", "(2, 3)", f32), "big-endian"},
      {"complex.npy", npy_bytes("<c8", "(2, 3)", std::string(48, '\0')), "'<c8' is not supported"},
      {"object.npy", npy_bytes("|O", "(2, 3)", f32), "'|O' is not supported"},
      {"shape.npy", npy_bytes("<f4", "(2, x)", f32), "'shape'"},
      {"negative.npy", npy_bytes("<f4", "(-2, 3)", f32), "'shape'"},
      {"huge.npy", npy_bytes("<f4", "(4294967295, 4294967295)", f32), "2^32"},
      {"trailing.npy", good + "x", "trailing"},
      {"version.npy", npy_bytes("<f4", "(2, 3)", f32, 9), "version 9"},
  };
  for (const Case& c : cases) {
    const std::string path = write(c.name, c.bytes);
    auto r = read_npy(path);
    ASSERT_FALSE(r.is_ok()) << c.name;
    EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(c.fragment), std::string::npos) << r.status().message();
    // Through the batches too (the .npy name picks the reader).
    expect_error(CalibrationBatches::open(path, {3}, Normalization{}), {path, c.fragment});
  }
}

TEST_F(CalibData, NpyRecognizedByContent) {
  const std::vector<float> v = {1, 2, 3};
  const std::string path = write("sample_without_extension", npy_bytes("<f4", "(3,)", raw_bytes(v)));
  auto b = CalibrationBatches::open(path, {3}, Normalization{});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 1);
}

TEST(CalibDataLabels, LabelsPathForImages) {
  EXPECT_EQ(labels_path_for_images("/d/train-images-idx3-ubyte.gz"), "/d/train-labels-idx1-ubyte.gz");
  EXPECT_EQ(labels_path_for_images("t10k-images-idx3-ubyte"), "t10k-labels-idx1-ubyte");
  EXPECT_EQ(labels_path_for_images("/d/train-images.idx3-ubyte"), "/d/train-labels.idx1-ubyte");
  EXPECT_EQ(labels_path_for_images("/d/images.npy"), "");
  EXPECT_EQ(labels_path_for_images("/d/train-images-idx3-ubyte.gz.bak"), "");
  EXPECT_EQ(labels_path_for_images(""), "");
}

TEST(CalibDataLabels, FashionMnistTrainSet) {
  const std::string dir = "/usr/share/datasets/fashion-mnist";
  const std::string images = dir + "/train-images-idx3-ubyte.gz";
  if (!fs::exists(images)) GTEST_SKIP() << images << " is not installed";
  auto b = CalibrationBatches::open(images, {1, 28, 28}, Normalization{1.0 / 255.0, 0.2860, 0.3530});
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ(b->samples(), 60000);
  auto labels = read_idx_labels(labels_path_for_images(images));
  ASSERT_TRUE(labels.is_ok()) << labels.status().to_string();
  EXPECT_EQ(labels->size(), 60000u);
  // The held-out tail: normalized values span [-mean/std, (1-mean)/std].
  auto tail = b->slice(59000, 1000);
  ASSERT_TRUE(tail.is_ok());
  std::vector<float> out;
  int64_t rows = 0;
  ASSERT_TRUE(tail->next(1000, &out, &rows));
  EXPECT_EQ(rows, 1000);
  const auto [lo, hi] = std::minmax_element(out.begin(), out.end());
  EXPECT_NEAR(*lo, -0.2860 / 0.3530, 1e-5);
  EXPECT_NEAR(*hi, (1 - 0.2860) / 0.3530, 1e-5);
  EXPECT_FALSE(read_idx_labels(images).is_ok());  // images are not labels
}

}  // namespace
}  // namespace kiln::data
