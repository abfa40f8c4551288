// MatMul on float32 through oneDNN's matmul primitive. reshape() builds the primitive for the concrete
// shapes (broadcast batch dims become dims of 1; batch dims that broadcast alike are merged to stay within
// oneDNN's rank limit); run() only swaps data handles and executes through the C API.
#include <cstring>
#include <memory>
#include <type_traits>

#include <oneapi/dnnl/dnnl.h>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"
#include "backends/cpu/cpu_util.h"
#include "backends/cpu/onednn_common.h"
#include "ops/matmul.h"
#include "ops/op_util.h"

namespace kiln::cpu {
namespace {

constexpr const char* kName = "cpu.f32.matmul.onednn";

// RAII for the C API handles (the C API lets run() execute without building an argument map).
struct DnnlDeleter {
  void operator()(dnnl_primitive_t p) const { dnnl_primitive_destroy(p); }
  void operator()(dnnl_primitive_desc_t p) const { dnnl_primitive_desc_destroy(p); }
  void operator()(dnnl_primitive_attr_t p) const { dnnl_primitive_attr_destroy(p); }
  void operator()(dnnl_memory_t p) const { dnnl_memory_destroy(p); }
  void operator()(dnnl_stream_t p) const { dnnl_stream_destroy(p); }
};
template <class H>
using DnnlHandle = std::unique_ptr<std::remove_pointer_t<H>, DnnlDeleter>;

// Batch dims of the output and of each operand (1 where it broadcasts), merged where possible.
struct BatchDims {
  Dims out, a, b;
};

BatchDims merge_batch(const MatMulShape& s) {
  BatchDims r;
  for (size_t d = 0; d < s.batch.size(); ++d) {
    if (s.batch[d] == 1) continue;
    const bool a_bc = s.a_batch[d] == 1, b_bc = s.b_batch[d] == 1;
    if (!r.out.empty() && (r.a.back() == 1) == a_bc && (r.b.back() == 1) == b_bc) {
      r.out.back() *= s.batch[d];
      if (!a_bc) r.a.back() *= s.batch[d];
      if (!b_bc) r.b.back() *= s.batch[d];
      continue;
    }
    r.out.push_back(s.batch[d]);
    r.a.push_back(a_bc ? 1 : s.batch[d]);
    r.b.push_back(b_bc ? 1 : s.batch[d]);
  }
  return r;
}

Status init_md(dnnl_memory_desc_t* md, Dims dims, const std::string& what) {
  const Dims strides = contiguous_strides(dims);
  dnnl_dims_t d, st;
  for (size_t i = 0; i < dims.size(); ++i) {
    d[i] = dims[i];
    st[i] = strides[i];
  }
  return onednn_check(dnnl_memory_desc_init_by_strides(md, static_cast<int>(dims.size()), d, dnnl_f32, st),
                      "dnnl_memory_desc_init_by_strides", what);
}

class MatMulKernel final : public CpuKernel {
 public:
  explicit MatMulKernel(dnnl_engine_t engine) : engine_(engine) {}

  Status init() {
    dnnl_stream_t s = nullptr;
    Status st = onednn_check(dnnl_stream_create(&s, engine_, dnnl_stream_default_flags), "dnnl_stream_create",
                             "creating the MatMul stream");
    stream_.reset(s);
    return st;
  }

  Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) override {
    const std::string what = fmt::format("MatMul A {} x B {}", shape_str(inputs[0].shape), shape_str(inputs[1].shape));
    auto shape = matmul_shape(inputs[0].shape, inputs[1].shape);
    if (!shape.is_ok()) return shape.status();
    prim_.reset();
    out_elements_ = volume(shape->out);
    zero_k_ = shape->k == 0;
    if (out_elements_ == 0 || zero_k_) return Status::ok();  // nothing to multiply: run() fills or skips

    const BatchDims bd = merge_batch(*shape);
    if (bd.out.size() + 2 > DNNL_MAX_NDIMS)
      return Status(StatusCode::kUnsupported, fmt::format("{}: {} batch dims exceed oneDNN's limit of {} dims", what,
                                                          bd.out.size(), DNNL_MAX_NDIMS));
    auto with = [](Dims batch, int64_t r, int64_t c) {
      batch.push_back(r);
      batch.push_back(c);
      return batch;
    };
    dnnl_memory_desc_t src_md, wei_md, dst_md;
    Status s = init_md(&src_md, with(bd.a, shape->m, shape->k), what);
    if (s.is_ok()) s = init_md(&wei_md, with(bd.b, shape->k, shape->n), what);
    if (s.is_ok()) s = init_md(&dst_md, with(bd.out, shape->m, shape->n), what);
    if (!s.is_ok()) return s;

    dnnl_matmul_desc_t desc;
    s = onednn_check(dnnl_matmul_desc_init(&desc, &src_md, &wei_md, nullptr, &dst_md), "dnnl_matmul_desc_init", what);
    if (!s.is_ok()) return s;
    // User scratchpad: allocated here once so that run() never allocates.
    dnnl_primitive_attr_t attr_raw = nullptr;
    s = onednn_check(dnnl_primitive_attr_create(&attr_raw), "dnnl_primitive_attr_create", what);
    if (!s.is_ok()) return s;
    DnnlHandle<dnnl_primitive_attr_t> attr(attr_raw);
    s = onednn_check(dnnl_primitive_attr_set_scratchpad_mode(attr.get(), dnnl_scratchpad_mode_user),
                     "dnnl_primitive_attr_set_scratchpad_mode", what);
    if (!s.is_ok()) return s;
    dnnl_primitive_desc_t pd_raw = nullptr;
    s = onednn_check(dnnl_primitive_desc_create(&pd_raw, &desc, attr.get(), engine_, nullptr),
                     "dnnl_primitive_desc_create", what);
    if (!s.is_ok()) return s;
    DnnlHandle<dnnl_primitive_desc_t> pd(pd_raw);
    dnnl_primitive_t prim_raw = nullptr;
    s = onednn_check(dnnl_primitive_create(&prim_raw, pd.get()), "dnnl_primitive_create", what);
    if (!s.is_ok()) return s;
    prim_.reset(prim_raw);

    const dnnl_memory_desc_t* scratch_md = dnnl_primitive_desc_query_md(pd.get(), dnnl_query_scratchpad_md, 0);
    const size_t scratch_bytes = scratch_md ? dnnl_memory_desc_get_size(scratch_md) : 0;
    scratch_buf_.resize(scratch_bytes);
    s = make_memory(&src_, src_md, nullptr, what);
    if (s.is_ok()) s = make_memory(&wei_, wei_md, nullptr, what);
    if (s.is_ok()) s = make_memory(&dst_, dst_md, nullptr, what);
    if (s.is_ok() && scratch_bytes > 0) s = make_memory(&scratch_, *scratch_md, scratch_buf_.data(), what);
    if (!s.is_ok()) return s;
    nargs_ = 0;
    args_[nargs_++] = {DNNL_ARG_SRC, src_.get()};
    args_[nargs_++] = {DNNL_ARG_WEIGHTS, wei_.get()};
    args_[nargs_++] = {DNNL_ARG_DST, dst_.get()};
    if (scratch_bytes > 0) args_[nargs_++] = {DNNL_ARG_SCRATCHPAD, scratch_.get()};
    return Status::ok();
  }

  Status run(const void* const* inputs, void* const* outputs) override {
    if (out_elements_ == 0) return Status::ok();
    if (zero_k_) {  // an empty sum is 0
      std::memset(outputs[0], 0, static_cast<size_t>(out_elements_) * sizeof(float));
      return Status::ok();
    }
    dnnl_stream_t stream = stream_.get();
    Status s = onednn_check(dnnl_memory_set_data_handle_v2(src_.get(), const_cast<void*>(inputs[0]), stream),
                            "dnnl_memory_set_data_handle_v2", "MatMul input A");
    if (s.is_ok())
      s = onednn_check(dnnl_memory_set_data_handle_v2(wei_.get(), const_cast<void*>(inputs[1]), stream),
                       "dnnl_memory_set_data_handle_v2", "MatMul input B");
    if (s.is_ok())
      s = onednn_check(dnnl_memory_set_data_handle_v2(dst_.get(), outputs[0], stream),
                       "dnnl_memory_set_data_handle_v2", "MatMul output");
    if (s.is_ok())
      s = onednn_check(dnnl_primitive_execute(prim_.get(), stream, nargs_, args_), "dnnl_primitive_execute", "MatMul");
    if (s.is_ok()) s = onednn_check(dnnl_stream_wait(stream), "dnnl_stream_wait", "MatMul");
    return s;
  }

 private:
  Status make_memory(DnnlHandle<dnnl_memory_t>* out, const dnnl_memory_desc_t& md, void* handle,
                     const std::string& what) {
    dnnl_memory_t m = nullptr;
    Status s = onednn_check(dnnl_memory_create(&m, &md, engine_, handle ? handle : DNNL_MEMORY_NONE),
                            "dnnl_memory_create", what);
    out->reset(m);
    return s;
  }

  dnnl_engine_t engine_;
  DnnlHandle<dnnl_stream_t> stream_;
  DnnlHandle<dnnl_primitive_t> prim_;
  DnnlHandle<dnnl_memory_t> src_, wei_, dst_, scratch_;
  std::vector<uint8_t> scratch_buf_;
  dnnl_exec_arg_t args_[4] = {};
  int nargs_ = 0;
  int64_t out_elements_ = 0;
  bool zero_k_ = false;
};

CpuKernelDef matmul_kernel_def() {
  CpuKernelDef def;
  def.name = kName;
  def.op_type = "MatMul";
  def.priority = 10;
  def.supports = [](const Node& node, const Graph& graph) {
    return require_dtypes(node, graph, {DataType::kFloat32}, kName);
  };
  def.create = [](const KernelInit&) -> Result<std::unique_ptr<CpuKernel>> {
    auto engine = onednn_cpu_engine();
    if (!engine.is_ok()) return engine.status();
    auto k = std::make_unique<MatMulKernel>(*engine);
    Status s = k->init();
    if (!s.is_ok()) return s;
    return std::unique_ptr<CpuKernel>(std::move(k));
  };
  return def;
}

const KernelRegistrar kMatMul{matmul_kernel_def()};

}  // namespace
}  // namespace kiln::cpu
