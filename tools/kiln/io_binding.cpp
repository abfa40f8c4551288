#include "io_binding.h"

#include <fmt/format.h>

#include "cli_common.h"
#include "engine_source.h"

namespace kiln::cli {

Status check_input_name(const Engine& engine, const std::string& flag, const std::string& name) {
  if (engine.tensor_mode(name) == TensorIOMode::kInput) return Status::ok();
  const char* what = engine.tensor_mode(name) == TensorIOMode::kOutput ? "is an output, not an input" : "is not an input";
  return Status(StatusCode::kNotFound, fmt::format("{}: '{}' {} of the engine (inputs: {})", flag, name, what,
                                                   join(engine_inputs(engine), ", ")));
}

namespace {

bool has_dynamic_dim(const Dims& dims) {
  for (int64_t d : dims) {
    if (d < 0) return true;
  }
  return false;
}

Result<BoundTensor> allocate(const std::string& name, DataType dtype, Dims dims) {
  const int64_t n = volume(dims);
  if (n < 0) {
    return Status(StatusCode::kInternal, fmt::format("tensor '{}' still has dynamic dims {}", name, dims_to_string(dims)));
  }
  const size_t bytes = static_cast<size_t>(n) * dtype_size(dtype);
  BoundTensor t{name, dtype, std::move(dims), HostBuffer(bytes)};
  if (!t.buffer.allocated()) {
    return Status(StatusCode::kOutOfRange, fmt::format("cannot allocate {} for tensor '{}'", format_bytes(bytes), name));
  }
  return t;
}

}  // namespace

Result<Bindings> bind_io(const Engine& engine, ExecutionContext& context, const std::map<std::string, Dims>& shapes,
                         const std::string& shapes_flag) {
  for (const auto& [name, dims] : shapes) {
    Status s = check_input_name(engine, shapes_flag, name);
    if (!s.is_ok()) return s;
  }
  Bindings b;
  for (const std::string& name : engine_inputs(engine)) {
    Dims dims = engine.tensor_shape(name);
    // The library's message names the input and shape; the context says where the shape came from.
    std::string origin = fmt::format("input '{}' (static shape)", name);
    if (auto it = shapes.find(name); it != shapes.end()) {
      dims = it->second;
      origin = shapes_flag;
    } else if (has_dynamic_dim(dims)) {
      Result<ShapeProfile> profile = engine.profile_shapes(name);
      if (!profile.is_ok()) return std::move(profile).take_status().with_context(fmt::format("input '{}'", name));
      dims = profile->opt;
      origin = fmt::format("input '{}' (profile opt shape)", name);
    }
    Status s = context.set_input_shape(name, dims);
    if (!s.is_ok()) return std::move(s).with_context(origin);
    Result<BoundTensor> t = allocate(name, engine.tensor_dtype(name), dims);
    if (!t.is_ok()) return std::move(t).take_status();
    b.inputs.push_back(std::move(t).value());
  }
  for (const std::string& name : engine_outputs(engine)) {
    Result<Dims> dims = context.tensor_shape(name);
    if (!dims.is_ok()) return std::move(dims).take_status().with_context(fmt::format("output '{}'", name));
    Result<BoundTensor> t = allocate(name, engine.tensor_dtype(name), dims.value());
    if (!t.is_ok()) return std::move(t).take_status();
    b.outputs.push_back(std::move(t).value());
  }
  // CUDA engines take device addresses: the Executor binds its device mirrors instead.
  if (engine.device() != "cpu") return b;
  for (auto* list : {&b.inputs, &b.outputs}) {
    for (BoundTensor& t : *list) {
      Status s = context.set_tensor_address(t.name, t.buffer.data());
      if (!s.is_ok()) return std::move(s).with_context(fmt::format("binding '{}'", t.name));
    }
  }
  return b;
}

}  // namespace kiln::cli
