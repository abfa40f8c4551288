#include "data/idx_reader.h"

#include <unistd.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace kiln::data {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          (std::string("kiln_idx_") + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<uint8_t> idx_bytes(uint8_t type, const std::vector<uint32_t>& dims, size_t data_bytes) {
  std::vector<uint8_t> b = {0, 0, type, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims) {
    b.push_back(static_cast<uint8_t>(d >> 24));
    b.push_back(static_cast<uint8_t>(d >> 16));
    b.push_back(static_cast<uint8_t>(d >> 8));
    b.push_back(static_cast<uint8_t>(d));
  }
  for (size_t i = 0; i < data_bytes; ++i) b.push_back(static_cast<uint8_t>(i * 7));
  return b;
}

void write_plain(const std::string& path, const std::vector<uint8_t>& b) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  std::fwrite(b.data(), 1, b.size(), f);
  std::fclose(f);
}

void write_gzip(const std::string& path, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  gzclose(f);
}

class IdxReader : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const auto& p : paths_) std::filesystem::remove(p);
  }
  std::string path(const std::string& name) {
    paths_.push_back(temp_path(name));
    return paths_.back();
  }
  std::vector<std::string> paths_;
};

TEST_F(IdxReader, ReadsGzipImages) {
  const std::string p = path("images.gz");
  write_gzip(p, idx_bytes(0x08, {3, 2, 4}, 24));
  auto r = read_idx(p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->dims, (std::vector<int64_t>{3, 2, 4}));
  ASSERT_EQ(r->data.size(), 24u);
  EXPECT_EQ(r->data[5], 35);
}

TEST_F(IdxReader, ReadsPlainLabels) {
  const std::string p = path("labels");
  write_plain(p, idx_bytes(0x08, {5}, 5));
  auto r = read_idx(p);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->dims, (std::vector<int64_t>{5}));
  EXPECT_EQ(r->data.size(), 5u);
}

TEST_F(IdxReader, MissingFile) {
  auto r = read_idx("/nonexistent/kiln/file.idx");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("/nonexistent/kiln/file.idx"), std::string::npos);
}

TEST_F(IdxReader, BadMagic) {
  const std::string p = path("badmagic");
  auto b = idx_bytes(0x08, {2}, 2);
  b[0] = 0x1f;
  b[1] = 0x00;
  write_plain(p, b);
  auto r = read_idx(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
}

TEST_F(IdxReader, UnsupportedType) {
  const std::string p = path("floats");
  write_plain(p, idx_bytes(0x0D, {2}, 8));
  auto r = read_idx(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnsupported);
}

TEST_F(IdxReader, TruncatedData) {
  const std::string p = path("short.gz");
  write_gzip(p, idx_bytes(0x08, {10, 28, 28}, 100));
  auto r = read_idx(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
}

TEST_F(IdxReader, TruncatedHeader) {
  const std::string p = path("header");
  auto b = idx_bytes(0x08, {10, 28, 28}, 0);
  b.resize(9);
  write_plain(p, b);
  EXPECT_FALSE(read_idx(p).is_ok());
}

TEST_F(IdxReader, TrailingBytes) {
  const std::string p = path("trailing");
  auto b = idx_bytes(0x08, {4}, 5);
  write_plain(p, b);
  auto r = read_idx(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("trailing"), std::string::npos);
}

TEST_F(IdxReader, ZeroDimsAndZeroSize) {
  const std::string p = path("zero");
  write_plain(p, idx_bytes(0x08, {}, 0));
  EXPECT_FALSE(read_idx(p).is_ok());
  const std::string q = path("zerodim");
  write_plain(q, idx_bytes(0x08, {0, 28}, 0));
  EXPECT_FALSE(read_idx(q).is_ok());
}

TEST_F(IdxReader, AbsurdHeaderIsAnErrorNotAnAllocation) {
  const std::string p = path("huge");
  write_plain(p, idx_bytes(0x08, {0xffffffffu, 0xffffffffu}, 0));
  auto r = read_idx(p);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("4 GiB"), std::string::npos);
}

TEST_F(IdxReader, CorruptGzipStream) {
  const std::string p = path("corrupt.gz");
  const std::string gz = path("good.gz");
  write_gzip(gz, idx_bytes(0x08, {64, 64}, 64 * 64));
  std::FILE* f = std::fopen(gz.c_str(), "rb");
  std::vector<uint8_t> bytes(1 << 16);
  bytes.resize(std::fread(bytes.data(), 1, bytes.size(), f));
  std::fclose(f);
  bytes.resize(bytes.size() / 2);  // cut the deflate stream
  write_plain(p, bytes);
  EXPECT_FALSE(read_idx(p).is_ok());
}

}  // namespace
}  // namespace kiln::data
