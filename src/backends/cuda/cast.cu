// Cast between float32/float16/float64/int8/uint8/int32/int64/bool with the CPU kernel's rules
// (ops/cast.h): float sources widen to double and integer sources to int64, both exactly; float -> int
// truncates toward zero (NaN -> 0, saturating at the int64 range) then wraps to the width; -> bool is
// "!= 0"; -> float16 rounds to nearest even straight from the source value (cvt.rn.f16.f64 from double,
// cvt.rn.f16.f32 from float32, equal there), with NaN written as the CPU writes it, sign | 0x7e00. The
// kernel for each (from, to) pair is picked once, at create; same dtypes are a memcpy.
#include <cuda_fp16.h>

#include <cstdint>

#include "backends/cuda/cuda_kernel.h"
#include "backends/dtype_dispatch.h"
#include "ops/cast.h"

namespace kiln::cuda {
namespace {

constexpr const char* kName = "cuda.any.cast";
constexpr int kBlock = 256;

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

template <DataType From>
__device__ __forceinline__ auto load(typename Storage<From>::T v) {
  if constexpr (From == DataType::kFloat16) return static_cast<double>(__half2float(__ushort_as_half(v)));
  else if constexpr (is_float(From)) return static_cast<double>(v);
  else if constexpr (From == DataType::kBool) return static_cast<int64_t>(v != 0);
  else return static_cast<int64_t>(v);
}

__device__ __forceinline__ uint16_t nan_half(bool negative) { return negative ? 0xfe00 : 0x7e00; }

__device__ __forceinline__ uint16_t double_to_half_bits(double x) {
  if (isnan(x)) return nan_half(signbit(x));
  return __half_as_ushort(__double2half(x));
}

template <DataType To>
__device__ __forceinline__ typename Storage<To>::T store(double v) {
  using T = typename Storage<To>::T;
  if constexpr (To == DataType::kFloat16) return double_to_half_bits(v);
  else if constexpr (is_float(To)) return static_cast<T>(v);
  else if constexpr (To == DataType::kBool) return v != 0;
  else return static_cast<T>(float_to_int64(v));
}

template <DataType To>
__device__ __forceinline__ typename Storage<To>::T store(int64_t v) {
  using T = typename Storage<To>::T;
  if constexpr (To == DataType::kFloat16) return double_to_half_bits(static_cast<double>(v));
  else if constexpr (is_float(To)) return static_cast<T>(v);
  else if constexpr (To == DataType::kBool) return v != 0;
  else return static_cast<T>(v);  // modular
}

template <DataType From, DataType To>
__global__ void cast_kernel(const typename Storage<From>::T* x, typename Storage<To>::T* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (From == DataType::kFloat32 && To == DataType::kFloat16) {  // single-precision rounding path
      const float f = x[i];
      y[i] = isnan(f) ? nan_half(signbit(f)) : __half_as_ushort(__float2half_rn(f));
    } else {
      y[i] = store<To>(load<From>(x[i]));
    }
  }
}

using CastLaunch = void (*)(const void*, void*, int64_t, cudaStream_t);

template <DataType From, DataType To>
void cast_launch(const void* in, void* out, int64_t n, cudaStream_t stream) {
  cast_kernel<From, To><<<grid_for(n, kBlock), kBlock, 0, stream>>>(
      static_cast<const typename Storage<From>::T*>(in), static_cast<typename Storage<To>::T*>(out), n);
}

// The cast_launch instantiation for each (From, To) pair, for dispatch_dtype_pair.
template <DataType From, DataType To>
struct PairFn {
  static constexpr CastLaunch fn = cast_launch<From, To>;
};

CastLaunch pick(DataType from, DataType to) { return dispatch_dtype_pair<PairFn>(from, to); }

class CastKernel final : public CudaKernel {
 public:
  CastKernel(CastLaunch launch, DataType from, DataType to) : launch_(launch), from_(from), to_(to) {}

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    n_ = volume(outputs[0].shape);
    // float32 -> float16 handed float16 (host IO converted it, host_input_form): the same bits, copied.
    const DataType in = inputs[0].dtype;
    if (in != from_ && !(from_ == DataType::kFloat32 && to_ == DataType::kFloat16 && in == DataType::kFloat16))
      return Status(StatusCode::kInvalidArgument,
                    cat(kName, ": input is ", dtype_name(in), ", the layer was built for ", dtype_name(from_)));
    copy_elem_ = in == to_ ? dtype_size(to_) : 0;
    return Status::ok();
  }

  Status enqueue(const void* const* inputs, void* const* outputs, void*, cudaStream_t stream) override {
    if (n_ <= 0) return Status::ok();
    if (copy_elem_)
      return check(cudaMemcpyAsync(outputs[0], inputs[0], static_cast<size_t>(n_) * copy_elem_,
                                   cudaMemcpyDeviceToDevice, stream),
                   cat(kName, ": copying ", n_, " elements"));
    launch_(inputs[0], outputs[0], n_, stream);
    return check_launch(kName);
  }

 private:
  CastLaunch launch_;
  DataType from_, to_;
  size_t copy_elem_ = 0;  // same dtype on both sides: a byte copy
  int64_t n_ = 0;
};

Status unsupported_pair(DataType from, DataType to) {
  return Status(StatusCode::kUnsupported,
                cat("cast from ", dtype_name(from), " to ", dtype_name(to), " is not supported by ", kName));
}

KernelDef cast_kernel_def() {
  KernelDef def;
  def.name = kName;
  def.op_type = "Cast";
  def.supports = [](const Node& node, const Graph& graph) {
    auto to = cast_target(node);
    if (!to.is_ok()) return to.status();
    const DataType from = graph.values[node.inputs[0]].dtype;
    return pick(from, *to) ? Status::ok() : unsupported_pair(from, *to);
  };
  def.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    auto to = cast_target(init.node);
    if (!to.is_ok()) return to.status();
    const DataType from = init.graph.values[init.node.inputs[0]].dtype;
    CastLaunch launch = pick(from, *to);
    if (!launch) return unsupported_pair(from, *to);
    return std::unique_ptr<CudaKernel>(std::make_unique<CastKernel>(launch, from, *to));
  };
  // float32 -> float16 rounds like the host's conversion (float_to_half: to nearest even, NaN 0x7e00 with the
  // sign), so host IO may hand it float16 (an FP16 engine's float32 inputs start with this Cast).
  def.host_input_form = [](const Node& node, const Graph& graph, int input) {
    auto to = cast_target(node);
    return input == 0 && to.is_ok() && *to == DataType::kFloat16 && graph.values[node.inputs[0]].dtype == DataType::kFloat32
               ? HostInputForm{DataType::kFloat16}
               : HostInputForm{};
  };
  return def;
}

const KernelRegistrar kCast{cast_kernel_def()};

}  // namespace
}  // namespace kiln::cuda
