// Runtime internals: an immutable EngineImpl shared by every context, and one ContextImpl per user.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/engine_model.h"
#include "runtime/backend.h"
#include "kiln/runtime.h"

namespace kiln {

class EngineImpl {
 public:
  static Result<std::shared_ptr<EngineImpl>> create(EngineModel model);

  EngineModel model;
  std::vector<int> io_values;         // value id per IO index (inputs, then outputs)
  std::vector<std::string> io_names;  // name per IO index
  int num_inputs = 0;
  std::shared_ptr<const BackendEngine> backend;  // CPU or CUDA, by model.device
  bool on_gpu() const { return model.device == "cuda"; }

  int io_index(const std::string& name) const;  // -1 if not an IO tensor
  std::string inspect_json() const;
  // Why execute() on host memory cannot cut the batch into chunks ("" when it can); see batch_split.h.
  std::string batch_split_blocker;
  // Per input: how host IO may hand it over instead of as float32 (host_input_form.h): every layer reading it
  // takes the same form (BackendEngine::host_input_form), so the host converts and copies fewer bytes.
  std::vector<HostInputForm> input_host_form;
  int view_root(int value) const;  // the value whose bytes `value` views (itself if not a view)

 private:
  HostInputForm host_form_of_input(int input) const;
};

class HostIoPipeline;

class ContextImpl {
 public:
  static Result<std::unique_ptr<ContextImpl>> create(std::shared_ptr<const EngineImpl> engine);
  ~ContextImpl();

  Status set_input_shape(const std::string& name, const Dims& dims);
  // Host IO lanes: input `io` is bound in the engine's host form (converted on the host: float16 or int8)
  // where the engine has one (EngineImpl::input_host_form), or as float32.
  Status set_input_host_form(int io, bool on);
  Result<Dims> tensor_shape(const std::string& name);
  Status set_tensor_address(const std::string& name, void* address);
  void* tensor_address(const std::string& name) const;
  MemoryLocation tensor_location(const std::string& name) const;
  Status execute();
  Status enqueue(void* stream);
  Result<std::map<std::string, HostTensor>> infer(const std::map<std::string, HostTensor>& inputs);
  void set_layer_observer(std::function<void(const LayerOutput&)> observer);
  Status set_low_latency(bool on, int max_rows);
  bool low_latency() const { return low_latency_; }
  int host_io_converted_inputs() const;  // HostIoPipeline::last_converted_inputs of the last host-memory execute()
  void set_cuda_graph(bool on) {
    cuda_graph_ = on;
    backend_->set_cuda_graph(on);
  }

  bool profiling = false;
  int threads = 0;  // set_num_threads: the CPU backend's kernels; CUDA: staging threads for host memory
  std::vector<LayerTiming> timings;
  BackendContext& backend() { return *backend_; }

 private:
  Status update_shapes();    // concrete shapes + kernel reshape, when input shapes changed
  Status update_pointers();  // per-layer pointer tables, when addresses or shapes changed
  Status require_addresses() const;  // every IO tensor has an address
  Status prepare();          // both of the above, when needed
  // The backend's enqueue, reporting to the layer observer when one is set.
  Status run_layers(void* stream, std::vector<LayerTiming>* layer_times);
  // infer()'s two ways to run: on host addresses, or (CUDA) host -> pinned staging -> device and back.
  Status run_on_host(const std::map<std::string, HostTensor>& inputs, std::map<std::string, HostTensor>& outputs);
  // execute() on a CUDA engine with IO tensors in host memory (host_io.h).
  Status execute_host_io();
  // execute() on a CUDA engine in low-latency mode: the resident kernel, host addresses in and out.
  Status execute_low_latency();
  bool any_host_io() const;
  void* value_ptr(int v) const;

  std::shared_ptr<const EngineImpl> engine_;
  const Graph* graph_ = nullptr;
  std::unique_ptr<BackendContext> backend_;
  std::vector<Dims> input_shapes_;
  std::vector<char> input_shape_set_;
  std::vector<char> input_host_form_;  // set_input_host_form
  std::vector<void*> io_addr_;
  std::vector<MemoryLocation> io_loc_;  // per IO tensor, where io_addr_ points
  std::vector<TensorDesc> shapes_;
  std::vector<std::vector<TensorDesc>> layer_in_, layer_out_;
  PointerTables tables_;
  std::function<void(const LayerOutput&)> observer_;
  std::vector<float> int8_scales_;  // per value, for the observer: real = scale * q (0 if not INT8)
  std::unique_ptr<HostIoPipeline> host_io_;  // CUDA engines with host IO tensors, made on first use
  bool cuda_graph_ = false;
  bool low_latency_ = false;
  int low_latency_rows_ = 0;
  bool shapes_dirty_ = true;
  bool ptrs_dirty_ = true;
};

}  // namespace kiln
