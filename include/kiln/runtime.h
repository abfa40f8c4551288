// The runtime API, shaped like TensorRT's: a Runtime deserializes an Engine; an Engine describes its IO
// tensors and creates ExecutionContexts; each context (one per concurrent user) holds shapes, tensor
// addresses and scratch memory, and executes. One Engine may be shared by many contexts and threads.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

enum class TensorIOMode { kNone = 0, kInput = 1, kOutput = 2 };

struct ShapeProfile {
  Dims min, opt, max;
};

// A host tensor for the one-call API: owns its bytes.
struct HostTensor {
  DataType dtype = DataType::kFloat32;
  Dims shape;
  std::vector<uint8_t> bytes;

  static HostTensor from_floats(Dims shape, const std::vector<float>& values);
  template <class T>
  T* data() { return reinterpret_cast<T*>(bytes.data()); }
  template <class T>
  const T* data() const { return reinterpret_cast<const T*>(bytes.data()); }
  int64_t elements() const { return volume(shape); }
};

// Time spent in one layer during a profiled execute().
struct LayerTiming {
  std::string name;
  double ms = 0;
};

class EngineImpl;
class ContextImpl;
class ExecutionContext;

class Engine {
 public:
  ~Engine();
  int num_io_tensors() const;
  // IO tensors are ordered inputs first, then outputs, each in ONNX graph order.
  const std::string& io_tensor_name(int index) const;
  TensorIOMode tensor_mode(const std::string& name) const;       // kNone if not an IO tensor
  DataType tensor_dtype(const std::string& name) const;          // kUndefined if not an IO tensor
  Dims tensor_shape(const std::string& name) const;              // -1 for dynamic dims
  Result<ShapeProfile> profile_shapes(const std::string& input) const;
  int num_layers() const;
  std::string device() const;  // "cpu"
  // Keys/values of the ONNX model's metadata_props, carried into the engine.
  const std::map<std::string, std::string>& metadata() const;
  // Layers, kernels, shapes, weight bytes, arena size: the `kiln inspect --json` document.
  std::string inspect_json() const;

  Result<std::unique_ptr<ExecutionContext>> create_execution_context() const;

  const EngineImpl& impl() const { return *impl_; }
  explicit Engine(std::shared_ptr<EngineImpl> impl);

 private:
  std::shared_ptr<EngineImpl> impl_;
};

class ExecutionContext {
 public:
  ~ExecutionContext();
  // Must be inside the engine's profile; plans kernels for this shape (may allocate, not on the hot path).
  Status set_input_shape(const std::string& name, const Dims& dims);
  // Concrete shape of any IO tensor under the current input shapes.
  Result<Dims> tensor_shape(const std::string& name) const;
  // Caller-owned host memory for an IO tensor; must stay valid while execute() runs.
  Status set_tensor_address(const std::string& name, void* address);
  void* tensor_address(const std::string& name) const;
  // Runs the network synchronously on the calling thread. Never allocates.
  Status execute();
  // Worker threads used by this context's kernels (0 = library default).
  void set_num_threads(int threads);
  // When on, execute() records per-layer times (adds a clock read per layer).
  void set_profiling(bool on);
  const std::vector<LayerTiming>& last_layer_timings() const;

  // One call: sets shapes from the inputs, runs, returns freshly allocated outputs.
  Result<std::map<std::string, HostTensor>> infer(const std::map<std::string, HostTensor>& inputs);

  explicit ExecutionContext(std::unique_ptr<ContextImpl> impl);

 private:
  std::unique_ptr<ContextImpl> impl_;
};

class Runtime {
 public:
  Result<std::shared_ptr<Engine>> deserialize_engine(std::span<const uint8_t> bytes) const;
  Result<std::shared_ptr<Engine>> load_engine(const std::string& path) const;
};

// Library version, e.g. "0.1.0".
const char* version();

}  // namespace kiln
