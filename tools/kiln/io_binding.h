// Shapes and host buffers for every IO tensor of an execution context: what `run` and `eval` both need
// before they can call execute().
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "host_buffers.h"
#include "kiln/runtime.h"

namespace kiln::cli {

struct BoundTensor {
  std::string name;
  DataType dtype = DataType::kUndefined;
  Dims dims;
  HostBuffer buffer;
};

struct Bindings {
  std::vector<BoundTensor> inputs;
  std::vector<BoundTensor> outputs;
};

// Sets each input's shape (from `shapes`, else the static shape, else the profile's opt shape), then
// allocates zero-initialized host buffers for all IO tensors and, for CPU engines, binds them to the
// context (CUDA engines get device buffers from the Executor). `shapes_flag`
// names the flag in errors ("--shapes"). Names in `shapes` that are not inputs are an error listing the
// engine's inputs.
Result<Bindings> bind_io(const Engine& engine, ExecutionContext& context, const std::map<std::string, Dims>& shapes,
                         const std::string& shapes_flag);

// "'x' is not an input of the engine (inputs: a, b)"-style check used for every per-input flag.
Status check_input_name(const Engine& engine, const std::string& flag, const std::string& name);

}  // namespace kiln::cli
