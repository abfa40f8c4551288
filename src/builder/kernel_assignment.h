// Picks a kernel for every node (or marks zero-copy views) and lets kernels pack their weights.
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace kiln {

// Fails listing every node no kernel can run, each with every kernel's reason.
Status assign_cpu_kernels(Graph& g, const PassContext& ctx);
// The same for the CUDA backend: every layer must get a GPU kernel (there is no CPU fallback).
Status assign_cuda_kernels(Graph& g, const PassContext& ctx);

// True when the backend named by device ("cpu", "cuda") registers a kernel for domain.op_type (whether it
// supports a given node is still for assignment to decide). Fusion rules ask before creating such ops.
bool backend_has_kernel(const std::string& device, const std::string& domain, const std::string& op_type);

struct EngineModel;
struct BuilderConfig;
struct BuildSummary;
// Kernels (with weight packing), final static shapes and the memory plan of m.graph: the steps after the
// graph is optimized. Also used to build the CPU engine that runs INT8 calibration.
Status lower_to_kernels(EngineModel& m, bool on_gpu, const PassContext& ctx);
// CUDA build steps once kernels, shapes and memory are final: record the GPU, time tactics (with the
// timing cache), and note peak device memory.
Status finish_cuda_build(EngineModel& m, const BuilderConfig& config, BuildSummary* summary);

}  // namespace kiln
