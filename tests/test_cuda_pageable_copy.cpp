// gpu::upload_async / gpu::download_async (kiln/gpu.h): copies between the device and host memory of any
// kind, pageable memory through Kiln's staging threads. Byte-for-byte round trips at sizes on both sides of
// every threshold (1 MiB up, 64 KiB down, the 64 MiB staging round), from pageable and page-locked memory
// and with the driver's path; the async contract (the source may be reused once upload_async returns, a
// pageable destination holds the data once download_async returns) with the stream kept busy; two threads
// at once; the setting refused by name. GPU cases skip without a GPU unless KILN_TEST_CUDA=require.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kiln/gpu.h"
#include "op_harness.h"
#include "test_util.h"

namespace kiln {
namespace {

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t r = rng();
    std::memcpy(v.data() + i, &r, 8);
  }
  for (; i < n; ++i) v[i] = static_cast<uint8_t>(rng());
  return v;
}

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t n) {
    auto a = gpu::device_alloc(n);
    if (!a.is_ok()) throw std::runtime_error(a.status().to_string());
    p = *a;
  }
  ~DeviceBuffer() { (void)gpu::device_free(p); }
};

struct StreamHandle {
  gpu::Stream s = nullptr;
  StreamHandle() {
    auto c = gpu::stream_create();
    if (!c.is_ok()) throw std::runtime_error(c.status().to_string());
    s = *c;
  }
  ~StreamHandle() { (void)gpu::stream_destroy(s); }
};

// Sizes around each threshold, the course's batch-8192 input, and one past the 64 MiB staging round.
const size_t kSizes[] = {1, 3136, (64 << 10) - 1, 64 << 10, (1 << 20) - 4, 1 << 20, (1 << 20) + 12345,
                         8192 * 784 * 4, (64 << 20) + (3 << 20) + 7};

// Up through upload_async, back through download_async into poisoned memory; both copies on `stream`.
void round_trip(size_t n, uint64_t seed, gpu::Stream stream, bool pinned) {
  const auto src = random_bytes(n, seed);
  DeviceBuffer dev(n);
  ASSERT_TRUE(gpu::memset_async(dev.p, 0xAB, n, stream).is_ok());
  uint8_t* host_in = nullptr;
  uint8_t* host_out = nullptr;
  std::vector<uint8_t> in_vec, out_vec;
  if (pinned) {
    auto a = gpu::host_alloc_pinned(n);
    auto b = gpu::host_alloc_pinned(n);
    ASSERT_TRUE(a.is_ok() && b.is_ok());
    host_in = static_cast<uint8_t*>(*a);
    host_out = static_cast<uint8_t*>(*b);
  } else {
    in_vec.resize(n);
    out_vec.resize(n);
    host_in = in_vec.data();
    host_out = out_vec.data();
  }
  std::memcpy(host_in, src.data(), n);
  std::memset(host_out, 0xCD, n);
  Status s = gpu::upload_async(dev.p, host_in, n, stream);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  s = gpu::download_async(host_out, dev.p, n, stream);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  if (pinned) EXPECT_TRUE(gpu::stream_synchronize(stream).is_ok());  // page-locked: returns once queued
  EXPECT_EQ(std::memcmp(host_out, src.data(), n), 0) << n << " bytes, " << (pinned ? "page-locked" : "pageable");
  if (pinned) {
    (void)gpu::host_free_pinned(host_in);
    (void)gpu::host_free_pinned(host_out);
  }
}

TEST(CudaPageableCopy, RoundTripsAreByteExactAtEverySize) {
  REQUIRE_GPU();
  StreamHandle stream;
  uint64_t seed = 1;
  for (size_t n : kSizes) {
    round_trip(n, seed++, stream.s, false);
    round_trip(n, seed++, nullptr, false);  // the legacy default stream
  }
  for (size_t n : {size_t{3136}, size_t{(1 << 20) + 12345}, size_t{8192 * 784 * 4}}) round_trip(n, seed++, stream.s, true);
  for (const char* threads : {"1", "13"}) {  // the staging threads' count (the caller alone; more than cores)
    test::ScopedEnv t("KILN_PAGEABLE_COPY_THREADS", threads);
    round_trip(8192 * 784 * 4, seed++, stream.s, false);
  }
  test::ScopedEnv driver("KILN_PAGEABLE_COPY", "driver");
  for (size_t n : {size_t{3136}, size_t{(1 << 20) + 12345}, size_t{8192 * 784 * 4}}) round_trip(n, seed++, stream.s, false);
}

// The stream is kept busy (a large device copy queued first) so that the copies run well after the calls
// return: the source is overwritten as soon as upload_async returns, a second upload reuses the staging
// while the first's copies still wait, and download_async's pageable destination must hold the data on return.
TEST(CudaPageableCopy, AsyncContractHoldsWhileTheStreamIsBusy) {
  REQUIRE_GPU();
  StreamHandle stream;
  const size_t big = size_t{1} << 30, n = 8192 * 784 * 4 + 4096;
  DeviceBuffer a(big), b(big), d1(n), d2(n);
  const auto x1 = random_bytes(n, 11), x2 = random_bytes(n, 12);
  std::vector<uint8_t> src = x1;
  ASSERT_TRUE(gpu::copy_device_to_device_async(b.p, a.p, big, stream.s).is_ok());
  ASSERT_TRUE(gpu::upload_async(d1.p, src.data(), n, stream.s).is_ok());
  std::memset(src.data(), 0x5A, n);  // the source may be reused now
  src = x2;
  ASSERT_TRUE(gpu::copy_device_to_device_async(b.p, a.p, big, stream.s).is_ok());
  ASSERT_TRUE(gpu::upload_async(d2.p, src.data(), n, stream.s).is_ok());
  std::memset(src.data(), 0xA5, n);
  ASSERT_TRUE(gpu::copy_device_to_device_async(b.p, a.p, big, stream.s).is_ok());
  std::vector<uint8_t> out(n, 0xCD);
  ASSERT_TRUE(gpu::download_async(out.data(), d1.p, n, stream.s).is_ok());
  EXPECT_EQ(std::memcmp(out.data(), x1.data(), n), 0) << "first upload";
  std::fill(out.begin(), out.end(), 0xCD);
  ASSERT_TRUE(gpu::download_async(out.data(), d2.p, n, stream.s).is_ok());
  EXPECT_EQ(std::memcmp(out.data(), x2.data(), n), 0) << "second upload";
}

TEST(CudaPageableCopy, TwoThreadsAtOnce) {
  REQUIRE_GPU();
  auto worker = [](uint64_t seed, bool* ok) {
    StreamHandle stream;
    const size_t n = (5 << 20) + 333;
    DeviceBuffer dev(n);
    *ok = true;
    for (int i = 0; i < 20; ++i) {
      const auto src = random_bytes(n, seed + static_cast<uint64_t>(i));
      std::vector<uint8_t> out(n, 0xCD);
      *ok = *ok && gpu::upload_async(dev.p, src.data(), n, stream.s).is_ok() &&
            gpu::download_async(out.data(), dev.p, n, stream.s).is_ok() && out == src;
    }
  };
  bool ok1 = false, ok2 = false;
  std::thread t1(worker, 100, &ok1), t2(worker, 200, &ok2);
  t1.join();
  t2.join();
  EXPECT_TRUE(ok1);
  EXPECT_TRUE(ok2);
}

TEST(CudaPageableCopy, BadSettingIsRefusedByName) {
  REQUIRE_GPU();
  test::ScopedEnv bad("KILN_PAGEABLE_COPY", "fast");
  const size_t n = 2 << 20;
  DeviceBuffer dev(n);
  std::vector<uint8_t> host(n, 1);
  Status s = gpu::upload_async(dev.p, host.data(), n, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("KILN_PAGEABLE_COPY"), std::string::npos) << s.to_string();
  s = gpu::download_async(host.data(), dev.p, n, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  test::ScopedEnv staged("KILN_PAGEABLE_COPY", "staged");
  test::ScopedEnv threads("KILN_PAGEABLE_COPY_THREADS", "0");
  s = gpu::upload_async(dev.p, host.data(), n, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.to_string();
  EXPECT_NE(s.message().find("KILN_PAGEABLE_COPY_THREADS"), std::string::npos) << s.to_string();
}

}  // namespace
}  // namespace kiln
