// Helpers shared by the CPU kernels: kernel names and the size above which loops go
// parallel (below it, OpenMP's fork/join costs more than the loop).
#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <new>
#include <string>
#include <vector>

#include "backends/kernel_checks.h"
#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln::cpu {

constexpr int64_t kParallelThreshold = int64_t{1} << 16;

// Products of fewer multiply-adds than this (a batch-1 layer: 784 x 256 is 0.2 M) run on one thread: on 16
// threads a oneDNN matmul that small spent more in fork/join than in the product (the Xeon, compare run 7:
// Kiln INT8 at batch 1 took 9.0 us on one thread and 18.3 us on all).
constexpr int64_t kSerialMacs = int64_t{1} << 20;

// Runs the scope with `threads` OpenMP threads on the calling thread (when > 0), then restores the count.
// oneDNN plans a primitive for the thread count it is created with and runs with the count it executes
// with, so both are wrapped.
class ScopedOmpThreads {
 public:
  explicit ScopedOmpThreads(int threads);
  ~ScopedOmpThreads();
  ScopedOmpThreads(const ScopedOmpThreads&) = delete;
  ScopedOmpThreads& operator=(const ScopedOmpThreads&) = delete;

 private:
  int saved_ = 0;
};

// Storage on 64-byte (cache-line) boundaries, for data the AVX-512 kernels stream: a vector's heap block is
// only 16-byte aligned, so every 64-byte load of it may straddle two cache lines.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlign{64};
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlign)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlign); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
};
template <class T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

// Kernel name stem + "." + lower-case op type, e.g. ("cpu.f32.binary", "Add") -> "cpu.f32.binary.add".
std::string kernel_name(const std::string& stem, const std::string& op_type);

}  // namespace kiln::cpu
