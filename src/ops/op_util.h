// Small helpers shared by the operator files: attribute whitelists, input-count checks, shape strings and
// broadcast strides. Kept here so each op file stays a few lines per concern.
#pragma once
#include <array>
#include <initializer_list>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "kiln/types.h"
#include "ops/op.h"

namespace kiln {

// An OpDef for the default domain with its three functions; callers set the other fields.
OpDef op_def(std::string op_type, std::function<Status(const Node&)> check, std::function<Status(InferContext&)> infer,
             std::function<Status(RefContext&)> reference);

// "[2,3,4]"; "[]" for a scalar.
std::string shape_str(const Dims& d);

// Fails naming the first attribute of node that is not in allowed, e.g.
// "Softmax: attribute 'foo' is not supported". Unknown attributes are never silently ignored; "kiln_*" ones
// are backend-private (tactics recorded by tune()) and allowed on every op.
Status check_attributes(const Node& node, std::initializer_list<const char*> allowed);

// Fails unless min_inputs <= #inputs <= max_inputs and #outputs is in [min_outputs, max_outputs].
// Omitted trailing inputs count as present slots (ONNX keeps them as empty names).
Status check_arity(const Node& node, size_t min_inputs, size_t max_inputs, size_t min_outputs = 1,
                   size_t max_outputs = 1);

// Row-major strides of a contiguous tensor.
Dims contiguous_strides(const Dims& shape);
// Strides of `in` when broadcast to `out` (right-aligned); 0 on broadcast dims. Sized out.size().
Dims broadcast_strides(const Dims& in, const Dims& out);

// Walks every index of `out` in row-major order, calling f(i, off) where off[k] is the element offset into
// operand k given its strides (see broadcast_strides). Incremental, so references stay linear-time.
template <size_t N, class F>
void for_each_strided(const Dims& out, const std::array<Dims, N>& strides, F&& f) {
  const int64_t total = volume(out);
  if (total <= 0) return;
  const size_t rank = out.size();
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, N> off{};
  for (int64_t i = 0; i < total; ++i) {
    f(i, off);
    for (size_t d = rank; d-- > 0;) {
      for (size_t k = 0; k < N; ++k) off[k] += strides[k][d];
      if (++idx[d] < out[d]) break;
      for (size_t k = 0; k < N; ++k) off[k] -= strides[k][d] * out[d];
      idx[d] = 0;
    }
  }
}

// Whether a dtype holds integers (bool included): references truncate/round for these.
bool is_integer_dtype(DataType dt);
bool is_float_dtype(DataType dt);

// The input at slot i is present (not omitted).
inline bool has_node_input(const Node& n, size_t i) { return i < n.inputs.size() && n.inputs[i] != kNoValue; }

}  // namespace kiln
