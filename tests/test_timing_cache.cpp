// TimingCache file handling (no GPU needed: the cache is plain data).
#ifdef KILN_WITH_CUDA
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "backends/cuda/timing_cache.h"

namespace kiln::cuda {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("kiln_tc_" + std::to_string(::getpid()) + "_" + name)).string();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

TimingKey sample_key() {
  TimingKey k;
  k.gpu = "NVIDIA H100 80GB HBM3";
  k.cc = "9.0";
  k.library = "cublasLt 130000";
  k.kernel = "cuda.f16.gemm.cublaslt";
  k.precision = "fp16";
  k.dtypes = "float16,float16->float16";
  k.m = 64;
  k.n = 128;
  k.k = 784;
  k.layout = "W:T X:N";
  k.epilogue = "RELU_BIAS";
  return k;
}

TEST(TimingCache, RoundTrip) {
  const std::string path = temp_path("roundtrip.json");
  TimingCache c;
  TimingEntry e;
  e.data = {1, -2, INT64_MIN, INT64_MAX, 0, 5, 6, 7};
  e.ms = 0.0125;
  e.tactic = "algo 6 tile 128x128 stages 64x4";
  const std::string key = sample_key().to_string();
  c.store(key, e);
  ASSERT_TRUE(c.save(path).is_ok());

  TimingCache d;
  EXPECT_EQ(d.load(path), "");
  ASSERT_EQ(d.size(), 1u);
  auto got = d.lookup(key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->data, e.data);
  EXPECT_DOUBLE_EQ(got->ms, e.ms);
  EXPECT_EQ(got->tactic, e.tactic);
  EXPECT_FALSE(d.lookup(key + "x").has_value());
  std::filesystem::remove(path);
}

TEST(TimingCache, MissingFileIsSilentlyEmpty) {
  TimingCache c;
  c.store("k", TimingEntry{});
  EXPECT_EQ(c.load(temp_path("does_not_exist.json")), "");
  EXPECT_EQ(c.size(), 0u);
}

TEST(TimingCache, CorruptFileWarnsAndStartsEmpty) {
  const std::string path = temp_path("corrupt.json");
  for (const std::string text : {std::string("{\"format\": \"kiln-timing-cache\", \"vers"), std::string("\x01\x02garbage"),
                                 std::string("[1,2,3]"),
                                 std::string(R"({"format":"kiln-timing-cache","version":1,"entries":{"k":{"ms":1}}})")}) {
    write_file(path, text);
    TimingCache c;
    c.store("old", TimingEntry{});
    const std::string warning = c.load(path);
    EXPECT_NE(warning.find("ignored"), std::string::npos) << text;
    EXPECT_EQ(c.size(), 0u) << text;
  }
  std::filesystem::remove(path);
}

TEST(TimingCache, WrongVersionOrFormatWarns) {
  const std::string path = temp_path("version.json");
  write_file(path, R"({"format":"kiln-timing-cache","version":999,"entries":{}})");
  TimingCache c;
  std::string w = c.load(path);
  EXPECT_NE(w.find("version 999"), std::string::npos) << w;
  EXPECT_EQ(c.size(), 0u);
  write_file(path, R"({"format":"something-else","version":1,"entries":{}})");
  w = c.load(path);
  EXPECT_NE(w.find("not a kiln-timing-cache file"), std::string::npos) << w;
  std::filesystem::remove(path);
}

TEST(TimingCache, KeyDiffersByGpuAndProblem) {
  const TimingKey base = sample_key();
  TimingKey other_gpu = base;
  other_gpu.gpu = "NVIDIA H200";
  TimingKey other_cc = base;
  other_cc.cc = "10.0";
  TimingKey other_lib = base;
  other_lib.library = "cublasLt 130100";
  TimingKey other_m = base;
  other_m.m = 65;
  TimingKey other_epi = base;
  other_epi.epilogue = "BIAS";
  for (const TimingKey* k : {&other_gpu, &other_cc, &other_lib, &other_m, &other_epi})
    EXPECT_NE(k->to_string(), base.to_string());

  // An entry stored for one GPU is never found for another (foreign entries simply don't match).
  TimingCache c;
  c.store(base.to_string(), TimingEntry{{1, 2, 3}, 0.5, "t"});
  EXPECT_TRUE(c.lookup(base.to_string()).has_value());
  EXPECT_FALSE(c.lookup(other_gpu.to_string()).has_value());
}

TEST(TimingCache, Counters) {
  TimingCache c;
  c.count_hit();
  c.count_timed();
  c.count_timed();
  c.count_stale();
  EXPECT_EQ(c.hits(), 1);
  EXPECT_EQ(c.timed(), 2);
  EXPECT_EQ(c.stale(), 1);
}

}  // namespace
}  // namespace kiln::cuda
#endif  // KILN_WITH_CUDA
