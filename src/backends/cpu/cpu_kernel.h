// The CPU backend's kernel interface. Each kernel file in src/backends/cpu/ self-registers a
// CpuKernelDef. Lifecycle follows create -> reshape -> run: validation and weight packing happen once
// (pack at build time, prepare at engine load), shape planning in reshape(), and run() only computes.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/kernel_registry.h"
#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/op.h"

namespace kiln::cpu {

struct KernelInit {
  const Node& node;
  const Graph& graph;
  std::vector<const Tensor*> constants;  // per input: constant data or nullptr
  std::shared_ptr<const void> shared;    // what prepare() returned for this layer, or null
};

class CpuKernel {
 public:
  virtual ~CpuKernel() = default;
  // Concrete shapes changed. May allocate and create library primitives; not on the hot path.
  virtual Status reshape(const std::vector<TensorDesc>& inputs, const std::vector<TensorDesc>& outputs) {
    (void)inputs;
    (void)outputs;
    return Status::ok();
  }
  // Hot path: compute only. inputs[i] is null for an omitted optional input.
  virtual Status run(const void* const* inputs, void* const* outputs) = 0;
};

struct CpuKernelDef {
  std::string name;  // stable, says dtype/op/impl, e.g. "cpu.f32.gemm.onednn"
  std::string domain;
  std::string op_type;
  int priority = 0;  // higher wins when several kernels support a node
  // Ok when this kernel can run the node; otherwise says why not.
  std::function<Status(const Node&, const Graph&)> supports;
  // Build time, optional: rewrite the node's constant inputs into the kernel's packed layout.
  std::function<Status(Node&, Graph&)> pack;
  // Engine load, optional: read-only state shared by every context (e.g. weights laid out for this CPU).
  std::function<Result<std::shared_ptr<const void>>(const Node&, const Graph&)> prepare;
  // Optional: what prepare() chose on this machine (a load-time tactic), shown by `kiln inspect`.
  std::function<std::string(const void* shared)> describe;
  std::function<Result<std::unique_ptr<CpuKernel>>(const KernelInit&)> create;
};

using KernelRegistry = KernelRegistryOf<CpuKernelDef>;
using KernelRegistrar = KernelRegistrarOf<CpuKernelDef>;

}  // namespace kiln::cpu
