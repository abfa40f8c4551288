// The CUDA backend's kernel interface. Each kernel file in src/backends/cuda/ (one .cu per operator
// family) self-registers a KernelDef. Lifecycle, as on the CPU: pack (build time: convert and lay out
// constants, e.g. to fp16), tune (build time, on the build GPU: pick a tactic and record it in the
// node's attributes), create (engine load, per context), reshape (shape change: plan launches, may
// allocate) and enqueue (hot path: launches on the caller's stream only; no allocation, no sync, so that
// a CUDA graph can capture it).
#pragma once
#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/cuda_util.h"
#include "backends/kernel_registry.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/op.h"
#include "runtime/host_input_form.h"

namespace kiln::cuda {

class TimingCache;

struct KernelInit {
  const Node& node;
  const Graph& graph;
  std::vector<const Tensor*> constants;       // per input: host copy of constant data, or nullptr
  std::vector<const void*> device_constants;  // per input: device address of constant data, or nullptr
  const DeviceInfo& device;
};

class CudaKernel {
 public:
  virtual ~CudaKernel() = default;
  // Concrete shapes changed. May allocate and query libraries; not on the hot path.
  virtual Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) {
    (void)inputs;
    (void)outputs;
    return Status::ok();
  }
  // Device scratch enqueue() needs at the current shapes; the context hands every layer one shared
  // workspace (layers run in order on one stream), sized to the largest request.
  virtual size_t workspace_bytes() const { return 0; }
  // Hot path. inputs[i] is null for an omitted optional input. Launch errors are returned (checked with
  // cudaGetLastError after each launch).
  virtual Status enqueue(const void* const* inputs, void* const* outputs, void* workspace,
                         cudaStream_t stream) = 0;
};

// What tune() gets: the node's input/output descs at the profile's min, opt and max shapes, a stream on
// the build GPU, and the timing cache (may be null).
struct TuneContext {
  std::vector<TensorDesc> in_min, in_opt, in_max;
  std::vector<TensorDesc> out_min, out_opt, out_max;
  const DeviceInfo& device;
  cudaStream_t stream = nullptr;
  TimingCache* cache = nullptr;
  bool verbose = false;
};

// Attributes tune() writes into the node: which tactic was chosen and what it measured.
constexpr const char* kTacticAttr = "kiln_tactic";        // string: human-readable tactic name
constexpr const char* kTacticDataAttr = "kiln_tactic_data";  // ints: the kernel's own encoding
constexpr const char* kTacticMsAttr = "kiln_tactic_ms";   // float: measured time at the opt shape

struct KernelDef {
  std::string name;  // stable, says dtype/op/impl, e.g. "cuda.f32.gemm.cublaslt"
  std::string domain;
  std::string op_type;
  int priority = 0;  // higher wins when several kernels support a node
  // Ok when this kernel can run the node (dtypes are final: the precision pass has run); else says why.
  std::function<Status(const Node&, const Graph&)> supports;
  // Build time, optional: rewrite the node's constant inputs into the kernel's layout/precision.
  std::function<Status(Node&, Graph&)> pack;
  // Build time, optional: time candidates on the build GPU, write kTactic* attributes.
  std::function<Status(Node&, const Graph&, const TuneContext&)> tune;
  std::function<Result<std::unique_ptr<CudaKernel>>(const KernelInit&)> create;
  // Optional: how the kernel's float32 input `input` may be handed in instead (runtime/host_input_form.h):
  // as float16 when the kernel rounds it to float16 (to nearest even) before any use, or quantized when it
  // quantizes it first; reshape() then accepts that dtype there. Host IO uses it to convert on the host and
  // copy a half or a quarter of the bytes (host_io.h).
  std::function<HostInputForm(const Node&, const Graph&, int input)> host_input_form;
};

using KernelRegistry = KernelRegistryOf<KernelDef>;
using KernelRegistrar = KernelRegistrarOf<KernelDef>;

}  // namespace kiln::cuda
