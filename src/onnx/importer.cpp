// ONNX ModelProto -> Graph. Reads Debian's ONNX 1.12 protobuf definitions only: no checker or shape
// inference (they stop at opset 17), so every check Kiln needs is done here and in the op registry.
#include "onnx/importer.h"

#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <onnx/onnx_pb.h>

#include "ops/op.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;

Status read_file(const std::string& path, std::string* out) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(StatusCode::kNotFound, fmt::format("cannot open '{}'", path));
  std::ostringstream ss;
  ss << f.rdbuf();
  *out = std::move(ss).str();
  return Status::ok();
}

// Reads [offset, offset+length) of an external-data file; length -1 = to the end.
Status read_external(const std::string& base_dir, const std::string& location, int64_t offset, int64_t length,
                     std::vector<uint8_t>* out) {
  fs::path rel(location);
  if (rel.is_absolute() || location.find("..") != std::string::npos)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("external data location '{}' must be a relative path inside the model folder", location));
  const fs::path path = fs::path(base_dir) / rel;
  std::ifstream f(path, std::ios::binary);
  if (!f) return Status(StatusCode::kNotFound, fmt::format("external data file '{}' not found", path.string()));
  f.seekg(0, std::ios::end);
  const int64_t size = static_cast<int64_t>(f.tellg());
  if (offset < 0 || offset > size)
    return Status(StatusCode::kParseError,
                  fmt::format("external data offset {} is past the end of '{}' ({} bytes)", offset, path.string(), size));
  if (length < 0) length = size - offset;
  if (offset + length > size)
    return Status(StatusCode::kParseError,
                  fmt::format("external data [{}, {}) is past the end of '{}' ({} bytes)", offset, offset + length,
                              path.string(), size));
  out->resize(static_cast<size_t>(length));
  f.seekg(offset);
  f.read(reinterpret_cast<char*>(out->data()), length);
  if (!f) return Status(StatusCode::kIoError, fmt::format("failed to read '{}'", path.string()));
  return Status::ok();
}

template <class Src, class Dst>
std::vector<uint8_t> pack_typed(const Src& field) {
  std::vector<uint8_t> b(static_cast<size_t>(field.size()) * sizeof(Dst));
  Dst* d = reinterpret_cast<Dst*>(b.data());
  for (int i = 0; i < field.size(); ++i) d[i] = static_cast<Dst>(field.Get(i));
  return b;
}

Result<Tensor> convert_tensor(const onnx::TensorProto& tp, const std::string& base_dir) {
  Tensor t;
  if (!dtype_from_onnx(tp.data_type(), &t.dtype))
    return Status(StatusCode::kUnsupported, fmt::format("tensor '{}' has unsupported data type {}", tp.name(),
                                                        tp.data_type()));
  int64_t n = 1;
  for (int64_t d : tp.dims()) {
    if (d < 0 || (d > 0 && n > std::numeric_limits<int64_t>::max() / d))
      return Status(StatusCode::kParseError, fmt::format("tensor '{}' has an invalid dimension {}", tp.name(), d));
    t.shape.push_back(d);
    n *= d;
  }
  const size_t want = static_cast<size_t>(n) * dtype_size(t.dtype);
  std::vector<uint8_t> bytes;
  if (tp.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto& kv : tp.external_data()) {
      try {
        if (kv.key() == "location") location = kv.value();
        else if (kv.key() == "offset") offset = std::stoll(kv.value());
        else if (kv.key() == "length") length = std::stoll(kv.value());
      } catch (const std::exception&) {
        return Status(StatusCode::kParseError,
                      fmt::format("tensor '{}': bad external_data {}='{}'", tp.name(), kv.key(), kv.value()));
      }
    }
    if (location.empty())
      return Status(StatusCode::kParseError, fmt::format("tensor '{}': external data without a location", tp.name()));
    Status s = read_external(base_dir, location, offset, length, &bytes);
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("tensor '{}'", tp.name()));
  } else if (tp.has_raw_data()) {
    bytes.assign(tp.raw_data().begin(), tp.raw_data().end());
  } else {
    switch (t.dtype) {
      case DataType::kFloat32: bytes = pack_typed<decltype(tp.float_data()), float>(tp.float_data()); break;
      case DataType::kFloat64: bytes = pack_typed<decltype(tp.double_data()), double>(tp.double_data()); break;
      case DataType::kInt64: bytes = pack_typed<decltype(tp.int64_data()), int64_t>(tp.int64_data()); break;
      case DataType::kInt32: bytes = pack_typed<decltype(tp.int32_data()), int32_t>(tp.int32_data()); break;
      case DataType::kInt8: bytes = pack_typed<decltype(tp.int32_data()), int8_t>(tp.int32_data()); break;
      case DataType::kUInt8:
      case DataType::kBool: bytes = pack_typed<decltype(tp.int32_data()), uint8_t>(tp.int32_data()); break;
      case DataType::kFloat16: bytes = pack_typed<decltype(tp.int32_data()), uint16_t>(tp.int32_data()); break;
      case DataType::kUndefined: break;
    }
  }
  if (bytes.size() != want)
    return Status(StatusCode::kParseError,
                  fmt::format("tensor '{}' [{}] {} needs {} bytes of data, found {}", tp.name(),
                              dims_to_string(t.shape, ","), dtype_name(t.dtype), want, bytes.size()));
  t.bytes = std::make_shared<const std::vector<uint8_t>>(std::move(bytes));
  return t;
}

Result<AttributeValue> convert_attribute(const onnx::AttributeProto& a, const std::string& base_dir) {
  using A = onnx::AttributeProto;
  switch (a.type()) {
    case A::INT: return AttributeValue(static_cast<int64_t>(a.i()));
    case A::FLOAT: return AttributeValue(a.f());
    case A::STRING: return AttributeValue(a.s());
    case A::INTS: return AttributeValue(std::vector<int64_t>(a.ints().begin(), a.ints().end()));
    case A::FLOATS: return AttributeValue(std::vector<float>(a.floats().begin(), a.floats().end()));
    case A::STRINGS: return AttributeValue(std::vector<std::string>(a.strings().begin(), a.strings().end()));
    case A::TENSOR: {
      auto t = convert_tensor(a.t(), base_dir);
      if (!t.is_ok()) return t.status();
      return AttributeValue(std::move(t).value());
    }
    default:
      return Status(StatusCode::kUnsupported,
                    fmt::format("attribute '{}' has unsupported type {} (graphs and sparse tensors are not supported)",
                                a.name(), static_cast<int>(a.type())));
  }
}

Status convert_value_info(const onnx::ValueInfoProto& vi, Value* v) {
  v->name = vi.name();
  if (!vi.has_type() || !vi.type().has_tensor_type()) {
    if (vi.has_type() && !vi.type().has_tensor_type())
      return Status(StatusCode::kUnsupported, fmt::format("'{}' is not a tensor (sequences/maps are not supported)", vi.name()));
    return Status::ok();
  }
  const auto& tt = vi.type().tensor_type();
  if (tt.elem_type() != 0 && !dtype_from_onnx(tt.elem_type(), &v->dtype))
    return Status(StatusCode::kUnsupported, fmt::format("'{}' has unsupported element type {}", vi.name(), tt.elem_type()));
  if (tt.has_shape()) {
    v->rank_known = true;
    for (const auto& d : tt.shape().dim()) {
      if (d.has_dim_value() && d.dim_value() >= 0) {
        v->shape.push_back(d.dim_value());
        v->dim_params.emplace_back();
      } else {
        v->shape.push_back(kDynamicDim);
        v->dim_params.push_back(d.has_dim_param() ? d.dim_param() : "");
      }
    }
  }
  return Status::ok();
}

// A Constant node's value: exactly one of its value* attributes.
Result<Tensor> constant_node_value(const Node& n) {
  if (const Tensor* t = n.attrs.get_tensor("value")) return *t;
  auto& all = n.attrs.all();
  if (auto it = all.find("value_float"); it != all.end())
    return Tensor::from_vector<float>(DataType::kFloat32, {}, {std::get<float>(it->second)});
  if (auto it = all.find("value_int"); it != all.end())
    return Tensor::from_vector<int64_t>(DataType::kInt64, {}, {std::get<int64_t>(it->second)});
  if (auto it = all.find("value_floats"); it != all.end()) {
    const auto& v = std::get<std::vector<float>>(it->second);
    return Tensor::from_vector<float>(DataType::kFloat32, {static_cast<int64_t>(v.size())}, v);
  }
  if (auto it = all.find("value_ints"); it != all.end()) {
    const auto& v = std::get<std::vector<int64_t>>(it->second);
    return Tensor::from_vector<int64_t>(DataType::kInt64, {static_cast<int64_t>(v.size())}, v);
  }
  return Status(StatusCode::kUnsupported, "Constant without a supported value attribute "
                                          "(value, value_float(s), value_int(s))");
}

Result<Graph> import_model(const onnx::ModelProto& model, const std::string& base_dir) {
  Graph g;
  if (!model.has_graph()) return Status(StatusCode::kParseError, "model has no graph");
  const auto& gp = model.graph();
  g.producer = model.producer_name() + (model.producer_version().empty() ? "" : " " + model.producer_version());
  for (const auto& kv : model.metadata_props()) g.metadata[kv.key()] = kv.value();

  std::map<std::string, int64_t> opsets;
  for (const auto& os : model.opset_import()) {
    const std::string dom = os.domain() == "ai.onnx" ? "" : os.domain();
    opsets[dom] = os.version();
  }
  if (!opsets.count("")) {
    if (model.ir_version() >= 3)
      return Status(StatusCode::kParseError, "model imports no default (ai.onnx) opset");
    opsets[""] = 1;
  }
  g.onnx_opset = opsets[""];
  if (g.onnx_opset > kMaxSupportedOpset)
    return Status(StatusCode::kUnsupported,
                  fmt::format("model uses ai.onnx opset {}, newer than the newest Kiln supports ({})", g.onnx_opset,
                              kMaxSupportedOpset));

  std::map<std::string, int> by_name;
  auto lookup = [&](const std::string& name) -> int {
    auto it = by_name.find(name);
    return it == by_name.end() ? kNoValue : it->second;
  };

  // Initializers first; a graph input that is also an initializer is a constant with a default (opset
  // semantics: the initializer is its value), so it stays a constant and is not exposed as an input.
  for (const auto& tp : gp.initializer()) {
    auto t = convert_tensor(tp, base_dir);
    if (!t.is_ok()) return std::move(t).take_status().with_context("initializer '" + tp.name() + "'");
    if (by_name.count(tp.name()))
      return Status(StatusCode::kParseError, fmt::format("initializer '{}' is defined twice", tp.name()));
    Value v;
    v.name = tp.name();
    v.set_constant(std::move(t).value());
    const std::string name = v.name;
    by_name[name] = g.add_value(std::move(v));
  }
  for (const auto& vi : gp.input()) {
    if (by_name.count(vi.name())) continue;
    Value v;
    Status s = convert_value_info(vi, &v);
    if (!s.is_ok()) return std::move(s).with_context("graph input");
    if (v.dtype == DataType::kUndefined || !v.rank_known)
      return Status(StatusCode::kUnsupported, fmt::format("graph input '{}' has no tensor type or shape", vi.name()));
    int id = g.add_value(std::move(v));
    by_name[vi.name()] = id;
    g.inputs.push_back(id);
  }

  std::vector<std::string> unsupported;
  std::set<std::string> node_names;
  int unnamed = 0;
  for (const auto& np : gp.node()) {
    Node n;
    n.op_type = np.op_type();
    n.domain = np.domain() == "ai.onnx" ? "" : np.domain();
    n.name = np.name().empty() ? fmt::format("{}_{}", n.op_type, unnamed++) : np.name();
    while (node_names.count(n.name)) n.name += "_";
    node_names.insert(n.name);
    n.origins = {n.name};
    auto os = opsets.find(n.domain);
    n.opset = os == opsets.end() ? 0 : static_cast<int>(os->second);
    for (const auto& a : np.attribute()) {
      if (!a.ref_attr_name().empty()) {
        unsupported.push_back(fmt::format("{}: attribute '{}' refers to a function attribute", n.describe(), a.name()));
        continue;
      }
      auto av = convert_attribute(a, base_dir);
      if (!av.is_ok()) {
        unsupported.push_back(fmt::format("{}: {}", n.describe(), av.status().to_string()));
        continue;
      }
      n.attrs.set(a.name(), std::move(av).value());
    }
    for (const auto& in : np.input()) {
      if (in.empty()) {
        n.inputs.push_back(kNoValue);
        continue;
      }
      int id = lookup(in);
      if (id == kNoValue)
        return Status(StatusCode::kParseError,
                      fmt::format("input '{}' is not a graph input, initializer or earlier node output "
                                  "(model not topologically sorted?)", in))
            .with_context(n.describe());
      n.inputs.push_back(id);
    }
    for (const auto& out : np.output()) {
      if (out.empty()) {  // omitted optional output: give it a private name
        Value v;
        v.name = n.name + "/unused_output_" + std::to_string(n.outputs.size());
        n.outputs.push_back(g.add_value(std::move(v)));
        continue;
      }
      if (by_name.count(out))
        return Status(StatusCode::kParseError, fmt::format("value '{}' is produced more than once", out))
            .with_context(n.describe());
      Value v;
      v.name = out;
      int id = g.add_value(std::move(v));
      by_name[out] = id;
      n.outputs.push_back(id);
    }
    if (n.domain.empty() && n.op_type == "Constant") {
      // Constant nodes become constant values right away.
      auto t = constant_node_value(n);
      if (!t.is_ok() || n.outputs.size() != 1) {
        unsupported.push_back(fmt::format("{}: {}", n.describe(),
                                          t.is_ok() ? "must have one output" : t.status().to_string()));
        continue;
      }
      g.values[n.outputs[0]].set_constant(std::move(t).value());
      continue;
    }
    const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
    if (!def) {
      unsupported.push_back(fmt::format("{}: operator is not supported", n.describe()));
    } else if (n.opset < def->min_opset || n.opset > def->max_opset) {
      unsupported.push_back(fmt::format("{}: opset {} is outside the supported range {}..{}", n.describe(), n.opset,
                                        def->min_opset, def->max_opset));
    } else if (def->check) {
      Status s = def->check(n);
      if (!s.is_ok()) unsupported.push_back(fmt::format("{}: {}", n.describe(), s.to_string()));
    }
    g.nodes.push_back(std::move(n));
  }
  if (!unsupported.empty()) {
    std::string msg = fmt::format("{} node(s) cannot be imported:", unsupported.size());
    for (const auto& u : unsupported) msg += "\n  " + u;
    return Status(StatusCode::kUnsupported, msg);
  }
  for (const auto& vi : gp.output()) {
    int id = lookup(vi.name());
    if (id == kNoValue)
      return Status(StatusCode::kParseError, fmt::format("graph output '{}' is never produced", vi.name()));
    Value declared;
    Status s = convert_value_info(vi, &declared);
    if (!s.is_ok()) return std::move(s).with_context("graph output");
    // Declared symbolic names help name dims of the output later.
    Value& v = g.values[id];
    if (v.dim_params.empty() && declared.rank_known) v.dim_params = declared.dim_params;
    g.outputs.push_back(id);
  }
  if (g.outputs.empty()) return Status(StatusCode::kParseError, "graph has no outputs");
  Status s = g.verify();
  if (!s.is_ok()) return s;
  return g;
}

}  // namespace

Result<Graph> import_onnx_bytes(const std::string& bytes, const std::string& base_dir) {
  onnx::ModelProto model;
  google::protobuf::io::ArrayInputStream raw(bytes.data(), static_cast<int>(bytes.size()));
  google::protobuf::io::CodedInputStream coded(&raw);
  coded.SetTotalBytesLimit(std::numeric_limits<int>::max());
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()) || !model.ParseFromCodedStream(&coded) ||
      !coded.ConsumedEntireMessage())
    return Status(StatusCode::kParseError, "not a valid ONNX model (protobuf parse failed: truncated or corrupt file?)");
  return import_model(model, base_dir);
}

Result<Graph> import_onnx_file(const std::string& path) {
  std::string bytes;
  Status s = read_file(path, &bytes);
  if (!s.is_ok()) return s;
  auto g = import_onnx_bytes(bytes, fs::path(path).parent_path().string());
  if (!g.is_ok()) return std::move(g).take_status().with_context(path);
  return g;
}

}  // namespace kiln
