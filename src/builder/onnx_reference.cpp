// evaluate_onnx_reference: the imported, unoptimized graph evaluated node by node in float64, with every
// tensor kept by name so tools can compare any engine layer against it.
#include <cstring>

#include <fmt/format.h>

#include "kiln/builder.h"
#include "onnx/importer.h"
#include "ops/reference_eval.h"

namespace kiln {

Result<std::map<std::string, HostTensor>> evaluate_onnx_reference(const std::string& onnx_path,
                                                                  const std::map<std::string, HostTensor>& inputs) {
  auto g = import_onnx_file(onnx_path);
  if (!g.is_ok()) return g.status();
  std::vector<RefTensor> ref_inputs;
  for (int v : g->inputs) {
    const Value& value = g->values[v];
    auto it = inputs.find(value.name);
    if (it == inputs.end())
      return Status(StatusCode::kInvalidArgument, fmt::format("missing input '{}' of '{}'", value.name, onnx_path));
    const HostTensor& t = it->second;
    if (t.bytes.size() != static_cast<size_t>(volume(t.shape)) * dtype_size(t.dtype))
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("input '{}': {} bytes do not match shape [{}]", value.name, t.bytes.size(),
                                dims_to_string(t.shape, ",")));
    ref_inputs.push_back(ref_from_tensor(Tensor::make(t.dtype, t.shape, t.bytes)));
    ref_inputs.back().dtype = value.dtype;  // as the graph declares it (an FP16 engine's input may be float16)
  }
  auto values = evaluate_reference_values(*g, ref_inputs);
  if (!values.is_ok()) return values.status();
  std::map<std::string, HostTensor> named;
  for (size_t v = 0; v < g->values.size(); ++v) {
    std::optional<RefTensor>& r = (*values)[v];
    if (!r || g->is_constant(static_cast<int>(v)) || g->values[v].name.empty()) continue;
    HostTensor& t = named[g->values[v].name];
    t.dtype = DataType::kFloat64;
    t.shape = r->shape;
    t.bytes.resize(r->data.size() * sizeof(double));
    if (!r->data.empty()) std::memcpy(t.bytes.data(), r->data.data(), t.bytes.size());
    r.reset();  // halves the peak memory on large models
  }
  return named;
}

}  // namespace kiln
