// gpu::upload_async and gpu::download_async (kiln/gpu.h): copies between the device and pageable host
// memory through Kiln's own page-locked staging. The course's scripts copy numpy arrays this way
// (memcpy_htod_async of the batch-8192 input, 25.7 MB): the driver stages a pageable copy on the calling
// thread, 2.0-2.5 ms on the H100 machine, while host IO's staging threads with streaming stores keep up
// with the copy engine (0.75 ms end to end for the FP32 engine, GPU run 30).
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "core/env_setting.h"
#include "kiln/gpu.h"
#include "runtime/host_staging.h"

namespace kiln::gpu {
namespace {

constexpr size_t kMinUploadBytes = 1 << 20;    // smaller pageable uploads: the driver's staging
constexpr size_t kMinDownloadBytes = 64 << 10;  // smaller pageable downloads: the driver's staging
constexpr size_t kUploadChunkBytes = 2 << 20;  // one queued copy each (as host IO's staged chunks)
constexpr size_t kDownloadChunkBytes = 256 << 10;
constexpr size_t kPieceBytes = 256 << 10;      // unit of work for the staging threads
constexpr size_t kMaxStagingBytes = 64 << 20;  // larger copies run in rounds of this many bytes

// KILN_PAGEABLE_COPY=driver: pageable memory goes to cudaMemcpyAsync as it is (A/B and a way out).
Result<bool> env_staged() { return two_way_setting("KILN_PAGEABLE_COPY", "driver", "staged", true); }

// KILN_PAGEABLE_COPY_THREADS=n: threads staging an upload, the caller included (experiments; default
// default_staging_threads()). Read at each upload.
Result<int> env_upload_threads() { return int_setting("KILN_PAGEABLE_COPY_THREADS", 1, 64, default_staging_threads()); }

// Whether a copy of `bytes` from or to host_ptr goes through staging.
Result<bool> use_staging(const void* host_ptr, size_t bytes, size_t min_bytes) {
  if (bytes < min_bytes) return false;
  auto staged = env_staged();
  if (!staged.is_ok() || !*staged) return staged;
  return is_pageable_host(host_ptr);
}

// One page-locked buffer per direction, with the event that says when the copies reading or writing it
// are done. Process-wide and never freed: freeing page-locked memory during exit races the CUDA runtime's
// own teardown.
class Staging {
 public:
  static Staging& get() {
    static Staging* s = new Staging();
    return *s;
  }

  Status upload(uint8_t* dst, const uint8_t* src, size_t bytes, Stream stream) {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = reserve(up_, std::min(bytes, kMaxStagingBytes));
    if (s.is_ok() && !up_done_) s = create_event(&up_done_);
    auto threads = env_upload_threads();
    if (!threads.is_ok()) s = threads.status();
    else if (!workers_ || workers_threads_ != *threads) {
      workers_.reset();
      workers_ = std::make_unique<CopyWorkers>(*threads - 1);
      workers_threads_ = *threads;
    }
    for (size_t round = 0; round < bytes && s.is_ok(); round += up_.bytes) {
      // The previous round's or call's copies must have read the buffer before it is written again.
      if (up_pending_) s = event_synchronize(up_done_, true);
      up_pending_ = false;
      if (!s.is_ok()) break;
      const size_t n = std::min(up_.bytes, bytes - round);
      const size_t chunks = (n + kUploadChunkBytes - 1) / kUploadChunkBytes;
      std::vector<CopyWorkers::Piece> pieces;
      std::vector<size_t> per_chunk(chunks, 0);
      for (size_t c = 0; c < chunks; ++c)
        for (size_t p = c * kUploadChunkBytes; p < std::min(n, (c + 1) * kUploadChunkBytes); p += kPieceBytes) {
          pieces.push_back({up_.ptr + p, src + round + p, std::min({kPieceBytes, n - p, (c + 1) * kUploadChunkBytes - p}), c,
                            CopyWorkers::Work::kCopyStreaming});
          ++per_chunk[c];
        }
      workers_->start(std::move(pieces), chunks, true);
      for (size_t c = 0; c < chunks && s.is_ok(); ++c) {
        workers_->wait_chunk(c, per_chunk[c]);
        const size_t off = c * kUploadChunkBytes;
        s = copy_to_device_async(dst + round + off, up_.ptr + off, std::min(kUploadChunkBytes, n - off), stream);
      }
      workers_->finish();
      // Recorded even after a failed copy: whatever was queued still reads the buffer.
      Status rec = event_record(up_done_, stream);
      up_pending_ = rec.is_ok();
      if (s.is_ok()) s = std::move(rec);
    }
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("uploading {} bytes from pageable memory", bytes));
    return s;
  }

  Status download(uint8_t* dst, const uint8_t* src, size_t bytes, Stream stream) {
    std::lock_guard<std::mutex> lock(mu_);
    Status s = reserve(down_, std::min(bytes, kMaxStagingBytes));
    for (size_t round = 0; round < bytes && s.is_ok(); round += down_.bytes) {
      const size_t n = std::min(down_.bytes, bytes - round);
      const size_t chunks = (n + kDownloadChunkBytes - 1) / kDownloadChunkBytes;
      while (s.is_ok() && down_done_.size() < chunks) {
        down_done_.push_back(nullptr);
        s = create_event(&down_done_.back());
      }
      size_t queued = 0;
      for (size_t c = 0; c < chunks && s.is_ok(); ++c, ++queued) {
        const size_t off = c * kDownloadChunkBytes;
        s = copy_to_host_async(down_.ptr + off, src + round + off, std::min(kDownloadChunkBytes, n - off), stream);
        if (s.is_ok()) s = event_record(down_done_[c], stream);
      }
      // Each chunk leaves staging as it arrives, beside the copies of the later ones; every queued chunk is
      // waited for, even after an error, since the next call writes the buffer again.
      for (size_t c = 0; c < queued; ++c) {
        Status w = event_synchronize(down_done_[c], true);
        const size_t off = c * kDownloadChunkBytes;
        if (w.is_ok() && s.is_ok()) std::memcpy(dst + round + off, down_.ptr + off, std::min(kDownloadChunkBytes, n - off));
        if (s.is_ok() && !w.is_ok()) s = std::move(w);
      }
    }
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("downloading {} bytes to pageable memory", bytes));
    return s;
  }

 private:
  struct Buffer {
    uint8_t* ptr = nullptr;
    size_t bytes = 0;
  };

  static Status reserve(Buffer& b, size_t bytes) {
    if (b.bytes >= bytes) return Status::ok();
    if (b.ptr) (void)host_free_pinned(b.ptr);
    b = Buffer{};
    auto p = host_alloc_pinned(bytes);
    if (!p.is_ok()) return std::move(p).take_status().with_context("page-locked staging for a pageable copy");
    b = Buffer{static_cast<uint8_t*>(*p), bytes};
    return Status::ok();
  }
  static Status create_event(Event* e) {
    auto ev = event_create();
    if (!ev.is_ok()) return ev.status();
    *e = *ev;
    return Status::ok();
  }

  std::mutex mu_;
  Buffer up_, down_;
  Event up_done_ = nullptr;
  int workers_threads_ = 0;  // the caller and workers_ (KILN_PAGEABLE_COPY_THREADS)
  bool up_pending_ = false;  // up_done_ recorded after the last upload's copies
  std::vector<Event> down_done_;  // per chunk of a round
  std::unique_ptr<CopyWorkers> workers_;
};

}  // namespace

Status upload_async(void* device_dst, const void* host_src, size_t bytes, Stream stream) {
  auto staged = use_staging(host_src, bytes, kMinUploadBytes);
  if (!staged.is_ok()) return staged.status();
  if (!*staged) return copy_to_device_async(device_dst, host_src, bytes, stream);
  return Staging::get().upload(static_cast<uint8_t*>(device_dst), static_cast<const uint8_t*>(host_src), bytes, stream);
}

Status download_async(void* host_dst, const void* device_src, size_t bytes, Stream stream) {
  auto staged = use_staging(host_dst, bytes, kMinDownloadBytes);
  if (!staged.is_ok()) return staged.status();
  if (!*staged) return copy_to_host_async(host_dst, device_src, bytes, stream);
  return Staging::get().download(static_cast<uint8_t*>(host_dst), static_cast<const uint8_t*>(device_src), bytes, stream);
}

}  // namespace kiln::gpu
