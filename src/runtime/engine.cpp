// Runtime, Engine and the inspect document.
#include <algorithm>
#include <fstream>
#include <optional>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ops/quantize.h"
#include "runtime/batch_split.h"
#include "runtime/engine_impl.h"

#ifndef KILN_VERSION
#define KILN_VERSION "0.0.0"
#endif

namespace kiln {

const char* version() { return KILN_VERSION; }

#ifndef KILN_WITH_CUDA
Result<std::shared_ptr<const BackendEngine>> load_cuda_backend(const EngineModel& model) {
  return Status(StatusCode::kUnsupported,
                "engine was built for a CUDA GPU, but this build of Kiln has no CUDA backend (configure with -DKILN_CUDA=ON)");
}
#endif

Result<std::shared_ptr<EngineImpl>> EngineImpl::create(EngineModel model) {
  auto e = std::make_shared<EngineImpl>();
  e->model = std::move(model);
  const Graph& g = e->model.graph;
  for (int v : g.inputs) {
    e->io_values.push_back(v);
    e->io_names.push_back(g.values[v].name);
  }
  e->num_inputs = static_cast<int>(g.inputs.size());
  for (int v : g.outputs) {
    e->io_values.push_back(v);
    e->io_names.push_back(g.values[v].name);
  }
  auto backend = e->model.device == "cpu"    ? load_cpu_backend(e->model)
                 : e->model.device == "cuda" ? load_cuda_backend(e->model)
                                             : Result<std::shared_ptr<const BackendEngine>>(Status(
                                                   StatusCode::kVersionMismatch,
                                                   fmt::format("engine was built for unknown device '{}'", e->model.device)));
  if (!backend.is_ok()) return backend.status();
  e->backend = std::move(backend).value();
  if (e->on_gpu()) e->batch_split_blocker = kiln::batch_split_blocker(g, e->model.profiles);
  e->input_host_form.assign(g.inputs.size(), HostInputForm{});
  for (size_t i = 0; i < g.inputs.size(); ++i) e->input_host_form[i] = e->host_form_of_input(static_cast<int>(i));
  return e;
}

int EngineImpl::view_root(int v) const {
  const auto& st = model.storage;
  while (v >= 0 && static_cast<size_t>(v) < st.size() && st[v].kind == StorageKind::kView) v = st[v].view_of;
  return v;
}

// Input i is float32, is not itself (or through a view) an output, and every layer reading it (directly or
// through views) takes the same host form (float16: rounds it to float16 before any use; int8: quantizes it
// first, with the same scale and zero point).
HostInputForm EngineImpl::host_form_of_input(int i) const {
  const Graph& g = model.graph;
  const int v = g.inputs[static_cast<size_t>(i)];
  if (g.values[v].dtype != DataType::kFloat32) return {};
  for (int o : g.outputs)
    if (view_root(o) == v) return {};
  std::optional<HostInputForm> form;
  for (size_t l = 0; l < g.nodes.size(); ++l) {
    const Node& n = g.nodes[l];
    if (n.kernel == kViewKernel) continue;  // its output is a view of v, checked where it is read
    for (size_t j = 0; j < n.inputs.size(); ++j) {
      if (n.inputs[j] == kNoValue || view_root(n.inputs[j]) != v) continue;
      const HostInputForm f = backend->host_input_form(g, l, static_cast<int>(j));
      if (!f || (form && !(*form == f))) return {};
      form = f;
    }
  }
  return form.value_or(HostInputForm{});
}

int EngineImpl::io_index(const std::string& name) const {
  for (size_t i = 0; i < io_names.size(); ++i)
    if (io_names[i] == name) return static_cast<int>(i);
  return -1;
}

std::string EngineImpl::inspect_json() const {
  using nlohmann::json;
  const Graph& g = model.graph;
  auto tensor = [&](int v) {
    const Value& val = g.values[v];
    json shape = json::array();
    for (size_t d = 0; d < val.shape.size(); ++d) {
      if (val.shape[d] >= 0) shape.push_back(val.shape[d]);
      else shape.push_back(d < val.dim_params.size() && !val.dim_params[d].empty() ? val.dim_params[d] : "?");
    }
    json t{{"name", val.name}, {"dtype", dtype_name(val.dtype)}, {"shape", shape}};
    if (auto scale = int8_value_scale(g, v)) t["scale"] = *scale;  // INT8 activations: real = scale * q
    return t;
  };
  json j;
  j["kiln_version"] = model.kiln_version;
  j["device"] = model.device;
  j["target"] = model.target;
  j["producer"] = g.producer;
  j["onnx_opset"] = g.onnx_opset;
  j["build_flags"] = json::parse(model.build_flags_json, nullptr, false);
  j["runtime_device"] = json::parse(backend->describe_json(), nullptr, false);
  j["profiles"] = json::array();
  for (size_t i = 0; i < model.profiles.size(); ++i)
    j["profiles"].push_back({{"input", g.values[g.inputs[i]].name},
                             {"min", model.profiles[i].min},
                             {"opt", model.profiles[i].opt},
                             {"max", model.profiles[i].max}});
  j["inputs"] = json::array();
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    json t = tensor(g.inputs[i]);
    // Host IO converts this input on the host (its readers round it to float16 or quantize it anyway).
    if (i < input_host_form.size() && input_host_form[i]) {
      const HostInputForm& f = input_host_form[i];
      t["host_io_as"] = dtype_name(f.dtype);
      if (f.dtype != DataType::kFloat16) {
        t["host_io_scale"] = f.scale;
        t["host_io_zero_point"] = f.zero_point;
      }
    }
    j["inputs"].push_back(std::move(t));
  }
  j["outputs"] = json::array();
  for (int v : g.outputs) j["outputs"].push_back(tensor(v));
  j["layers"] = json::array();
  for (const Node& n : g.nodes) {
    json l;
    l["name"] = n.name;
    l["op_type"] = n.domain.empty() ? n.op_type : n.domain + "." + n.op_type;
    l["kernel"] = n.kernel;
    l["precision"] = n.precision;
    l["view"] = n.kernel == kViewKernel;
    l["origins"] = n.origins;
    l["inputs"] = json::array();
    for (int v : n.inputs) if (v >= 0) l["inputs"].push_back(tensor(v));
    l["outputs"] = json::array();
    for (int v : n.outputs) if (model.storage[v].kind != StorageKind::kUnused) l["outputs"].push_back(tensor(v));
    json attrs = json::object();
    for (const auto& kv : n.attrs.all()) {
      const std::string& k = kv.first;  // named copies: clang < 16 cannot capture structured bindings
      std::visit([&](const auto& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, Tensor>) attrs[k] = fmt::format("<tensor {} [{}]>", dtype_name(x.dtype),
                                                                        dims_to_string(x.shape, ","));
        else attrs[k] = x;
      }, kv.second);
    }
    l["attributes"] = attrs;
    if (n.domain == "kiln" && n.op_type == "QGemm" && g.is_constant(n.inputs[3])) {
      const Tensor& ws = *g.values[n.inputs[3]].constant;
      const float* w = ws.data<float>();
      const auto [lo, hi] = std::minmax_element(w, w + ws.elements());
      l["int8"] = {{"input_scale", n.attrs.get_float("a_scale", 0).value()},
                   {"output_scale", n.attrs.get_float("y_scale", 0).value()},
                   {"weight_scale_min", *lo}, {"weight_scale_max", *hi}, {"weight_channels", ws.elements()}};
    }
    j["layers"].push_back(l);
  }
  j["weight_bytes"] = model.weight_bytes();
  j["arena_bytes"] = model.arena_bytes;
  j["metadata"] = g.metadata;
  // Names come from the model and need not be valid UTF-8; replace bad bytes rather than throw.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Engine::Engine(std::shared_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

int Engine::num_io_tensors() const { return static_cast<int>(impl_->io_names.size()); }
const std::string& Engine::io_tensor_name(int index) const {
  static const std::string kEmpty;
  return index >= 0 && index < num_io_tensors() ? impl_->io_names[index] : kEmpty;
}
TensorIOMode Engine::tensor_mode(const std::string& name) const {
  int i = impl_->io_index(name);
  if (i < 0) return TensorIOMode::kNone;
  return i < impl_->num_inputs ? TensorIOMode::kInput : TensorIOMode::kOutput;
}
DataType Engine::tensor_dtype(const std::string& name) const {
  int i = impl_->io_index(name);
  return i < 0 ? DataType::kUndefined : impl_->model.graph.values[impl_->io_values[i]].dtype;
}
Dims Engine::tensor_shape(const std::string& name) const {
  int i = impl_->io_index(name);
  return i < 0 ? Dims{} : impl_->model.graph.values[impl_->io_values[i]].shape;
}
Result<ShapeProfile> Engine::profile_shapes(const std::string& input) const {
  int i = impl_->io_index(input);
  if (i < 0 || i >= impl_->num_inputs)
    return Status(StatusCode::kNotFound, fmt::format("'{}' is not an input of this engine", input));
  return impl_->model.profiles[i];
}
int Engine::num_layers() const { return static_cast<int>(impl_->model.graph.nodes.size()); }
std::string Engine::device() const { return impl_->model.device; }
std::string Engine::target() const { return impl_->model.target; }
uint64_t Engine::weight_bytes() const { return impl_->model.weight_bytes(); }
uint64_t Engine::arena_bytes() const { return impl_->model.arena_bytes; }
const std::map<std::string, std::string>& Engine::metadata() const { return impl_->model.graph.metadata; }
std::string Engine::inspect_json() const { return impl_->inspect_json(); }

Result<std::unique_ptr<ExecutionContext>> Engine::create_execution_context() const {
  auto c = ContextImpl::create(impl_);
  if (!c.is_ok()) return c.status();
  return std::make_unique<ExecutionContext>(std::move(c).value());
}

Result<std::shared_ptr<Engine>> Runtime::deserialize_engine(std::span<const uint8_t> bytes) const {
  auto m = kiln::deserialize_engine(bytes);
  if (!m.is_ok()) return m.status();
  auto impl = EngineImpl::create(std::move(m).value());
  if (!impl.is_ok()) return impl.status();
  return std::make_shared<Engine>(std::move(impl).value());
}

Result<std::shared_ptr<Engine>> Runtime::load_engine(const std::string& path) const {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(StatusCode::kNotFound, fmt::format("cannot open engine file '{}'", path));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto e = deserialize_engine(bytes);
  if (!e.is_ok()) return std::move(e).take_status().with_context(path);
  return e;
}

HostTensor HostTensor::from_floats(Dims shape, const std::vector<float>& values) {
  HostTensor t;
  t.dtype = DataType::kFloat32;
  t.shape = std::move(shape);
  t.bytes.resize(values.size() * sizeof(float));
  if (!values.empty()) std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
  return t;
}

}  // namespace kiln
