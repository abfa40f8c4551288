// Constant tensor data held by the IR (initializers, folded constants, packed weights).
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kiln/types.h"

namespace kiln {

struct Tensor {
  DataType dtype = DataType::kUndefined;
  Dims shape;
  // Shared so that copies of a graph (and views into an engine) don't duplicate weights.
  std::shared_ptr<const std::vector<uint8_t>> bytes;

  int64_t elements() const { return volume(shape); }
  size_t nbytes() const { return bytes ? bytes->size() : 0; }
  const uint8_t* raw() const { return bytes ? bytes->data() : nullptr; }
  template <class T>
  const T* data() const { return reinterpret_cast<const T*>(raw()); }

  static Tensor make(DataType dt, Dims shape, std::vector<uint8_t> data) {
    Tensor t;
    t.dtype = dt;
    t.shape = std::move(shape);
    t.bytes = std::make_shared<const std::vector<uint8_t>>(std::move(data));
    return t;
  }
  // Any allocator (the CPU kernels' cache-line-aligned vectors too); the default lets callers pass a braced list.
  template <class T, class Alloc = std::allocator<T>>
  static Tensor from_vector(DataType dt, Dims shape, const std::vector<T, Alloc>& v) {
    std::vector<uint8_t> b(v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(b.data(), v.data(), b.size());
    return make(dt, std::move(shape), std::move(b));
  }
  // Element i converted to double / int64 (for folding and shape arguments).
  double get_double(int64_t i) const;
  int64_t get_int64(int64_t i) const;
};

}  // namespace kiln
