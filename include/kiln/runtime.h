// The runtime API, shaped like TensorRT's: a Runtime deserializes an Engine; an Engine describes its IO
// tensors and creates ExecutionContexts; each context (one per concurrent user) holds shapes, tensor
// addresses and scratch memory, and executes. One Engine may be shared by many contexts and threads.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln {

enum class TensorIOMode { kNone = 0, kInput = 1, kOutput = 2 };

// Where an IO tensor's address points. CPU engines see only kDevice (their device is host memory).
enum class MemoryLocation { kDevice = 0, kPinnedHost = 1, kPageableHost = 2 };

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

// One output of one layer as the engine computed it, for a layer observer (set_layer_observer).
struct LayerOutput {
  std::string layer;   // the engine's layer name (`kiln inspect`)
  std::string tensor;  // the value's name: the ONNX tensor name, or one a pass made (e.g. "x::int8")
  DataType dtype = DataType::kUndefined;
  Dims shape;
  const void* data = nullptr;  // host memory, valid only during the observer call
  float scale = 0;             // INT8 values: real = scale * q; else 0
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
  std::string device() const;  // "cpu" or "cuda"
  // What the engine was built for: CPU ISA, or "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, CUDA 13.0)".
  std::string target() const;
  uint64_t weight_bytes() const;  // constant data (on the GPU for CUDA engines)
  uint64_t arena_bytes() const;   // activation memory each context allocates, planned for the max shapes
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
  // Caller-owned memory for an IO tensor: host memory for CPU engines; device memory for CUDA engines,
  // or host memory (page-locked or not) for execute(), which then copies in and out itself: large
  // batches in chunks, copies overlapped with compute on several streams, pageable memory staged into
  // page-locked buffers by worker threads. Must stay valid until the work that uses it has finished.
  Status set_tensor_address(const std::string& name, void* address);
  void* tensor_address(const std::string& name) const;
  // Where the tensor's address points (kDevice until an address is set).
  MemoryLocation tensor_location(const std::string& name) const;
  // Runs the network and waits for it. Never allocates once shapes and addresses are set.
  Status execute();
  // Queues the network on a CUDA stream (a cudaStream_t; nullptr = legacy default stream) and returns;
  // the caller synchronizes. CUDA engines need device addresses here. CPU engines run synchronously and
  // ignore the stream.
  Status enqueue(void* stream);
  // CUDA engines: low-latency mode (trtexec has no such flag; `kiln run --lowLatency`). A resident kernel
  // waits on a flag in mapped page-locked memory, reads the input from host memory, computes, writes the
  // output and a done flag back, while the host spins: no launch and no stream synchronize per call.
  // While on, execute() with a batch of at most max_rows rows goes through it; tensor addresses may be
  // host memory (copied through the kernel's mapped buffers) or device memory (read and written by the
  // kernel itself; execute() returns once the output is visible to later GPU work and to copies).
  // Fails with kUnsupported, naming the reason, for engines it cannot serve (it needs a chain of dense
  // layers whose weights fit on chip). Off (or destroying the context) stops the kernel.
  Status set_low_latency(bool on, int max_rows = 1);
  bool low_latency() const;
  // The resident kernel's description and its average time per request phase (JSON object; "{}" when off).
  std::string low_latency_info() const;
  // CUDA engines: capture the layers into a CUDA graph per input shape and replay it (trtexec
  // --useCudaGraph). Capture happens on the first enqueue after a shape or address change.
  void set_cuda_graph(bool on);
  // CUDA engines, execute() on host memory: how many inputs the last call converted on the host while staging
  // (0 = none; named for the first form). An FP16 engine whose layers round a float32 input to float16 anyway
  // gets it converted by the staging threads, so half the bytes cross PCIe with the same result; an INT8
  // engine's quantized input is quantized there (a quarter of the bytes; KILN_HOST_IO_QUANTIZE=0 turns that
  // alone off). Pageable input always; page-locked input with >= 4 staging threads; batches of >= 1 MiB of
  // input; KILN_HOST_IO_CAST=0 turns both off.
  int last_host_io_f16_inputs() const;
  // Worker threads used by this context's kernels (0 = library default). CUDA engines: the threads that
  // stage host-memory input for execute() (default: half the cores, at most 8).
  void set_num_threads(int threads);
  // When on, execute() records per-layer times (CPU: a clock read per layer; CUDA: events around each
  // layer, and no CUDA graph).
  void set_profiling(bool on);
  const std::vector<LayerTiming>& last_layer_timings() const;
  // While set, execute(), enqueue() and infer() call the observer after every non-view layer, in layer
  // order, once per output that has storage, with the exact bytes the next layer reads. The engine and
  // its kernels stay those of a normal run; CUDA engines then wait for each layer, copy its outputs to
  // host memory and use no CUDA graph (so enqueue() returns when the work is done). Empty turns it off.
  void set_layer_observer(std::function<void(const LayerOutput&)> observer);

  // One call: sets shapes from the host inputs, runs, returns freshly allocated host outputs. CUDA
  // engines stage through pinned host memory and context-owned device buffers.
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
