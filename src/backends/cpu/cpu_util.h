// Helpers shared by the CPU kernels: kernel names and the size above which loops go
// parallel (below it, OpenMP's fork/join costs more than the loop).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
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
  // aligned_alloc, not aligned operator new: a failed allocation comes back as null (also under ASan with
  // allocator_may_return_null, where a failed operator new aborts) and is thrown here as std::bad_alloc, which
  // resize_working turns into a Status.
  T* allocate(size_t n) {
    if (n > (SIZE_MAX - 63) / sizeof(T)) throw std::bad_alloc();
    void* p = std::aligned_alloc(static_cast<size_t>(kAlign), (n * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  friend bool operator==(const CacheLineAllocator&, const CacheLineAllocator&) { return true; }
};
template <class T>
using CacheLineVector = std::vector<T, CacheLineAllocator<T>>;

// Resizes a kernel's working buffer to the product of `dims` elements (sized from a shape at reshape), or says
// why not: a product that overflows or is more than this machine's physical memory (a corrupt engine or an absurd
// shape gets an error naming `what`, not an allocation that aborts), or an allocation that fails.
Status working_elements(std::initializer_list<int64_t> dims, size_t element_bytes, const char* what, size_t* out);
template <class Vector>
Status resize_working(Vector& v, std::initializer_list<int64_t> dims, const char* what) {
  size_t n = 0;
  Status s = working_elements(dims, sizeof(typename Vector::value_type), what, &n);
  if (!s.is_ok()) return s;
  try {
    v.resize(n);
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kRuntimeError, std::string("out of memory allocating ") + what + " (" +
                                                 std::to_string(n * sizeof(typename Vector::value_type)) + " bytes)");
  }
  return Status::ok();
}

// Kernel name stem + "." + lower-case op type, e.g. ("cpu.f32.binary", "Add") -> "cpu.f32.binary.add".
std::string kernel_name(const std::string& stem, const std::string& op_type);

}  // namespace kiln::cpu
