// Cast between float32/float16/float64/int8/uint8/int32/int64/bool. The conversion rules live in
// ops/cast.h and are shared with the reference; the loop for each (from, to) pair is picked once, at create.
#include <cstring>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/dtype_dispatch.h"
#include "ops/cast.h"

namespace kiln::cpu {
namespace {

constexpr const char* kName = "cpu.any.cast";

template <DataType D> struct Storage;
template <> struct Storage<DataType::kFloat32> { using T = float; };
template <> struct Storage<DataType::kFloat64> { using T = double; };
template <> struct Storage<DataType::kFloat16> { using T = uint16_t; };
template <> struct Storage<DataType::kInt8> { using T = int8_t; };
template <> struct Storage<DataType::kUInt8> { using T = uint8_t; };
template <> struct Storage<DataType::kInt32> { using T = int32_t; };
template <> struct Storage<DataType::kInt64> { using T = int64_t; };
template <> struct Storage<DataType::kBool> { using T = uint8_t; };

constexpr bool is_float(DataType d) {
  return d == DataType::kFloat32 || d == DataType::kFloat64 || d == DataType::kFloat16;
}

// Float sources widen to double and integer sources to int64, both exactly.
template <DataType From>
inline auto load(typename Storage<From>::T v) {
  if constexpr (From == DataType::kFloat16) return half_to_double(v);
  else if constexpr (is_float(From)) return static_cast<double>(v);
  else if constexpr (From == DataType::kBool) return static_cast<int64_t>(v != 0);
  else return static_cast<int64_t>(v);
}

template <DataType To>
inline typename Storage<To>::T store(double v) {
  using T = typename Storage<To>::T;
  if constexpr (To == DataType::kFloat16) return double_to_half(v);
  else if constexpr (is_float(To)) return static_cast<T>(v);
  else if constexpr (To == DataType::kBool) return v != 0;
  else return static_cast<T>(float_to_int64(v));
}

template <DataType To>
inline typename Storage<To>::T store(int64_t v) {
  using T = typename Storage<To>::T;
  if constexpr (To == DataType::kFloat16) return double_to_half(static_cast<double>(v));
  else if constexpr (is_float(To)) return static_cast<T>(v);
  else if constexpr (To == DataType::kBool) return v != 0;
  else return static_cast<T>(v);  // modular (C++20)
}

using CastFn = void (*)(const void*, void*, int64_t);

template <DataType From, DataType To>
void cast_loop(const void* in, void* out, int64_t n) {
  if constexpr (From == DataType::kFloat32 && To == DataType::kFloat16) {  // bit-level fast path
    const float* x = static_cast<const float*>(in);
    uint16_t* y = static_cast<uint16_t*>(out);
#pragma omp parallel for if (n >= kParallelThreshold) schedule(static)
    for (int64_t i = 0; i < n; ++i) y[i] = float_to_half(x[i]);
    return;
  }
  const auto* x = static_cast<const typename Storage<From>::T*>(in);
  auto* y = static_cast<typename Storage<To>::T*>(out);
#pragma omp parallel for if (n >= kParallelThreshold) schedule(static)
  for (int64_t i = 0; i < n; ++i) y[i] = store<To>(load<From>(x[i]));
}

// The cast_loop instantiation for each (From, To) pair, for dispatch_dtype_pair.
template <DataType From, DataType To>
struct PairFn {
  static constexpr CastFn fn = cast_loop<From, To>;
};

CastFn pick(DataType from, DataType to) { return dispatch_dtype_pair<PairFn>(from, to); }

class CastKernel final : public CpuKernel {
 public:
  CastKernel(CastFn fn, size_t copy_elem) : fn_(fn), copy_elem_(copy_elem) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    n_ = volume(outputs[0].shape);
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    if (n_ <= 0) return Status::ok();
    if (copy_elem_) std::memcpy(outputs[0], inputs[0], static_cast<size_t>(n_) * copy_elem_);
    else fn_(inputs[0], outputs[0], n_);
    return Status::ok();
  }

 private:
  CastFn fn_;
  size_t copy_elem_;  // same dtype on both sides: a byte copy
  int64_t n_ = 0;
};

CpuKernelDef cast_kernel_def() {
  CpuKernelDef def;
  def.name = kName;
  def.op_type = "Cast";
  def.supports = [](const Node& node, const Graph& graph) {
    auto to = cast_target(node);
    if (!to.is_ok()) return to.status();
    const DataType from = graph.values[node.inputs[0]].dtype;
    if (!pick(from, *to))
      return Status(StatusCode::kUnsupported, fmt::format("cast from {} to {} is not supported by {}",
                                                          dtype_name(from), dtype_name(*to), kName));
    return Status::ok();
  };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CpuKernel>> {
    auto to = cast_target(init.node);
    if (!to.is_ok()) return to.status();
    const DataType from = init.graph.values[init.node.inputs[0]].dtype;
    CastFn fn = pick(from, *to);
    if (!fn) return Status(StatusCode::kUnsupported, fmt::format("cast from {} to {} is not supported by {}",
                                                                 dtype_name(from), dtype_name(*to), kName));
    return std::unique_ptr<CpuKernel>(std::make_unique<CastKernel>(fn, from == *to ? dtype_size(from) : 0));
  };
  return def;
}

const KernelRegistrar kCast{cast_kernel_def()};

}  // namespace
}  // namespace kiln::cpu
