// QuantizeLinear (float32 -> int8/uint8) and DequantizeLinear (int8/uint8/int32 -> float32), per-tensor or
// per-axis, with optional zero point. One grid-stride loop each, over groups of 4 elements when the sizes
// and pointers allow (float4 loads with char4 stores and back), since these layers are pure memory traffic.
// Quantization rounds as the reference does, round_half_even(x / scale) + zero point, then saturates
// (quantize_saturate, shared with every backend).
#include <cstdint>

#include "backends/cuda/cuda_kernel.h"
#include "backends/layout_plan.h"
#include "ops/quantize.h"

namespace kiln::cuda {
namespace {

constexpr const char* kQuantizeName = "cuda.f32.quantize_linear";
constexpr const char* kDequantizeName = "cuda.f32.dequantize_linear";
constexpr int kBlock = 256;

// V consecutive elements moved as one aligned load or store (float4, char4, int4, ...).
template <class T, int V>
struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

template <class Q, int V>
__global__ void quantize_kernel(const float* __restrict__ x, const float* __restrict__ scale,
                                const Q* __restrict__ zero_point, Q* __restrict__ y, int64_t groups,
                                QuantAxisPlan plan, int32_t lo, int32_t hi) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = plan.channel(g * V);  // a group never straddles channels (inner % V == 0)
    const float s = scale[c], z = zero_point ? float(zero_point[c]) : 0.f;
    const Vec<float, V> in = reinterpret_cast<const Vec<float, V>*>(x)[g];
    Vec<Q, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = static_cast<Q>(quantize_saturate(rintf(in.v[j] / s) + z, lo, hi));
    reinterpret_cast<Vec<Q, V>*>(y)[g] = out;
  }
}

template <class Q, int V>
__global__ void dequantize_kernel(const Q* __restrict__ x, const float* __restrict__ scale,
                                  const Q* __restrict__ zero_point, float* __restrict__ y, int64_t groups,
                                  QuantAxisPlan plan) {
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = plan.channel(g * V);
    const float s = scale[c], z = zero_point ? float(zero_point[c]) : 0.f;
    const Vec<Q, V> in = reinterpret_cast<const Vec<Q, V>*>(x)[g];
    Vec<float, V> out;
#pragma unroll
    for (int j = 0; j < V; ++j) out.v[j] = (float(in.v[j]) - z) * s;
    reinterpret_cast<Vec<float, V>*>(y)[g] = out;
  }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Groups of 4 when every group lies in one channel and both buffers are aligned for it.
bool vectorizable(int64_t n, const QuantAxisPlan& plan, const void* x, size_t x_elem, const void* y, size_t y_elem) {
  return n % 4 == 0 && (plan.channels == 1 || plan.inner % 4 == 0) && aligned(x, 4 * x_elem) && aligned(y, 4 * y_elem);
}

// What both kernels plan at reshape: element count, axis, zero point, the quantized dtype.
struct QuantShape {
  int64_t n = 0;
  QuantAxisPlan plan;
  bool has_zero_point = false;
  DataType qtype = DataType::kInt8;  // the output of Quantize, the input of Dequantize

  QuantShape(const Node& node, const std::vector<TensorDesc>& in, DataType q)
      : n(volume(in[0].shape)),
        plan(make_quant_axis_plan(node, in[0].shape, in[1].shape)),
        has_zero_point(in.size() > 2 && in[2].dtype != DataType::kUndefined),
        qtype(q) {}
  QuantShape() = default;
};

class QuantizeKernel final : public CudaKernel {
 public:
  explicit QuantizeKernel(const Node& node) : node_(node) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override {
    shape_ = QuantShape(node_, in, out[0].dtype);
    // Handed the quantized bytes (host IO quantized the input, host_input_form): copied.
    copy_ = in[0].dtype == out[0].dtype;
    if (!copy_ && in[0].dtype != DataType::kFloat32)
      return Status(StatusCode::kInvalidArgument, cat(kQuantizeName, " for layer '", node_.name, "': input is ",
                                                      dtype_name(in[0].dtype), ", not float32"));
    return Status::ok();
  }

  Status enqueue(const void* const* in, void* const* out, void*, cudaStream_t stream) override {
    if (shape_.n <= 0) return Status::ok();
    if (copy_)
      return check(cudaMemcpyAsync(out[0], in[0], static_cast<size_t>(shape_.n), cudaMemcpyDeviceToDevice, stream),
                   cat(kQuantizeName, " for layer '", node_.name, "': copying ", shape_.n, " quantized elements"));
    if (shape_.qtype == DataType::kInt8) launch<int8_t>(in, out[0], -128, 127, stream);
    else launch<uint8_t>(in, out[0], 0, 255, stream);
    return check_launch(cat(kQuantizeName, " for layer '", node_.name, "' (", shape_.n, " elements)"));
  }

 private:
  template <class Q>
  void launch(const void* const* in, void* out, int32_t lo, int32_t hi, cudaStream_t stream) const {
    const float* x = static_cast<const float*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const Q* zp = shape_.has_zero_point ? static_cast<const Q*>(in[2]) : nullptr;
    Q* y = static_cast<Q*>(out);
    if (vectorizable(shape_.n, shape_.plan, x, sizeof(float), y, sizeof(Q))) {
      const int64_t groups = shape_.n / 4;
      quantize_kernel<Q, 4><<<grid_for(groups, kBlock), kBlock, 0, stream>>>(x, scale, zp, y, groups, shape_.plan, lo, hi);
    } else {
      quantize_kernel<Q, 1><<<grid_for(shape_.n, kBlock), kBlock, 0, stream>>>(x, scale, zp, y, shape_.n, shape_.plan,
                                                                               lo, hi);
    }
  }

  Node node_;
  QuantShape shape_;
  bool copy_ = false;
};

// Per-tensor quantization with a constant scale and zero point: the host can quantize the float32 input
// with the same formula (host_staging.h), so host IO may hand it over quantized.
HostInputForm quantize_host_form(const Node& n, const Graph& g, int input) {
  if (input != 0 || g.values[n.inputs[0]].dtype != DataType::kFloat32) return {};
  const std::optional<float> scale = constant_per_tensor_scale(n, g);
  const DataType q = g.values[n.outputs[0]].dtype;
  if (!scale || (q != DataType::kInt8 && q != DataType::kUInt8)) return {};
  HostInputForm f{q, *scale, 0};
  if (n.inputs.size() > 2 && n.inputs[2] != kNoValue) {
    if (!g.is_constant(n.inputs[2])) return {};
    const Tensor& zp = *g.values[n.inputs[2]].constant;
    if (zp.elements() != 1 || zp.dtype != q) return {};
    f.zero_point = q == DataType::kInt8 ? int32_t{zp.data<int8_t>()[0]} : int32_t{zp.data<uint8_t>()[0]};
  }
  return f;
}

class DequantizeKernel final : public CudaKernel {
 public:
  explicit DequantizeKernel(const Node& node) : node_(node) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>&) override {
    shape_ = QuantShape(node_, in, in[0].dtype);
    return Status::ok();
  }

  Status enqueue(const void* const* in, void* const* out, void*, cudaStream_t stream) override {
    if (shape_.n <= 0) return Status::ok();
    switch (shape_.qtype) {
      case DataType::kInt8: launch<int8_t>(in, out[0], stream); break;
      case DataType::kUInt8: launch<uint8_t>(in, out[0], stream); break;
      default: launch<int32_t>(in, out[0], stream); break;
    }
    return check_launch(cat(kDequantizeName, " for layer '", node_.name, "' (", shape_.n, " elements of ",
                            dtype_name(shape_.qtype), ")"));
  }

 private:
  template <class Q>
  void launch(const void* const* in, void* out, cudaStream_t stream) const {
    const Q* x = static_cast<const Q*>(in[0]);
    const float* scale = static_cast<const float*>(in[1]);
    const Q* zp = shape_.has_zero_point ? static_cast<const Q*>(in[2]) : nullptr;
    float* y = static_cast<float*>(out);
    if (vectorizable(shape_.n, shape_.plan, x, sizeof(Q), y, sizeof(float))) {
      const int64_t groups = shape_.n / 4;
      dequantize_kernel<Q, 4><<<grid_for(groups, kBlock), kBlock, 0, stream>>>(x, scale, zp, y, groups, shape_.plan);
    } else {
      dequantize_kernel<Q, 1><<<grid_for(shape_.n, kBlock), kBlock, 0, stream>>>(x, scale, zp, y, shape_.n,
                                                                                 shape_.plan);
    }
  }

  Node node_;
  QuantShape shape_;
};

Status require_float32_scale(const Node& n, const Graph& g, const char* kernel) {
  if (g.values[n.inputs[1]].dtype == DataType::kFloat32) return Status::ok();
  return Status(StatusCode::kUnsupported, cat(kernel, " takes a float32 scale, got ",
                                              dtype_name(g.values[n.inputs[1]].dtype)));
}

KernelDef quantize_def() {
  KernelDef d;
  d.name = kQuantizeName;
  d.op_type = "QuantizeLinear";
  d.supports = [](const Node& n, const Graph& g) {
    Status s = require_dtypes(n, g, {DataType::kFloat32}, kQuantizeName, /*all_inputs=*/false);
    return s.is_ok() ? require_float32_scale(n, g, kQuantizeName) : s;
  };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    return std::unique_ptr<CudaKernel>(std::make_unique<QuantizeKernel>(init.node));
  };
  d.host_input_form = quantize_host_form;
  return d;
}

KernelDef dequantize_def() {
  KernelDef d;
  d.name = kDequantizeName;
  d.op_type = "DequantizeLinear";
  d.supports = [](const Node& n, const Graph& g) {
    Status s = require_dtypes(n, g, {DataType::kInt8, DataType::kUInt8, DataType::kInt32}, kDequantizeName, false);
    return s.is_ok() ? require_float32_scale(n, g, kDequantizeName) : s;
  };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    return std::unique_ptr<CudaKernel>(std::make_unique<DequantizeKernel>(init.node));
  };
  return d;
}

const KernelRegistrar kQuantize{quantize_def()};
const KernelRegistrar kDequantize{dequantize_def()};

}  // namespace
}  // namespace kiln::cuda
