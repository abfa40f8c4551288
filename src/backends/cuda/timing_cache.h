// Build-time timing cache: tactics measured by kernels' tune() on one GPU, kept across builds so that a
// rebuild (or another model with the same layer shapes) skips the timing. Host-only, no CUDA calls: the
// cache is plain data so that it can be tested without a GPU.
//
// File format (JSON):
//   {"format": "kiln-timing-cache", "version": 1,
//    "entries": {"<key>": {"tactic": "<readable name>", "ms": 0.0123, "data": [<int64>, ...]}, ...}}
// A key names everything that decides the measurement (GPU, compute capability, library version, kernel,
// precision, dtypes, problem size, layouts, epilogue), so entries from another GPU or library simply never
// match. An entry whose tactic no longer passes the library's check is re-timed by the kernel and
// overwritten (counted as stale).
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln::cuda {

struct TimingKey {
  std::string gpu;             // device name, e.g. "NVIDIA H100 80GB HBM3"
  std::string cc;              // compute capability, e.g. "9.0"
  std::string library;         // e.g. "cublasLt 130000"
  std::string kernel;          // kernel name, e.g. "cuda.f16.gemm.cublaslt"
  std::string precision;       // node precision: "fp32", "tf32", "fp16"
  std::string dtypes;          // e.g. "float16,float16->float32"
  int64_t m = 0, n = 0, k = 0, batch = 1;
  std::string layout;          // transposes/strides, kernel-defined, e.g. "W:T X:N"
  std::string epilogue;        // e.g. "RELU_BIAS", "BIAS+accumulate"

  std::string to_string() const;
};

struct TimingEntry {
  std::vector<int64_t> data;  // the kernel's own tactic encoding at the key's shape (cuBLASLt: algo_to_ints)
  double ms = 0;              // median time measured at the key's shape
  std::string tactic;         // human-readable tactic name
};

class TimingCache {
 public:
  static constexpr const char* kFormat = "kiln-timing-cache";
  static constexpr int kVersion = 1;

  // Replaces the contents with the file's. A missing file is a normal first build: empty, no warning.
  // An unreadable or corrupt file, another format or an unknown version is not an error either: the cache
  // starts empty and the returned warning (empty when none) says why, for the caller to print.
  std::string load(const std::string& path);
  // Writes atomically (temporary file + rename) so that an interrupted build never leaves a torn file.
  Status save(const std::string& path) const;

  std::optional<TimingEntry> lookup(const std::string& key) const;
  void store(const std::string& key, TimingEntry entry);
  size_t size() const;

  // Counters for the build summary; tune() bumps them.
  void count_hit() { bump(hits_); }
  void count_timed() { bump(timed_); }
  void count_stale() { bump(stale_); }
  int hits() const { return read(hits_); }
  int timed() const { return read(timed_); }  // tactics measured (misses and stale entries)
  int stale() const { return read(stale_); }  // entries found but rejected by the library's check

 private:
  void bump(int& c) {
    std::lock_guard<std::mutex> lock(mutex_);
    ++c;
  }
  int read(const int& c) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return c;
  }

  mutable std::mutex mutex_;
  std::map<std::string, TimingEntry> entries_;
  int hits_ = 0, timed_ = 0, stale_ = 0;
};

}  // namespace kiln::cuda
