#include "ops/reference_eval.h"

#include <fmt/format.h>

#include "ops/cast.h"
#include "ops/op_util.h"

namespace kiln {

RefTensor ref_from_tensor(const Tensor& t) {
  RefTensor r;
  r.dtype = t.dtype;
  r.shape = t.shape;
  const int64_t n = t.elements();
  r.data.resize(static_cast<size_t>(std::max<int64_t>(n, 0)));
  if (t.dtype == DataType::kInt64)
    for (int64_t i = 0; i < n; ++i) r.data[i] = static_cast<double>(t.data<int64_t>()[i]);
  else
    for (int64_t i = 0; i < n; ++i) r.data[i] = t.get_double(i);
  return r;
}

namespace {
template <class T>
std::vector<uint8_t> pack_values(const RefTensor& r, DataType dtype) {
  std::vector<uint8_t> bytes(r.data.size() * sizeof(T));
  T* out = reinterpret_cast<T*>(bytes.data());
  for (size_t i = 0; i < r.data.size(); ++i) {
    const double v = cast_double(r.data[i], dtype);
    if constexpr (std::is_floating_point_v<T>) out[i] = static_cast<T>(v);
    else out[i] = static_cast<T>(dtype == DataType::kInt64 ? float_to_int64(r.data[i]) : static_cast<int64_t>(v));
  }
  return bytes;
}
}  // namespace

Tensor tensor_from_ref(const RefTensor& r, DataType dtype) {
  std::vector<uint8_t> bytes;
  switch (dtype) {
    case DataType::kFloat32: bytes = pack_values<float>(r, dtype); break;
    case DataType::kFloat64: bytes = pack_values<double>(r, dtype); break;
    case DataType::kInt64: bytes = pack_values<int64_t>(r, dtype); break;
    case DataType::kInt32: bytes = pack_values<int32_t>(r, dtype); break;
    case DataType::kInt8: bytes = pack_values<int8_t>(r, dtype); break;
    case DataType::kUInt8: bytes = pack_values<uint8_t>(r, dtype); break;
    case DataType::kBool: bytes = pack_values<uint8_t>(r, dtype); break;
    case DataType::kFloat16: {
      bytes.resize(r.data.size() * 2);
      uint16_t* out = reinterpret_cast<uint16_t*>(bytes.data());
      for (size_t i = 0; i < r.data.size(); ++i) out[i] = double_to_half(r.data[i]);
      break;
    }
    case DataType::kUndefined: break;
  }
  return Tensor::make(dtype, r.shape, std::move(bytes));
}

Result<std::vector<RefTensor>> evaluate_node_reference(const Node& node, const std::vector<const RefTensor*>& inputs) {
  const OpDef* def = OpRegistry::instance().find(node.domain, node.op_type);
  if (!def) return Status(StatusCode::kUnsupported, "no operator definition").with_context(node.describe());
  if (!def->reference)
    return Status(StatusCode::kUnsupported, "operator has no reference implementation").with_context(node.describe());
  RefContext ctx{node, inputs, {}};
  ctx.outputs.resize(node.outputs.size());
  Status s = def->reference(ctx);
  if (!s.is_ok()) return std::move(s).with_context(node.describe());
  for (size_t i = 0; i < ctx.outputs.size(); ++i)
    if (static_cast<int64_t>(ctx.outputs[i].data.size()) != std::max<int64_t>(volume(ctx.outputs[i].shape), 0))
      return Status(StatusCode::kInternal,
                    fmt::format("reference output {} has {} values for shape {}", i, ctx.outputs[i].data.size(),
                                shape_str(ctx.outputs[i].shape)))
          .with_context(node.describe());
  return std::move(ctx.outputs);
}

Result<std::vector<std::optional<RefTensor>>> evaluate_reference_values(const Graph& g,
                                                                        const std::vector<RefTensor>& inputs) {
  if (inputs.size() != g.inputs.size())
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("reference evaluation got {} inputs, the graph has {}", inputs.size(), g.inputs.size()));
  std::vector<std::optional<RefTensor>> vals(g.values.size());
  for (size_t i = 0; i < g.values.size(); ++i)
    if (g.values[i].constant) vals[i] = ref_from_tensor(*g.values[i].constant);
  for (size_t i = 0; i < inputs.size(); ++i) vals[g.inputs[i]] = inputs[i];
  for (const Node& node : g.nodes) {
    std::vector<const RefTensor*> in(node.inputs.size(), nullptr);
    for (size_t i = 0; i < node.inputs.size(); ++i) {
      const int v = node.inputs[i];
      if (v == kNoValue) continue;
      if (!vals[v])
        return Status(StatusCode::kInternal, fmt::format("input '{}' has no value yet", g.values[v].name))
            .with_context(node.describe());
      in[i] = &*vals[v];
    }
    auto out = evaluate_node_reference(node, in);
    if (!out.is_ok()) return out.status();
    for (size_t i = 0; i < node.outputs.size(); ++i)
      if (node.outputs[i] != kNoValue) vals[node.outputs[i]] = std::move((*out)[i]);
  }
  return vals;
}

Result<std::vector<RefTensor>> evaluate_reference(const Graph& g, const std::vector<RefTensor>& inputs) {
  auto vals = evaluate_reference_values(g, inputs);
  if (!vals.is_ok()) return vals.status();
  std::vector<RefTensor> result;
  for (int v : g.outputs) {
    if (!(*vals)[v])
      return Status(StatusCode::kInternal, fmt::format("graph output '{}' was never computed", g.values[v].name));
    result.push_back(std::move(*(*vals)[v]));
  }
  return result;
}

}  // namespace kiln
