// Picks a kernel for every node (or marks zero-copy views) and lets kernels pack their weights.
#pragma once
#include "ir/graph.h"
#include "passes/pass.h"

namespace kiln {

// Fails listing every node no kernel can run, each with every kernel's reason.
Status assign_cpu_kernels(Graph& g, const PassContext& ctx);

}  // namespace kiln
