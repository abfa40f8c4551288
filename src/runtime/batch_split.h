// Whether an engine's batch rows are independent, so that execute() on host memory may run a large
// batch as several smaller ones (chunks) and overlap their copies with compute.
#pragma once
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/runtime.h"

namespace kiln {

// Empty when every graph input and output has the batch on axis 0 and every layer computes each row
// from that row alone (and constants); else why not, naming the first layer or tensor that decides it.
// Conservative: ops it does not know about make the answer "no".
std::string batch_split_blocker(const Graph& g, const std::vector<ShapeProfile>& profiles);

}  // namespace kiln
