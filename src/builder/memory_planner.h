// Decides where every value lives and packs activations into one arena by lifetime.
#pragma once
#include <vector>

#include "engine/engine_model.h"

namespace kiln {

// Needs node.kernel set (views are "view"). max_bytes per value from annotate_static_shapes.
// With reuse off, every activation gets its own slot (for debugging and the memory_reuse switch).
Status plan_memory(const Graph& g, const std::vector<uint64_t>& max_bytes, bool reuse,
                   std::vector<ValueStorage>* storage, uint64_t* arena_bytes);

}  // namespace kiln
