#include "backends/cpu/onednn_gemm.h"

#include <array>
#include <cstring>

#include <fmt/format.h>

#include "backends/cpu/cpu_util.h"
#include "backends/cpu/onednn_common.h"
#include "ops/quantize.h"

namespace kiln::cpu {
namespace {

using dnnl::memory;
using tag = memory::format_tag;

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine(onednn_cpu_engine().value(), /*weak=*/true);
  return engine;
}

Status dnnl_failure(const dnnl::error& e, const std::string& what) {
  return Status(StatusCode::kRuntimeError, fmt::format("oneDNN failed {}: {} (status {})", what, e.what(),
                                                       static_cast<int>(e.status)));
}


class GemmKernel final : public CpuKernel {
 public:
  GemmKernel(const std::string& layer, GemmAttrs attrs, const Tensor* b_const, const Tensor* c_const, MatmulTypes types = {},
             std::vector<float> owned_bias = {}, bool one_thread = false)
      : node_name_(layer), at_(attrs), b_const_(b_const), c_const_(c_const), types_(std::move(types)),
        owned_bias_(std::move(owned_bias)), one_thread_(one_thread), stream_(cpu_engine()) {
    if (!owned_bias_.empty()) c_const_ = nullptr;
  }

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>& out) override {
    const Dims& a = in[0].shape;
    const Dims& b = in[1].shape;
    k_ = at_.trans_a ? a[0] : a.back();
    m_ = at_.trans_a ? a[1] : volume(Dims(a.begin(), a.end() - 1));
    n_ = at_.trans_b ? b[0] : b[1];
    has_c_ = (in.size() > 2 && in[2].dtype != DataType::kUndefined) || !owned_bias_.empty();
    bias_vector_ = false;
    if (has_c_) {
      Dims cs = owned_bias_.empty() ? in[2].shape : Dims{n_};
      while (cs.size() < 2) cs.insert(cs.begin(), 1);
      c_rows_ = cs[0];
      c_cols_ = cs[1];
      bias_vector_ = at_.beta == 1.f && c_rows_ == 1 && c_cols_ == n_;
    }
    const std::string what = fmt::format("creating matmul [{}x{}]x[{}x{}] for layer '{}'", m_, k_, k_, n_, node_name_);
    if (m_ == 0 || n_ == 0 || k_ == 0) {
      have_prim_ = false;
      return Status::ok();
    }
    have_prim_ = false;
    serial_ = one_thread_ || m_ * n_ * k_ < kSerialMacs;
    ScopedOmpThreads threads(serial_ ? 1 : 0);  // planned for the team it will run with
    try {
      const memory::dims a_strides = at_.trans_a ? memory::dims{1, m_} : memory::dims{k_, 1};
      memory::desc a_md({m_, k_}, types_.a, a_strides);
      memory::desc b_plain({k_, n_}, types_.b, at_.trans_b ? memory::dims{1, k_} : memory::dims{n_, 1});
      memory::desc b_md = b_const_ ? memory::desc({k_, n_}, types_.b, tag::any) : b_plain;
      // The constant as stored: float32 weights of a BF16 product are converted by the one-time reorder.
      const memory::desc b_stored =
          b_const_ && b_const_->dtype == DataType::kFloat32 && types_.b != memory::data_type::f32
              ? memory::desc({k_, n_}, memory::data_type::f32, at_.trans_b ? memory::dims{1, k_} : memory::dims{n_, 1})
              : b_plain;
      memory::desc y_md({m_, n_}, types_.y, tag::ab);
      dnnl::post_ops po;
      // A C that varies by row is written into Y first and added by the sum post-op.
      if (has_c_ && !bias_vector_) po.append_sum(1.f);
      switch (at_.activation) {
        case Activation::kNone: break;
        case Activation::kRelu: po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f); break;
        case Activation::kLeakyRelu:
          po.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, at_.activation_alpha, 0.f);
          break;
        case Activation::kSigmoid: po.append_eltwise(1.f, dnnl::algorithm::eltwise_logistic, 0.f, 0.f); break;
        case Activation::kTanh: po.append_eltwise(1.f, dnnl::algorithm::eltwise_tanh, 0.f, 0.f); break;
      }
      if (types_.y_inv_scale > 0) po.append_eltwise(1.f, dnnl::algorithm::eltwise_linear, types_.y_inv_scale, 0.f);
      dnnl::primitive_attr attr;
      attr.set_post_ops(po);
      attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
      if (at_.alpha != 1.f) attr.set_output_scales(0, {at_.alpha});
      if (!types_.out_scales.empty()) attr.set_output_scales(1 << 1, types_.out_scales);
      dnnl::matmul::primitive_desc pd =
          bias_vector_ ? dnnl::matmul::primitive_desc(
                             dnnl::matmul::desc(a_md, b_md, memory::desc({1, n_}, memory::data_type::f32, tag::ab), y_md),
                             attr, cpu_engine())
                       : dnnl::matmul::primitive_desc(dnnl::matmul::desc(a_md, b_md, y_md), attr, cpu_engine());
      prim_ = dnnl::matmul(pd);
      have_prim_ = true;
      a_mem_ = memory(a_md, cpu_engine(), DNNL_MEMORY_NONE);
      y_mem_ = memory(y_md, cpu_engine(), DNNL_MEMORY_NONE);
      scratch_ = memory(pd.scratchpad_desc(), cpu_engine());
      if (b_const_) {
        b_mem_ = packed_weights(pd.weights_desc(), b_stored);
      } else {
        b_mem_ = memory(b_plain, cpu_engine(), DNNL_MEMORY_NONE);
      }
      if (bias_vector_)
        bias_mem_ = memory(memory::desc({1, n_}, memory::data_type::f32, tag::ab), cpu_engine(),
                           const_cast<float*>(!owned_bias_.empty() ? owned_bias_.data()
                                              : c_const_                ? c_const_->data<float>()
                                                                        : nullptr));
      bound_ = {};
      args_.clear();
      args_.push_back({DNNL_ARG_SRC, a_mem_.get()});
      args_.push_back({DNNL_ARG_WEIGHTS, b_mem_.get()});
      if (bias_vector_) args_.push_back({DNNL_ARG_BIAS, bias_mem_.get()});
      args_.push_back({DNNL_ARG_DST, y_mem_.get()});
      args_.push_back({DNNL_ARG_SCRATCHPAD, scratch_.get()});
    } catch (const dnnl::error& e) {
      return dnnl_failure(e, what);
    }
    return Status::ok();
  }

  Status run(const void* const* in, void* const* out) override {
    float* y = static_cast<float*>(out[0]);
    if (!have_prim_) {  // an empty product: Y = act(beta*C) or nothing at all
      if (m_ * n_ > 0 && types_.out_scales.empty()) fill_from_c(y, static_cast<const float*>(has_c_ ? in[2] : nullptr), true);
      if (m_ * n_ > 0 && !types_.out_scales.empty()) fill_quantized_bias(out[0]);
      return Status::ok();
    }
    if (has_c_ && !bias_vector_) fill_from_c(y, static_cast<const float*>(in[2]), false);
    // Addresses rarely change between runs; re-binding only on change keeps oneDNN's checks off the hot path.
    dnnl_status_t st = dnnl_success;
    auto bind = [&](memory& m, const void*& last, const void* p) {
      if (st == dnnl_success && p != last) {
        st = dnnl_memory_set_data_handle(m.get(), const_cast<void*>(p));
        last = p;
      }
    };
    bind(a_mem_, bound_[0], in[0]);
    bind(y_mem_, bound_[1], y);
    if (!b_const_) bind(b_mem_, bound_[2], in[1]);
    if (bias_vector_ && !c_const_ && owned_bias_.empty()) bind(bias_mem_, bound_[3], in[2]);
    ScopedOmpThreads threads(serial_ ? 1 : 0);
    if (st == dnnl_success)
      st = dnnl_primitive_execute(prim_.get(), stream_.get(), static_cast<int>(args_.size()), args_.data());
    if (st == dnnl_success) st = dnnl_stream_wait(stream_.get());
    if (st != dnnl_success)
      return Status(StatusCode::kRuntimeError, fmt::format("oneDNN matmul execution failed with status {} "
                                                           "([{}x{}]x[{}x{}])", static_cast<int>(st), m_, k_, k_, n_));
    return Status::ok();
  }

 private:
  // Weights in the layout the primitive wants, reordered from the engine's [K,N] copy once per layout.
  memory packed_weights(const memory::desc& want, const memory::desc& plain) {
    for (auto& [md, mem] : packed_)
      if (md == want) return mem;
    memory src(plain, cpu_engine(), const_cast<uint8_t*>(b_const_->raw()));
    if (want == plain) {
      packed_.emplace_back(want, src);
      return src;
    }
    memory dst(want, cpu_engine());
    dnnl::reorder(src, dst).execute(stream_, src, dst);
    stream_.wait();
    packed_.emplace_back(want, dst);
    return dst;
  }

  // Y = beta*C broadcast to [M,N] (activation applied too when no GEMM follows).
  void fill_from_c(float* y, const float* c, bool activate) const {
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        double v = c ? at_.beta * c[(c_rows_ == 1 ? 0 : i) * c_cols_ + (c_cols_ == 1 ? 0 : j)] : 0.0;
        y[i * n_ + j] = static_cast<float>(activate ? apply_activation(at_.activation, v, at_.activation_alpha) : v);
      }
  }

  // INT8 with K = 0: Y = act(bias), requantized when the output is int8.
  void fill_quantized_bias(void* y) const {
    for (int64_t i = 0; i < m_; ++i)
      for (int64_t j = 0; j < n_; ++j) {
        const double b = owned_bias_.empty() ? 0.0 : owned_bias_[j] * types_.out_scales[j];
        const double v = apply_activation(at_.activation, b, at_.activation_alpha);
        if (types_.y_inv_scale > 0)
          static_cast<int8_t*>(y)[i * n_ + j] = static_cast<int8_t>(quantize_saturate(static_cast<float>(v * types_.y_inv_scale), -128, 127));
        else
          static_cast<float*>(y)[i * n_ + j] = static_cast<float>(v);
      }
  }

  std::string node_name_;
  GemmAttrs at_;
  const Tensor* b_const_;
  const Tensor* c_const_;
  MatmulTypes types_;
  std::vector<float> owned_bias_;  // INT8: bias / out_scale, in the int32 accumulator's units
  bool one_thread_ = false;        // always serial_ (make_onednn_gemm's one_thread)
  dnnl::stream stream_;
  int64_t m_ = 0, k_ = 0, n_ = 0, c_rows_ = 1, c_cols_ = 1;
  bool has_c_ = false, bias_vector_ = false, have_prim_ = false;
  bool serial_ = false;  // a small product: one thread (kSerialMacs)
  dnnl::matmul prim_;
  memory a_mem_, b_mem_, y_mem_, bias_mem_, scratch_;
  std::vector<dnnl_exec_arg_t> args_;
  std::array<const void*, 4> bound_{};  // addresses currently set on a/y/b/bias memories
  std::vector<std::pair<memory::desc, memory>> packed_;
};

}  // namespace

OnednnToBf16::OnednnToBf16() : stream_(std::make_unique<dnnl::stream>(cpu_engine())) {}
OnednnToBf16::~OnednnToBf16() = default;

Status OnednnToBf16::reshape(int64_t rows, int64_t k, bool one_thread) {
  ready_ = false;
  serial_ = one_thread || rows * k < kSerialMacs;
  if (rows * k == 0) return Status::ok();
  ScopedOmpThreads threads(serial_ ? 1 : 0);
  try {
    const memory::desc from({rows, k}, memory::data_type::f32, tag::ab), to({rows, k}, memory::data_type::bf16, tag::ab);
    prim_ = std::make_unique<dnnl::reorder>(dnnl::reorder::primitive_desc(cpu_engine(), from, cpu_engine(), to));
    from_ = std::make_unique<memory>(from, cpu_engine(), static_cast<void*>(DNNL_MEMORY_NONE));
    to_ = std::make_unique<memory>(to, cpu_engine(), static_cast<void*>(DNNL_MEMORY_NONE));
  } catch (const dnnl::error& e) {
    return dnnl_failure(e, fmt::format("creating the float32 -> bf16 reorder [{}x{}]", rows, k));
  }
  ready_ = true;
  return Status::ok();
}

Status OnednnToBf16::run(const float* x, void* y) {
  if (!ready_) return Status::ok();
  dnnl_status_t st = dnnl_memory_set_data_handle(from_->get(), const_cast<float*>(x));
  if (st == dnnl_success) st = dnnl_memory_set_data_handle(to_->get(), y);
  const dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from_->get()}, {DNNL_ARG_TO, to_->get()}};
  ScopedOmpThreads threads(serial_ ? 1 : 0);
  if (st == dnnl_success) st = dnnl_primitive_execute(prim_->get(), stream_->get(), 2, args);
  if (st == dnnl_success) st = dnnl_stream_wait(stream_->get());
  if (st != dnnl_success)
    return Status(StatusCode::kRuntimeError, fmt::format("oneDNN float32 -> bf16 reorder failed with status {}",
                                                         static_cast<int>(st)));
  return Status::ok();
}

Result<std::unique_ptr<CpuKernel>> make_onednn_gemm(const std::string& layer, const GemmAttrs& attrs,
                                                    const Tensor* b_const, const Tensor* c_const, MatmulTypes types,
                                                    std::vector<float> owned_bias, bool one_thread) {
  if (auto engine = onednn_cpu_engine(); !engine.is_ok()) return engine.status();
  try {
    return std::unique_ptr<CpuKernel>(std::make_unique<GemmKernel>(layer, attrs, b_const, c_const, std::move(types),
                                                                   std::move(owned_bias), one_thread));
  } catch (const dnnl::error& e) {
    return dnnl_failure(e, "creating a stream for layer '" + layer + "'");
  }
}

}  // namespace kiln::cpu
