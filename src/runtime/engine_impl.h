// Runtime internals: an immutable EngineImpl shared by every context, and one ContextImpl per user.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/cpu_kernel.h"
#include "engine/engine_model.h"
#include "kiln/runtime.h"

namespace kiln {

class EngineImpl {
 public:
  static Result<std::shared_ptr<EngineImpl>> create(EngineModel model);

  EngineModel model;
  std::vector<int> io_values;         // value id per IO index (inputs, then outputs)
  std::vector<std::string> io_names;  // name per IO index
  int num_inputs = 0;
  // Per layer: kernel definition (null for views), load-time shared state, constant inputs.
  std::vector<const cpu::CpuKernelDef*> kernels;
  std::vector<std::shared_ptr<const void>> shared;
  std::vector<std::vector<const Tensor*>> constants;

  int io_index(const std::string& name) const;  // -1 if not an IO tensor
  std::string inspect_json() const;
};

class ContextImpl {
 public:
  static Result<std::unique_ptr<ContextImpl>> create(std::shared_ptr<const EngineImpl> engine);
  ~ContextImpl();

  Status set_input_shape(const std::string& name, const Dims& dims);
  Result<Dims> tensor_shape(const std::string& name);
  Status set_tensor_address(const std::string& name, void* address);
  void* tensor_address(const std::string& name) const;
  Status execute();
  Result<std::map<std::string, HostTensor>> infer(const std::map<std::string, HostTensor>& inputs);

  int threads = 0;
  bool profiling = false;
  std::vector<LayerTiming> timings;

 private:
  Status update_shapes();    // concrete shapes + kernel reshape, when input shapes changed
  Status update_pointers();  // per-layer pointer tables, when addresses or shapes changed
  void* value_ptr(int v) const;

  std::shared_ptr<const EngineImpl> engine_;
  const Graph* graph_ = nullptr;
  uint8_t* arena_ = nullptr;
  std::vector<Dims> input_shapes_;
  std::vector<char> input_shape_set_;
  std::vector<void*> io_addr_;
  std::vector<TensorDesc> shapes_;
  std::vector<std::unique_ptr<cpu::CpuKernel>> kernels_;
  std::vector<std::vector<TensorDesc>> layer_in_, layer_out_;
  std::vector<std::vector<const void*>> in_ptrs_;
  std::vector<std::vector<void*>> out_ptrs_;
  bool shapes_dirty_ = true;
  bool ptrs_dirty_ = true;
};

}  // namespace kiln
