// ExecutionContext: per-user shapes, addresses, arena and kernel instances. execute() walks a
// precomputed pointer table; shape changes and address changes are handled outside the hot loop.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "builder/shape_inference.h"
#include "kiln/gpu.h"
#include "ops/quantize.h"
#include "runtime/engine_impl.h"
#include "runtime/host_io.h"

namespace kiln {

Result<std::unique_ptr<ContextImpl>> ContextImpl::create(std::shared_ptr<const EngineImpl> engine) {
  auto c = std::unique_ptr<ContextImpl>(new ContextImpl());
  c->engine_ = std::move(engine);
  const EngineImpl& e = *c->engine_;
  c->graph_ = &e.model.graph;
  const Graph& g = *c->graph_;
  auto backend = e.backend->create_context(e.model);
  if (!backend.is_ok()) return backend.status();
  c->backend_ = std::move(backend).value();
  c->io_addr_.assign(e.io_names.size(), nullptr);
  c->io_loc_.assign(e.io_names.size(), MemoryLocation::kDevice);
  c->input_shapes_.resize(g.inputs.size());
  c->input_shape_set_.assign(g.inputs.size(), 0);
  c->input_host_form_.assign(g.inputs.size(), 0);
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const ShapeProfile& p = e.model.profiles[i];
    if (p.min == p.max) {  // static inputs need no set_input_shape
      c->input_shapes_[i] = p.min;
      c->input_shape_set_[i] = 1;
    }
  }
  c->layer_in_.resize(g.nodes.size());
  c->layer_out_.resize(g.nodes.size());
  c->tables_.inputs.resize(g.nodes.size());
  c->tables_.outputs.resize(g.nodes.size());
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    c->tables_.inputs[l].assign(g.nodes[l].inputs.size(), nullptr);
    c->tables_.outputs[l].assign(g.nodes[l].outputs.size(), nullptr);
  }
  return c;
}

ContextImpl::~ContextImpl() {
  if (low_latency_) backend_->stop_low_latency();
}

Status ContextImpl::set_input_shape(const std::string& name, const Dims& dims) {
  const EngineImpl& e = *engine_;
  const int io = e.io_index(name);
  if (io < 0 || io >= e.num_inputs) {
    std::string names;
    for (int i = 0; i < e.num_inputs; ++i) names += (i ? ", " : "") + e.io_names[i];
    return Status(StatusCode::kInvalidArgument, fmt::format("'{}' is not an input of this engine (inputs: {})", name, names));
  }
  const ShapeProfile& p = e.model.profiles[io];
  bool inside = dims.size() == p.min.size();
  for (size_t d = 0; inside && d < dims.size(); ++d) inside = dims[d] >= p.min[d] && dims[d] <= p.max[d];
  if (!inside)
    return Status(StatusCode::kOutOfRange,
                  fmt::format("shape {} for input '{}' is outside the engine's profile (min {}, max {})",
                              dims_to_string(dims), name, dims_to_string(p.min), dims_to_string(p.max)));
  if (input_shapes_[io] != dims || !input_shape_set_[io]) {
    input_shapes_[io] = dims;
    input_shape_set_[io] = 1;
    shapes_dirty_ = true;
  }
  return Status::ok();
}

Status ContextImpl::set_input_host_form(int io, bool on) {
  const EngineImpl& e = *engine_;
  if (io < 0 || io >= e.num_inputs) return Status(StatusCode::kInvalidArgument, fmt::format("no input #{}", io));
  if (on && !e.input_host_form[static_cast<size_t>(io)])
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("input '{}' cannot be bound converted: some layer reads it at float32", e.io_names[io]));
  if (static_cast<bool>(input_host_form_[static_cast<size_t>(io)]) != on) {
    input_host_form_[static_cast<size_t>(io)] = on;
    shapes_dirty_ = true;
  }
  return Status::ok();
}

Status ContextImpl::update_shapes() {
  const EngineImpl& e = *engine_;
  for (int i = 0; i < e.num_inputs; ++i)
    if (!input_shape_set_[i])
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("input '{}' has dynamic dims [{}]: call set_input_shape first", e.io_names[i],
                                dims_to_string(graph_->values[graph_->inputs[i]].shape, ",")));
  Status s = infer_concrete_shapes(*graph_, input_shapes_, &shapes_);
  if (!s.is_ok()) return s;
  const Graph& g = *graph_;
  // Inputs bound converted (host IO: float16 or int8), and the views of them.
  if (std::find(input_host_form_.begin(), input_host_form_.end(), 1) != input_host_form_.end())
    for (size_t v = 0; v < g.values.size(); ++v) {
      const int root = e.view_root(static_cast<int>(v));
      const auto& st = e.model.storage[static_cast<size_t>(root)];
      if (st.kind == StorageKind::kInput && input_host_form_[static_cast<size_t>(st.io_index)])
        shapes_[v].dtype = e.input_host_form[static_cast<size_t>(st.io_index)].dtype;
    }
  // The plan holds each value's size at the profile's largest shapes; never write past it.
  for (size_t v = 0; v < g.values.size(); ++v) {
    const auto& st = e.model.storage[v];
    if (st.kind == StorageKind::kArena &&
        static_cast<uint64_t>(volume(shapes_[v].shape)) * dtype_size(shapes_[v].dtype) > st.max_bytes)
      return Status(StatusCode::kInternal, fmt::format("value '{}' [{}] exceeds its planned {} bytes", g.values[v].name,
                                                       dims_to_string(shapes_[v].shape, ","), st.max_bytes));
  }
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    const Node& n = g.nodes[l];
    if (n.kernel == kViewKernel) continue;
    std::vector<TensorDesc> ins, outs;
    for (int v : n.inputs) ins.push_back(v == kNoValue ? TensorDesc{} : shapes_[v]);
    for (int v : n.outputs) outs.push_back(shapes_[v]);
    auto same = [](const std::vector<TensorDesc>& a, const std::vector<TensorDesc>& b) {
      if (a.size() != b.size()) return false;
      for (size_t i = 0; i < a.size(); ++i)
        if (a[i].dtype != b[i].dtype || a[i].shape != b[i].shape) return false;
      return true;
    };
    if (same(ins, layer_in_[l]) && same(outs, layer_out_[l])) continue;
    s = backend_->reshape(l, ins, outs);
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("layer '{}' ({})", n.name, n.kernel));
    layer_in_[l] = std::move(ins);
    layer_out_[l] = std::move(outs);
  }
  shapes_dirty_ = false;
  ptrs_dirty_ = true;  // views and kernels may now see different extents
  return Status::ok();
}

void* ContextImpl::value_ptr(int v) const {
  const auto& st = engine_->model.storage;
  while (st[v].kind == StorageKind::kView) v = st[v].view_of;
  switch (st[v].kind) {
    case StorageKind::kArena: return backend_->arena() + st[v].arena_offset;
    case StorageKind::kInput: return io_addr_[st[v].io_index];
    case StorageKind::kOutput: return io_addr_[engine_->num_inputs + st[v].io_index];
    case StorageKind::kConstant: return const_cast<void*>(backend_->constant(v));
    default: return nullptr;
  }
}

Status ContextImpl::require_addresses() const {
  for (size_t i = 0; i < io_addr_.size(); ++i)
    if (!io_addr_[i])
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("no address set for {} tensor '{}' (call set_tensor_address)",
                                static_cast<int>(i) < engine_->num_inputs ? "input" : "output", engine_->io_names[i]));
  return Status::ok();
}

Status ContextImpl::update_pointers() {
  Status s = require_addresses();
  if (!s.is_ok()) return s;
  const Graph& g = *graph_;
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    const Node& n = g.nodes[l];
    for (size_t i = 0; i < n.inputs.size(); ++i)
      tables_.inputs[l][i] = n.inputs[i] == kNoValue ? nullptr : value_ptr(n.inputs[i]);
    for (size_t i = 0; i < n.outputs.size(); ++i) tables_.outputs[l][i] = value_ptr(n.outputs[i]);
  }
  backend_->invalidate();
  ptrs_dirty_ = false;
  return Status::ok();
}

Result<Dims> ContextImpl::tensor_shape(const std::string& name) {
  const int io = engine_->io_index(name);
  if (io < 0) return Status(StatusCode::kNotFound, fmt::format("'{}' is not an IO tensor of this engine", name));
  if (shapes_dirty_) {
    Status s = update_shapes();
    if (!s.is_ok()) return s;
  }
  return shapes_[engine_->io_values[io]].shape;
}

Status ContextImpl::set_tensor_address(const std::string& name, void* address) {
  const int io = engine_->io_index(name);
  if (io < 0) return Status(StatusCode::kNotFound, fmt::format("'{}' is not an IO tensor of this engine", name));
  if (!address) return Status(StatusCode::kInvalidArgument, fmt::format("null address for tensor '{}'", name));
  if (io_addr_[io] == address) return Status::ok();
  auto where = backend_->locate(address);
  if (!where.is_ok()) return std::move(where).take_status().with_context(fmt::format("tensor '{}'", name));
  // GPU kernels use 16-byte vector loads and cuBLASLt algorithms chosen for aligned operands. Host
  // memory is only copied from and to, so any address will do.
  if (engine_->on_gpu() && *where == MemoryLocation::kDevice && reinterpret_cast<uintptr_t>(address) % 16 != 0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("device address for tensor '{}' must be 16-byte aligned (cudaMalloc memory is)", name));
  io_addr_[io] = address;
  io_loc_[io] = *where;
  ptrs_dirty_ = true;
  return Status::ok();
}

MemoryLocation ContextImpl::tensor_location(const std::string& name) const {
  const int io = engine_->io_index(name);
  return io < 0 ? MemoryLocation::kDevice : io_loc_[io];
}

bool ContextImpl::any_host_io() const {
  for (MemoryLocation m : io_loc_)
    if (m != MemoryLocation::kDevice) return true;
  return false;
}

Status ContextImpl::set_low_latency(bool on, int max_rows) {
  if (on == low_latency_ && (!on || max_rows == low_latency_rows_)) return Status::ok();
  if (low_latency_) {
    backend_->stop_low_latency();
    low_latency_ = false;
  }
  if (!on) return Status::ok();
  if (!engine_->on_gpu())
    return Status(StatusCode::kUnsupported,
                  "low-latency mode is for CUDA engines (a CPU engine already runs on the calling thread)");
  if (max_rows < 1) return Status(StatusCode::kInvalidArgument, fmt::format("low-latency max_rows must be >= 1, got {}", max_rows));
  Status s = backend_->start_low_latency(max_rows);
  if (!s.is_ok()) return std::move(s).with_context("starting low-latency mode");
  low_latency_ = true;
  low_latency_rows_ = max_rows;
  return Status::ok();
}

Status ContextImpl::execute_low_latency() {
  const EngineImpl& e = *engine_;
  if (observer_ || profiling)
    return Status(StatusCode::kInvalidArgument,
                  "profiling and layer observers run layer by layer: turn low-latency mode off for them");
  if (shapes_dirty_) {
    Status s = update_shapes();
    if (!s.is_ok()) return s;
  }
  Status set = require_addresses();
  if (!set.is_ok()) return set;
  std::vector<const void*> ins;
  std::vector<void*> outs;
  std::vector<MemoryLocation> in_where, out_where;
  std::vector<TensorDesc> in_desc, out_desc;
  for (size_t i = 0; i < io_addr_.size(); ++i) {
    const bool input = static_cast<int>(i) < e.num_inputs;
    const TensorDesc& d = shapes_[e.io_values[i]];
    if (input) {
      if (d.shape.empty() || d.shape[0] > low_latency_rows_)
        return Status(StatusCode::kOutOfRange,
                      fmt::format("input '{}' [{}] has more than the {} rows low-latency mode was started for",
                                  e.io_names[i], dims_to_string(d.shape, ","), low_latency_rows_));
      ins.push_back(io_addr_[i]);
      in_where.push_back(io_loc_[i]);
      in_desc.push_back(d);
    } else {
      outs.push_back(io_addr_[i]);
      out_where.push_back(io_loc_[i]);
      out_desc.push_back(d);
    }
  }
  return backend_->run_low_latency(ins.data(), in_where.data(), in_desc.data(), outs.data(), out_where.data(),
                                   out_desc.data());
}

void* ContextImpl::tensor_address(const std::string& name) const {
  const int io = engine_->io_index(name);
  return io < 0 ? nullptr : io_addr_[io];
}

Status ContextImpl::prepare() {
  if (shapes_dirty_) {
    Status s = update_shapes();
    if (!s.is_ok()) return s;
  }
  if (ptrs_dirty_) {
    Status s = update_pointers();
    if (!s.is_ok()) return s;
  }
  return Status::ok();
}

void ContextImpl::set_layer_observer(std::function<void(const LayerOutput&)> observer) {
  observer_ = std::move(observer);
  if (observer_ && int8_scales_.empty()) {
    int8_scales_.resize(graph_->values.size());
    for (size_t v = 0; v < int8_scales_.size(); ++v)
      int8_scales_[v] = int8_value_scale(*graph_, static_cast<int>(v)).value_or(0.f);
  }
}

Status ContextImpl::run_layers(void* stream, std::vector<LayerTiming>* layer_times) {
  if (!observer_) return backend_->enqueue(tables_, stream, layer_times, nullptr);
  const Graph& g = *graph_;
  const AfterLayer report = [&](size_t l, const void* const* outputs) -> Status {
    const Node& n = g.nodes[l];
    for (size_t i = 0; i < n.outputs.size(); ++i) {
      const int v = n.outputs[i];
      if (!outputs[i] || engine_->model.storage[v].kind == StorageKind::kUnused) continue;
      // The observer is the caller's code: its exceptions become a Status like every other failure.
      try {
        observer_(LayerOutput{n.name, g.values[v].name, shapes_[v].dtype, shapes_[v].shape, outputs[i], int8_scales_[v]});
      } catch (const std::exception& e) {
        return Status(StatusCode::kRuntimeError, fmt::format("the layer observer threw: {}", e.what()))
            .with_context(fmt::format("layer '{}' ({})", n.name, n.kernel));
      }
    }
    return Status::ok();
  };
  return backend_->enqueue(tables_, stream, layer_times, &report);
}

Status ContextImpl::enqueue(void* stream) {
  for (size_t i = 0; i < io_loc_.size(); ++i)
    if (io_loc_[i] != MemoryLocation::kDevice)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("tensor '{}' is in host memory: enqueue() takes device addresses (execute() and "
                                "infer() take host memory)", engine_->io_names[i]));
  Status s = prepare();
  if (!s.is_ok()) return s;
  return run_layers(stream, nullptr);
}

Status ContextImpl::execute() {
  if (low_latency_) return execute_low_latency();
  if (engine_->on_gpu() && any_host_io()) return execute_host_io();
  Status s = prepare();
  if (!s.is_ok()) return s;
  if (profiling) timings.clear();
  s = run_layers(nullptr, profiling ? &timings : nullptr);
  if (!s.is_ok()) return s;
  return backend_->synchronize(nullptr);
}

Result<std::map<std::string, HostTensor>> ContextImpl::infer(const std::map<std::string, HostTensor>& inputs) {
  const EngineImpl& e = *engine_;
  for (const auto& [name, t] : inputs) {
    const int io = e.io_index(name);
    if (io < 0 || io >= e.num_inputs)
      return Status(StatusCode::kInvalidArgument, fmt::format("'{}' is not an input of this engine", name));
    const DataType want = graph_->values[e.io_values[io]].dtype;
    if (t.dtype != want)
      return Status(StatusCode::kInvalidArgument, fmt::format("input '{}' must be {}, got {}", name, dtype_name(want),
                                                              dtype_name(t.dtype)));
    if (t.bytes.size() != static_cast<size_t>(volume(t.shape)) * dtype_size(t.dtype))
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("input '{}': {} bytes do not match shape [{}]", name, t.bytes.size(),
                                dims_to_string(t.shape, ",")));
    Status s = set_input_shape(name, t.shape);
    if (!s.is_ok()) return s;
  }
  for (int i = 0; i < e.num_inputs; ++i)
    if (!inputs.count(e.io_names[i]))
      return Status(StatusCode::kInvalidArgument, fmt::format("missing input '{}'", e.io_names[i]));
  std::map<std::string, HostTensor> outputs;
  for (size_t i = e.num_inputs; i < e.io_names.size(); ++i) {
    auto shape = tensor_shape(e.io_names[i]);
    if (!shape.is_ok()) return shape.status();
    HostTensor& t = outputs[e.io_names[i]];
    t.dtype = graph_->values[e.io_values[i]].dtype;
    t.shape = *shape;
    t.bytes.resize(static_cast<size_t>(volume(t.shape)) * dtype_size(t.dtype));
  }
  // CUDA engines take the host addresses too: execute() copies in and out (host_io.h).
  Status s = run_on_host(inputs, outputs);
  if (!s.is_ok()) return s;
  return outputs;
}

Status ContextImpl::run_on_host(const std::map<std::string, HostTensor>& inputs,
                                std::map<std::string, HostTensor>& outputs) {
  // At least one byte so that a zero-size tensor still has a valid address.
  static uint8_t empty[64];
  for (const auto& [name, t] : inputs) {
    Status s = set_tensor_address(name, t.bytes.empty() ? empty : const_cast<uint8_t*>(t.bytes.data()));
    if (!s.is_ok()) return s;
  }
  for (auto& [name, t] : outputs) {
    Status s = set_tensor_address(name, t.bytes.empty() ? empty : t.bytes.data());
    if (!s.is_ok()) return s;
  }
  return execute();
}

Status ContextImpl::execute_host_io() {
  const EngineImpl& e = *engine_;
  if (shapes_dirty_) {
    Status s = update_shapes();
    if (!s.is_ok()) return s;
  }
  Status set = require_addresses();
  if (!set.is_ok()) return set;
  if (!host_io_) host_io_ = std::make_unique<HostIoPipeline>(engine_, e.batch_split_blocker);
  std::vector<TensorDesc> desc;
  for (int v : e.io_values) desc.push_back(shapes_[v]);
  HostIoRun r;
  r.addr = &io_addr_;
  r.where = &io_loc_;
  r.desc = &desc;
  r.cuda_graph = cuda_graph_;
  r.threads = threads;
  r.observer = observer_;
  if (profiling) {
    timings.clear();
    r.timings = &timings;
  }
  return host_io_->run(r);
}

// Public wrappers.
ExecutionContext::ExecutionContext(std::unique_ptr<ContextImpl> impl) : impl_(std::move(impl)) {}
ExecutionContext::~ExecutionContext() = default;
Status ExecutionContext::set_input_shape(const std::string& name, const Dims& dims) {
  return impl_->set_input_shape(name, dims);
}
Result<Dims> ExecutionContext::tensor_shape(const std::string& name) const { return impl_->tensor_shape(name); }
Status ExecutionContext::set_tensor_address(const std::string& name, void* address) {
  return impl_->set_tensor_address(name, address);
}
void* ExecutionContext::tensor_address(const std::string& name) const { return impl_->tensor_address(name); }
MemoryLocation ExecutionContext::tensor_location(const std::string& name) const { return impl_->tensor_location(name); }
Status ExecutionContext::set_low_latency(bool on, int max_rows) { return impl_->set_low_latency(on, max_rows); }
bool ExecutionContext::low_latency() const { return impl_->low_latency(); }
std::string ExecutionContext::low_latency_info() const { return impl_->backend().low_latency_json(); }
int ExecutionContext::last_host_io_f16_inputs() const { return impl_->host_io_converted_inputs(); }
int ContextImpl::host_io_converted_inputs() const { return host_io_ ? host_io_->last_converted_inputs() : 0; }
Status ExecutionContext::execute() { return impl_->execute(); }
Status ExecutionContext::enqueue(void* stream) { return impl_->enqueue(stream); }
void ExecutionContext::set_cuda_graph(bool on) { impl_->set_cuda_graph(on); }
void ExecutionContext::set_num_threads(int threads) {
  impl_->threads = threads;
  impl_->backend().set_threads(threads);
}
void ExecutionContext::set_profiling(bool on) { impl_->profiling = on; }
const std::vector<LayerTiming>& ExecutionContext::last_layer_timings() const { return impl_->timings; }
void ExecutionContext::set_layer_observer(std::function<void(const LayerOutput&)> observer) {
  impl_->set_layer_observer(std::move(observer));
}
Result<std::map<std::string, HostTensor>> ExecutionContext::infer(const std::map<std::string, HostTensor>& inputs) {
  return impl_->infer(inputs);
}

}  // namespace kiln
