// Per-op test harness: builds a one-node graph from a case, runs check(), shape inference and the float64
// reference, then runs every registered CPU kernel that supports the node (create -> reshape -> run on
// NaN-poisoned outputs, twice) and compares each against the reference. Inputs are seeded random values,
// never zero (except bool). Further shape sets run through the same kernel instance (dynamic batch).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/op.h"

namespace kiln::test {

struct InputSpec {
  DataType dtype = DataType::kFloat32;
  Dims shape;
  bool omitted = false;
  bool constant = false;       // a graph constant (initializer) rather than a graph input
  std::vector<double> values;  // explicit data; random when empty
};

// A runtime input of the given shape and dtype, random data.
InputSpec input(Dims shape, DataType dt = DataType::kFloat32);
// A constant with explicit values.
InputSpec constant(DataType dt, Dims shape, std::vector<double> values);
// A 1-D int64 constant (shape, axes, ...).
InputSpec ints(const std::vector<int64_t>& values);
// A random constant (weights).
InputSpec random_constant(Dims shape, DataType dt = DataType::kFloat32);
InputSpec omitted();

struct OpCase {
  std::string op_type;
  int opset = 17;
  std::string domain;
  Attributes attrs;
  std::vector<InputSpec> inputs;
  size_t num_outputs = 1;
  // Extra runs on the same kernel instance: new shapes for the non-constant inputs, in order.
  std::vector<std::vector<Dims>> more_shapes;
  double tolerance = 1e-5;  // relative L2 for float outputs; integer and bool outputs compare exactly
  // Node precision the kernels see ("fp32", "tf32", "fp16"); CUDA GEMMs pick their compute type from it.
  std::string precision = "fp32";
  bool exact = false;       // compare float outputs exactly too (data movement and casts)
  double magnitude = 2.0;   // random floats lie in +-[magnitude/8, magnitude]
  uint64_t seed = 1;
  // Fail when no registered kernel supports the node (Gemm/FusedGemm are exempt until their kernel lands).
  bool require_kernel = true;

  OpCase& attr(const std::string& name, AttributeValue v) {
    attrs.set(name, std::move(v));
    return *this;
  }
};

struct CaseReport {
  std::vector<std::string> kernels_run;      // names of kernels that ran and matched
  std::vector<std::string> kernels_skipped;  // "name: reason" for kernels that do not support the node
  std::vector<TensorDesc> outputs;           // inferred outputs of the first shape set
};

// Runs the full check; failures are reported through gtest (ADD_FAILURE) with the case description.
CaseReport run_op_case(const OpCase& c);

// Pieces for error tests.
Graph make_graph(const OpCase& c);
Status check_op(const OpCase& c);
Status infer_op(const OpCase& c, std::vector<TensorDesc>* outputs = nullptr);
Result<std::vector<RefTensor>> reference_op(const OpCase& c);

// "MatMul(opset 13) A[2,3] B[3,4]" style description for failure messages.
std::string describe(const OpCase& c);

}  // namespace kiln::test
