// Softmax axis semantics, shared by the op definition and the CPU kernel. Opset < 13 coerces the input to
// 2-D at `axis` (default 1) and normalizes over everything from axis on; opset >= 13 normalizes along the
// single `axis` (default -1). Both reduce to an [outer, len, inner] view normalized along len.
#pragma once
#include <cstdint>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

struct SoftmaxAttrs {
  int64_t axis = -1;
  bool coerce_2d = false;  // opset < 13 semantics

  static Result<SoftmaxAttrs> parse(const Node& node);
};

struct SoftmaxExtent {
  int64_t outer = 1, len = 1, inner = 1;
};

Result<SoftmaxExtent> softmax_extent(const SoftmaxAttrs& attrs, const Dims& shape);

}  // namespace kiln
