#include "ops/op_util.h"

#include <fmt/format.h>

namespace kiln {

OpDef op_def(std::string op_type, std::function<Status(const Node&)> check, std::function<Status(InferContext&)> infer,
             std::function<Status(RefContext&)> reference) {
  OpDef def;
  def.op_type = std::move(op_type);
  def.check = std::move(check);
  def.infer = std::move(infer);
  def.reference = std::move(reference);
  return def;
}

std::string shape_str(const Dims& d) { return fmt::format("[{}]", dims_to_string(d, ",")); }

Status check_attributes(const Node& node, std::initializer_list<const char*> allowed) {
  for (const auto& [name, value] : node.attrs.all()) {
    // "kiln_*" attributes are backend-private (e.g. the tactic tune() records); every op carries them.
    if (name.rfind("kiln_", 0) == 0) continue;
    bool known = false;
    for (const char* a : allowed) known = known || name == a;
    if (!known)
      return Status(StatusCode::kUnsupported,
                    fmt::format("{}: attribute '{}' is not supported", node.op_type, name));
  }
  return Status::ok();
}

Status check_arity(const Node& node, size_t min_inputs, size_t max_inputs, size_t min_outputs,
                   size_t max_outputs) {
  const size_t ni = node.inputs.size(), no = node.outputs.size();
  if (ni < min_inputs || ni > max_inputs)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: expects {} to {} inputs, got {}", node.op_type, min_inputs, max_inputs, ni));
  for (size_t i = 0; i < min_inputs; ++i)
    if (node.inputs[i] == kNoValue)
      return Status(StatusCode::kInvalidArgument, fmt::format("{}: required input {} is missing", node.op_type, i));
  if (no < min_outputs || no > max_outputs)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{}: expects {} to {} outputs, got {}", node.op_type, min_outputs, max_outputs, no));
  return Status::ok();
}

Dims contiguous_strides(const Dims& shape) {
  Dims s(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) s[i - 1] = s[i] * shape[i];
  return s;
}

Dims broadcast_strides(const Dims& in, const Dims& out) {
  Dims s(out.size(), 0);
  const Dims cs = contiguous_strides(in);
  const size_t off = out.size() - in.size();
  for (size_t i = 0; i < in.size(); ++i) s[off + i] = in[i] == 1 ? 0 : cs[i];
  return s;
}

bool is_integer_dtype(DataType dt) {
  switch (dt) {
    case DataType::kUInt8: case DataType::kInt8: case DataType::kInt32: case DataType::kInt64:
    case DataType::kBool:
      return true;
    default:
      return false;
  }
}

bool is_float_dtype(DataType dt) {
  return dt == DataType::kFloat32 || dt == DataType::kFloat16 || dt == DataType::kFloat64;
}

}  // namespace kiln
