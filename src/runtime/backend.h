// What the runtime needs from a backend. The runtime (ContextImpl) owns shapes, IO addresses and the
// per-layer pointer tables; a backend owns kernels, the activation arena and where constants live.
// One BackendEngine per loaded engine (shared, immutable), one BackendContext per execution context.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "engine/engine_model.h"
#include "kiln/runtime.h"
#include "ops/op.h"
#include "runtime/host_input_form.h"

namespace kiln {

// Per-layer input/output addresses for one execution, built by the runtime from ValueStorage.
struct PointerTables {
  std::vector<std::vector<const void*>> inputs;
  std::vector<std::vector<void*>> outputs;
};

// Called once each non-view layer has finished, with host-readable addresses of its outputs (null where
// an output has no storage): the outputs themselves on the CPU; on CUDA, copies in context-owned host
// memory made after the stream was synchronized.
using AfterLayer = std::function<Status(size_t layer, const void* const* host_outputs)>;

class BackendContext {
 public:
  virtual ~BackendContext() = default;
  virtual uint8_t* arena() = 0;
  // Address kernels read constant value v from (host or device memory).
  virtual const void* constant(int value) const = 0;
  // Layer l's concrete shapes changed; called outside the hot path.
  virtual Status reshape(size_t layer, const std::vector<TensorDesc>& inputs,
                         const std::vector<TensorDesc>& outputs) = 0;
  // The pointer tables changed (new addresses or shapes): drop anything captured from the old ones.
  virtual void invalidate() {}
  // Runs (CPU) or queues (CUDA, on stream; nullptr = the context's own) every layer. When timings is
  // non-null, per-layer times are recorded into it (CUDA: after synchronize()). When after_layer is
  // non-null it is called after each layer (CUDA: layer by layer, no graph) and its errors stop the run.
  virtual Status enqueue(const PointerTables& tables, void* stream, std::vector<LayerTiming>* timings,
                         const AfterLayer* after_layer) = 0;
  // Waits for work queued on stream (nullptr = the context's own). CPU: nothing to wait for.
  virtual Status synchronize(void* stream) { (void)stream; return Status::ok(); }
  virtual void set_threads(int threads) { (void)threads; }
  virtual void set_cuda_graph(bool on) { (void)on; }

  // Where an address points, for IO tensors: kDevice for the CPU backend's host memory too (it is what
  // its kernels read); CUDA: device, page-locked host or ordinary (pageable) host memory.
  virtual Result<MemoryLocation> locate(const void* address) const { (void)address; return MemoryLocation::kDevice; }

  // Low-latency mode (CUDA): a resident kernel waits for requests in mapped page-locked memory and answers
  // small batches with no launch or stream synchronize. start validates that the engine can be served
  // this way (else kUnsupported, naming why) and launches it for batches of up to max_rows rows; run
  // reads one address per graph input and writes one per graph output (graph order; host or device
  // memory as in_where/out_where say), for `rows` rows at the current shapes (in_shapes/out_shapes, one
  // per input/output), and returns when the outputs are written (host memory: copied there; device
  // memory: visible to later work); stop ends the kernel and frees its memory (destruction stops it too).
  virtual Status start_low_latency(int max_rows) {
    (void)max_rows;
    return Status(StatusCode::kUnsupported, "low-latency mode needs a CUDA engine");
  }
  virtual Status run_low_latency(const void* const* inputs, const MemoryLocation* in_where, const TensorDesc* in_shapes,
                                 void* const* outputs, const MemoryLocation* out_where, const TensorDesc* out_shapes) {
    (void)inputs; (void)in_where; (void)in_shapes; (void)outputs; (void)out_where; (void)out_shapes;
    return Status(StatusCode::kUnsupported, "low-latency mode is not started");
  }
  virtual void stop_low_latency() {}
  // The resident kernel's description for `kiln run`/inspect (JSON object text), "{}" when not started.
  virtual std::string low_latency_json() const { return "{}"; }
};

class BackendEngine {
 public:
  virtual ~BackendEngine() = default;
  virtual Result<std::unique_ptr<BackendContext>> create_context(const EngineModel& model) const = 0;
  // Device-side facts for `kiln inspect` (JSON object text), e.g. the GPU found at load time.
  virtual std::string describe_json() const { return "{}"; }
  // How layer `layer`'s kernel may be handed its float32 input `input` instead, with the same result
  // (host_input_form.h; CUDA host IO converts on the host). Default: float32 only.
  virtual HostInputForm host_input_form(const Graph& g, size_t layer, int input) const {
    (void)g; (void)layer; (void)input;
    return {};
  }
};

// Backend loaders: validate the model's kernels for this backend and prepare shared state.
Result<std::shared_ptr<const BackendEngine>> load_cpu_backend(const EngineModel& model);
// Checks the GPU matches the one the engine was built for, then uploads the weights.
Result<std::shared_ptr<const BackendEngine>> load_cuda_backend(const EngineModel& model);

}  // namespace kiln
