// Shared helpers for model-level tests: fixtures, random data, error metrics, tiny ONNX models.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <onnx/onnx_pb.h>

#include "kiln/gpu.h"
#include "kiln/kiln.h"

namespace kiln::test {

// GPU tests skip without a GPU, unless KILN_TEST_CUDA=require (the "gpu" ctest label) makes that a failure.
inline bool gpu_required() {
  const char* v = std::getenv("KILN_TEST_CUDA");
  return v && std::string(v) == "require";
}

#define REQUIRE_GPU()                                                                                  \
  do {                                                                                                 \
    if (!::kiln::gpu::available()) {                                                                   \
      if (::kiln::test::gpu_required()) FAIL() << "KILN_TEST_CUDA=require but no usable GPU was found"; \
      GTEST_SKIP() << "no GPU";                                                                        \
    }                                                                                                  \
  } while (0)

inline std::string source_path(const std::string& rel) { return std::string(KILN_SOURCE_DIR) + "/" + rel; }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) {
    do x = d(rng); while (x == 0.f);
  }
  return v;
}

// ||out - ref|| / ||ref||; any NaN in out gives +inf.
inline double rel_l2(const std::vector<float>& out, const std::vector<double>& ref) {
  double num = 0, den = 0;
  if (out.size() != ref.size()) return INFINITY;
  for (size_t i = 0; i < out.size(); ++i) {
    if (std::isnan(out[i])) return INFINITY;
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num / (den > 0 ? den : 1));
}

inline std::shared_ptr<Engine> must_load(const std::vector<uint8_t>& bytes) {
  auto e = Runtime().deserialize_engine(bytes);
  if (!e.is_ok()) throw std::runtime_error(e.status().to_string());
  return std::move(e).value();
}

// Tiny ONNX models for error and end-to-end cases.
struct OnnxModel {
  onnx::ModelProto proto;
  explicit OnnxModel(int64_t opset = 17) {
    proto.set_ir_version(8);
    auto* os = proto.add_opset_import();
    os->set_domain("");
    os->set_version(opset);
  }
  onnx::GraphProto& graph() { return *proto.mutable_graph(); }
  void input(const std::string& name, const std::vector<int64_t>& dims, int elem = 1) {
    add_value_info(graph().add_input(), name, dims, elem);
  }
  void output(const std::string& name, const std::vector<int64_t>& dims, int elem = 1) {
    add_value_info(graph().add_output(), name, dims, elem);
  }
  static void add_value_info(onnx::ValueInfoProto* vi, const std::string& name, const std::vector<int64_t>& dims,
                             int elem) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(elem);
    auto* shape = tt->mutable_shape();
    for (int64_t d : dims) {
      auto* dim = shape->add_dim();
      if (d < 0) dim->set_dim_param("batch");
      else dim->set_dim_value(d);
    }
  }
  onnx::NodeProto& node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                        const std::string& name = "") {
    auto* n = graph().add_node();
    n->set_op_type(op);
    n->set_name(name.empty() ? op + "_" + std::to_string(graph().node_size()) : name);
    for (const auto& s : in) n->add_input(s);
    for (const auto& s : out) n->add_output(s);
    return *n;
  }
  void initializer(const std::string& name, const std::vector<int64_t>& dims, const std::vector<float>& v,
                   bool raw = true) {
    auto* t = graph().add_initializer();
    t->set_name(name);
    t->set_data_type(1);
    for (int64_t d : dims) t->add_dims(d);
    if (raw) t->set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4));
    else for (float x : v) t->add_float_data(x);
  }
  std::string bytes() const { return proto.SerializeAsString(); }
};

}  // namespace kiln::test
