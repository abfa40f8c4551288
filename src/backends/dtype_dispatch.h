// Runtime (from, to) dtype pair -> a function instantiated for that pair at compile time. Shared by the
// CPU and CUDA cast kernels; no fmt, so .cu files can include it.
#pragma once
#include "kiln/types.h"

namespace kiln {

namespace detail {
template <template <DataType, DataType> class Entry, DataType From>
auto dispatch_to(DataType to) -> decltype(Entry<From, DataType::kFloat32>::fn) {
  switch (to) {
    case DataType::kFloat32: return Entry<From, DataType::kFloat32>::fn;
    case DataType::kFloat64: return Entry<From, DataType::kFloat64>::fn;
    case DataType::kFloat16: return Entry<From, DataType::kFloat16>::fn;
    case DataType::kInt8: return Entry<From, DataType::kInt8>::fn;
    case DataType::kUInt8: return Entry<From, DataType::kUInt8>::fn;
    case DataType::kInt32: return Entry<From, DataType::kInt32>::fn;
    case DataType::kInt64: return Entry<From, DataType::kInt64>::fn;
    case DataType::kBool: return Entry<From, DataType::kBool>::fn;
    case DataType::kUndefined: return nullptr;
  }
  return nullptr;
}
}  // namespace detail

// Entry<From, To>::fn for the pair (a function pointer), or nullptr when either dtype is kUndefined.
template <template <DataType, DataType> class Entry>
auto dispatch_dtype_pair(DataType from, DataType to) -> decltype(Entry<DataType::kFloat32, DataType::kFloat32>::fn) {
  switch (from) {
    case DataType::kFloat32: return detail::dispatch_to<Entry, DataType::kFloat32>(to);
    case DataType::kFloat64: return detail::dispatch_to<Entry, DataType::kFloat64>(to);
    case DataType::kFloat16: return detail::dispatch_to<Entry, DataType::kFloat16>(to);
    case DataType::kInt8: return detail::dispatch_to<Entry, DataType::kInt8>(to);
    case DataType::kUInt8: return detail::dispatch_to<Entry, DataType::kUInt8>(to);
    case DataType::kInt32: return detail::dispatch_to<Entry, DataType::kInt32>(to);
    case DataType::kInt64: return detail::dispatch_to<Entry, DataType::kInt64>(to);
    case DataType::kBool: return detail::dispatch_to<Entry, DataType::kBool>(to);
    case DataType::kUndefined: return nullptr;
  }
  return nullptr;
}

}  // namespace kiln
