// Engine file layout (little-endian):
//   [0, 64)        header: magic "KILNENG\0", format version, section offsets/sizes, CRC-32 of the rest
//   [64, ...)      flatbuffer metadata (engine.fbs)
//   [aligned 64)   weight blob: every constant, each 64-byte aligned
// The CRC covers everything after the header, so truncation and corruption are caught before parsing;
// the flatbuffer verifier and index checks below catch files that are well-formed but inconsistent.
#include <cstring>
#include <set>

#include <fmt/format.h>
#include <zlib.h>

#include "engine/engine_model.h"
#include "engine_generated.h"
#include "ops/op.h"
#include "backends/cpu/cpu_kernel.h"

namespace kiln {
namespace {

constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'E', 'N', 'G', '\0'};
constexpr size_t kHeaderSize = 64;
constexpr uint64_t kAlign = 64;

struct Header {
  char magic[8];
  uint32_t format_version;
  uint32_t header_size;
  uint64_t meta_offset, meta_size;
  uint64_t weights_offset, weights_size;
  uint32_t crc32;
  uint8_t reserved[12];
};
static_assert(sizeof(Header) == kHeaderSize);

uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }

uint32_t crc_of(const uint8_t* p, uint64_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (n > 0) {
    uInt chunk = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = crc32(crc, p, chunk);
    p += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

using FBB = flatbuffers::FlatBufferBuilder;

flatbuffers::Offset<fb::ConstTensor> write_tensor(FBB& b, const Tensor& t, std::vector<uint8_t>& blob) {
  const uint64_t off = align_up(blob.size());
  blob.resize(off + t.nbytes(), 0);
  if (t.nbytes()) std::memcpy(blob.data() + off, t.raw(), t.nbytes());
  return fb::CreateConstTensor(b, static_cast<int>(t.dtype), b.CreateVector(t.shape), off, t.nbytes());
}

flatbuffers::Offset<fb::Attribute> write_attr(FBB& b, const std::string& name, const AttributeValue& a,
                                              std::vector<uint8_t>& blob) {
  auto n = b.CreateString(name);
  fb::AttributeBuilder* unused = nullptr;
  (void)unused;
  if (auto* v = std::get_if<int64_t>(&a)) return fb::CreateAttribute(b, n, fb::AttrKind::Int, *v);
  if (auto* v = std::get_if<float>(&a)) return fb::CreateAttribute(b, n, fb::AttrKind::Float, 0, *v);
  if (auto* v = std::get_if<std::string>(&a))
    return fb::CreateAttribute(b, n, fb::AttrKind::String, 0, 0, b.CreateString(*v));
  if (auto* v = std::get_if<std::vector<int64_t>>(&a))
    return fb::CreateAttribute(b, n, fb::AttrKind::Ints, 0, 0, 0, b.CreateVector(*v));
  if (auto* v = std::get_if<std::vector<float>>(&a))
    return fb::CreateAttribute(b, n, fb::AttrKind::Floats, 0, 0, 0, 0, b.CreateVector(*v));
  if (auto* v = std::get_if<std::vector<std::string>>(&a))
    return fb::CreateAttribute(b, n, fb::AttrKind::Strings, 0, 0, 0, 0, 0, b.CreateVectorOfStrings(*v));
  auto t = write_tensor(b, std::get<Tensor>(a), blob);
  return fb::CreateAttribute(b, n, fb::AttrKind::Tensor, 0, 0, 0, 0, 0, 0, t);
}

Status corrupt(const std::string& what) {
  return Status(StatusCode::kCorruptEngine, "engine file is corrupt: " + what);
}

Result<Tensor> read_tensor(const fb::ConstTensor* t, std::span<const uint8_t> blob, const std::string& what) {
  if (!t || !t->dims()) return corrupt(what + ": missing tensor");
  Tensor out;
  if (!dtype_from_onnx(t->dtype(), &out.dtype)) return corrupt(what + ": bad dtype");
  int64_t n = 1;
  for (int64_t d : *t->dims()) {
    if (d < 0 || (d > 0 && n > (int64_t{1} << 40) / d)) return corrupt(what + ": bad dims");
    out.shape.push_back(d);
    n *= d;
  }
  if (static_cast<uint64_t>(n) * dtype_size(out.dtype) != t->size()) return corrupt(what + ": size does not match dims");
  if (t->offset() > blob.size() || t->size() > blob.size() - t->offset()) return corrupt(what + ": data out of bounds");
  out.bytes = std::make_shared<const std::vector<uint8_t>>(blob.begin() + t->offset(),
                                                           blob.begin() + t->offset() + t->size());
  return out;
}

std::string str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

template <class T>
std::vector<T> vec(const flatbuffers::Vector<T>* v) {
  return v ? std::vector<T>(v->begin(), v->end()) : std::vector<T>();
}

}  // namespace

std::vector<uint8_t> serialize_engine(const EngineModel& m) {
  FBB b(1 << 16);
  std::vector<uint8_t> blob;
  const Graph& g = m.graph;
  std::vector<flatbuffers::Offset<fb::Value>> values;
  for (size_t v = 0; v < g.values.size(); ++v) {
    const Value& val = g.values[v];
    const ValueStorage& st = m.storage[v];
    flatbuffers::Offset<fb::ConstTensor> c = 0;
    if (st.kind == StorageKind::kConstant) c = write_tensor(b, *val.constant, blob);
    values.push_back(fb::CreateValue(b, b.CreateString(val.name), static_cast<int>(val.dtype), b.CreateVector(val.shape),
                                     b.CreateVectorOfStrings(val.dim_params), static_cast<fb::StorageKind>(st.kind),
                                     st.arena_offset, st.max_bytes, st.io_index, c, st.view_of));
  }
  std::vector<flatbuffers::Offset<fb::Layer>> layers;
  for (const Node& n : g.nodes) {
    std::vector<flatbuffers::Offset<fb::Attribute>> attrs;
    for (const auto& [name, a] : n.attrs.all()) attrs.push_back(write_attr(b, name, a, blob));
    layers.push_back(fb::CreateLayer(b, b.CreateString(n.name), b.CreateString(n.op_type), b.CreateString(n.domain),
                                     n.opset, b.CreateVector(n.inputs), b.CreateVector(n.outputs), b.CreateVector(attrs),
                                     b.CreateVectorOfStrings(n.origins), b.CreateString(n.kernel),
                                     b.CreateString(n.precision)));
  }
  std::vector<flatbuffers::Offset<fb::Profile>> profiles;
  for (size_t i = 0; i < m.profiles.size(); ++i)
    profiles.push_back(fb::CreateProfile(b, b.CreateString(g.values[g.inputs[i]].name), b.CreateVector(m.profiles[i].min),
                                         b.CreateVector(m.profiles[i].opt), b.CreateVector(m.profiles[i].max)));
  std::vector<flatbuffers::Offset<fb::KeyValue>> meta;
  for (const auto& [k, v] : g.metadata) meta.push_back(fb::CreateKeyValue(b, b.CreateString(k), b.CreateString(v)));
  auto root = fb::CreateEngine(b, b.CreateString(m.kiln_version), b.CreateString(m.device), b.CreateString(m.target),
                               b.CreateString(m.build_flags_json), b.CreateString(g.producer), g.onnx_opset,
                               b.CreateVector(values), b.CreateVector(layers), b.CreateVector(g.inputs),
                               b.CreateVector(g.outputs), b.CreateVector(profiles), b.CreateVector(meta), m.arena_bytes,
                               blob.size(), b.CreateString(m.device_json));
  b.Finish(root);

  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.format_version = kEngineFormatVersion;
  h.header_size = kHeaderSize;
  h.meta_offset = kHeaderSize;
  h.meta_size = b.GetSize();
  h.weights_offset = align_up(h.meta_offset + h.meta_size);
  h.weights_size = blob.size();
  std::vector<uint8_t> file(h.weights_offset + h.weights_size, 0);
  std::memcpy(file.data() + h.meta_offset, b.GetBufferPointer(), h.meta_size);
  if (!blob.empty()) std::memcpy(file.data() + h.weights_offset, blob.data(), blob.size());
  h.crc32 = crc_of(file.data() + kHeaderSize, file.size() - kHeaderSize);
  std::memcpy(file.data(), &h, sizeof h);
  return file;
}

Result<EngineModel> deserialize_engine(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderSize)
    return Status(StatusCode::kCorruptEngine,
                  fmt::format("not a Kiln engine: {} bytes is shorter than the {}-byte header (truncated?)", bytes.size(),
                              kHeaderSize));
  Header h;
  std::memcpy(&h, bytes.data(), sizeof h);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    return Status(StatusCode::kCorruptEngine, "not a Kiln engine file (bad magic bytes)");
  if (h.format_version != kEngineFormatVersion)
    return Status(StatusCode::kVersionMismatch,
                  fmt::format("engine file format version {} is not supported by this Kiln (reads version {}); "
                              "rebuild the engine",
                              h.format_version, kEngineFormatVersion));
  const uint64_t size = bytes.size();
  if (h.header_size != kHeaderSize || h.meta_offset != kHeaderSize || h.meta_size > size ||
      h.meta_offset + h.meta_size > size || h.weights_offset < h.meta_offset + h.meta_size || h.weights_offset > size)
    return corrupt(fmt::format("section table does not fit the file ({} bytes; truncated?)", size));
  if (h.weights_size != size - h.weights_offset)
    return corrupt(fmt::format("expected {} bytes, file has {} (truncated or padded)", h.weights_offset + h.weights_size,
                               size));
  if (crc_of(bytes.data() + kHeaderSize, size - kHeaderSize) != h.crc32) return corrupt("checksum mismatch");

  const uint8_t* meta = bytes.data() + h.meta_offset;
  flatbuffers::Verifier verifier(meta, h.meta_size);
  if (!fb::VerifyEngineBuffer(verifier)) return corrupt("metadata failed verification");
  const fb::Engine* e = fb::GetEngine(meta);
  std::span<const uint8_t> blob = bytes.subspan(h.weights_offset, h.weights_size);

  EngineModel m;
  m.kiln_version = str(e->kiln_version());
  m.device = str(e->device());
  m.target = str(e->target());
  m.build_flags_json = str(e->build_flags());
  m.device_json = e->device_info() ? str(e->device_info()) : "{}";
  m.arena_bytes = e->arena_bytes();
  Graph& g = m.graph;
  g.producer = str(e->producer());
  g.onnx_opset = e->onnx_opset();
  if (!e->values() || !e->layers() || !e->inputs() || !e->outputs()) return corrupt("missing graph tables");
  const int nv = static_cast<int>(e->values()->size());
  auto valid_id = [&](int v) { return v >= 0 && v < nv; };
  for (const fb::Value* fv : *e->values()) {
    Value v;
    v.name = str(fv->name());
    if (!dtype_from_onnx(fv->dtype(), &v.dtype) && fv->dtype() != 0) return corrupt("value '" + v.name + "': bad dtype");
    v.shape = vec(fv->dims());
    v.rank_known = true;
    if (fv->dim_params())
      for (const auto* s : *fv->dim_params()) v.dim_params.push_back(s->str());
    v.dim_params.resize(v.shape.size());
    ValueStorage st;
    const int kind = static_cast<int>(fv->storage());
    if (kind < 0 || kind > static_cast<int>(StorageKind::kUnused)) return corrupt("value '" + v.name + "': bad storage");
    st.kind = static_cast<StorageKind>(kind);
    st.arena_offset = fv->arena_offset();
    st.max_bytes = fv->max_bytes();
    st.io_index = fv->io_index();
    st.view_of = fv->view_of();
    if (st.kind == StorageKind::kConstant) {
      auto t = read_tensor(fv->constant(), blob, "value '" + v.name + "'");
      if (!t.is_ok()) return t.status();
      // Kernels read a constant's own shape, shape inference the declared one: they must agree.
      if (t->shape != v.shape || t->dtype != v.dtype)
        return corrupt(fmt::format("value '{}': its constant is {} [{}], the value declares {} [{}]", v.name,
                                   dtype_name(t->dtype), dims_to_string(t->shape, ","), dtype_name(v.dtype),
                                   dims_to_string(v.shape, ",")));
      v.constant = std::move(t).value();
    }
    if (st.kind == StorageKind::kArena &&
        (st.arena_offset > m.arena_bytes || st.max_bytes > m.arena_bytes - st.arena_offset))
      return corrupt("value '" + v.name + "' lies outside the activation arena");
    if (st.kind == StorageKind::kView && !valid_id(st.view_of)) return corrupt("value '" + v.name + "': bad view");
    g.values.push_back(std::move(v));
    m.storage.push_back(st);
  }
  // View chains must end (no cycles) at a non-view value.
  for (int v = 0; v < nv; ++v) {
    int r = v, steps = 0;
    while (m.storage[r].kind == StorageKind::kView && steps++ <= nv) r = m.storage[r].view_of;
    if (steps > nv) return corrupt("view chain cycle at value '" + g.values[v].name + "'");
  }
  for (int v : *e->inputs()) {
    if (!valid_id(v)) return corrupt("bad input id");
    g.inputs.push_back(v);
  }
  for (int v : *e->outputs()) {
    if (!valid_id(v)) return corrupt("bad output id");
    g.outputs.push_back(v);
  }
  for (int v = 0; v < nv; ++v) {
    const auto& st = m.storage[v];
    if (st.kind == StorageKind::kInput && (st.io_index < 0 || st.io_index >= static_cast<int>(g.inputs.size())))
      return corrupt("bad input binding");
    if (st.kind == StorageKind::kOutput && (st.io_index < 0 || st.io_index >= static_cast<int>(g.outputs.size())))
      return corrupt("bad output binding");
  }
  for (const fb::Layer* fl : *e->layers()) {
    Node n;
    n.name = str(fl->name());
    n.op_type = str(fl->op_type());
    n.domain = str(fl->domain());
    n.opset = fl->opset();
    n.inputs = vec(fl->inputs());
    n.outputs = vec(fl->outputs());
    for (int v : n.inputs) if (v != kNoValue && !valid_id(v)) return corrupt("layer '" + n.name + "': bad input id");
    for (int v : n.outputs) if (!valid_id(v)) return corrupt("layer '" + n.name + "': bad output id");
    if (n.outputs.empty()) return corrupt("layer '" + n.name + "' has no outputs");
    if (fl->origins()) for (const auto* s : *fl->origins()) n.origins.push_back(s->str());
    n.kernel = str(fl->kernel());
    n.precision = str(fl->precision());
    if (fl->attrs())
      for (const fb::Attribute* a : *fl->attrs()) {
        const std::string an = str(a->name());
        switch (a->kind()) {
          case fb::AttrKind::Int: n.attrs.set(an, static_cast<int64_t>(a->i())); break;
          case fb::AttrKind::Float: n.attrs.set(an, a->f()); break;
          case fb::AttrKind::String: n.attrs.set(an, str(a->s())); break;
          case fb::AttrKind::Ints: n.attrs.set(an, vec(a->ints())); break;
          case fb::AttrKind::Floats: n.attrs.set(an, vec(a->floats())); break;
          case fb::AttrKind::Strings: {
            std::vector<std::string> ss;
            if (a->strings()) for (const auto* s : *a->strings()) ss.push_back(s->str());
            n.attrs.set(an, ss);
            break;
          }
          case fb::AttrKind::Tensor: {
            auto t = read_tensor(a->t(), blob, "attribute '" + an + "'");
            if (!t.is_ok()) return t.status();
            n.attrs.set(an, std::move(t).value());
            break;
          }
          default: return corrupt("layer '" + n.name + "': bad attribute kind");
        }
      }
    const OpDef* def = OpRegistry::instance().find(n.domain, n.op_type);
    if (!def)
      return Status(StatusCode::kUnsupported, fmt::format("engine layer '{}' uses operator '{}' unknown to this Kiln",
                                                          n.name, n.op_type));
    // The same validation import does (arity, attributes), so kernels never see a malformed layer.
    if (def->check) {
      Status s = def->check(n);
      if (!s.is_ok()) return corrupt(fmt::format("layer '{}': {}", n.name, s.to_string()));
    }
    // CUDA kernels are resolved by the CUDA backend at load, which can say why one is missing.
    if (m.device == "cpu" && n.kernel != kViewKernel && !cpu::KernelRegistry::instance().find(n.kernel))
      return Status(StatusCode::kUnsupported,
                    fmt::format("engine layer '{}' uses kernel '{}' unknown to this Kiln", n.name, n.kernel));
    g.nodes.push_back(std::move(n));
  }
  Status s = g.verify();
  if (!s.is_ok()) return corrupt(s.to_string());
  if (e->profiles()) {
    if (e->profiles()->size() != g.inputs.size()) return corrupt("profile count does not match inputs");
    for (size_t i = 0; i < e->profiles()->size(); ++i) {
      const fb::Profile* p = e->profiles()->Get(static_cast<flatbuffers::uoffset_t>(i));
      ShapeProfile sp{vec(p->min()), vec(p->opt()), vec(p->max())};
      const size_t rank = g.values[g.inputs[i]].shape.size();
      if (sp.min.size() != rank || sp.opt.size() != rank || sp.max.size() != rank) return corrupt("bad profile rank");
      m.profiles.push_back(std::move(sp));
    }
  } else if (!g.inputs.empty()) {
    return corrupt("missing profiles");
  }
  if (e->metadata())
    for (const fb::KeyValue* kv : *e->metadata()) g.metadata[str(kv->key())] = str(kv->value());
  return m;
}

}  // namespace kiln
