// Per-op test harness: builds a one-node graph from a case, runs check(), shape inference and the float64
// reference, then runs every registered CPU kernel that supports the node (create -> reshape -> run on
// NaN-poisoned outputs, twice) and compares each against the reference. Inputs are seeded random values,
// never zero (except bool). Further shape sets run through the same kernel instance (dynamic batch).
//
// In a build with the CUDA backend, every CUDA kernel that supports the node runs the same way on the GPU
// (pack -> tune -> constants uploaded -> create -> reshape -> enqueue on poisoned device outputs with a
// guard zone, twice), as the environment variable KILN_TEST_CUDA says:
//   unset or "auto"  run them when a GPU is usable, else skip silently;
//   "require"        fail every case when no GPU is usable (a GPU test run can never pass vacuously);
//   "off"            never run them.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <optional>
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
  // Quantized integer outputs: kernels scale in float32, the reference in float64, so a value at a rounding
  // tie may land one step away. Up to this many steps, on at most 1% of the elements, is accepted.
  int integer_slack = 0;
  double magnitude = 2.0;   // random floats lie in +-[magnitude/8, magnitude]
  uint64_t seed = 1;
  // Fail when no CPU kernel ran (Gemm/FusedGemm are exempt until their kernel lands).
  bool require_kernel = true;
  // When CUDA kernels run (see above), fail when none of them ran. Gemm/FusedGemm/MatMul are exempt until
  // their CUDA kernels land.
  bool require_cuda_kernel = true;

  OpCase& attr(const std::string& name, AttributeValue v) {
    attrs.set(name, std::move(v));
    return *this;
  }
};

struct CaseReport {
  std::vector<std::string> kernels_run;      // names of CPU kernels that ran and matched
  std::vector<std::string> kernels_skipped;  // "name: reason" for CPU kernels that do not support the node
  bool cuda_checked = false;                      // CUDA kernels were tried (GPU present, not "off")
  std::vector<std::string> cuda_kernels_run;      // names of CUDA kernels that ran and matched
  std::vector<std::string> cuda_kernels_skipped;  // "name: reason" for CUDA kernels that do not support it
  std::vector<TensorDesc> outputs;                // inferred outputs of the first shape set
};

// Relative L2 tolerance for float16 outputs (inputs are exact float16 values; each output rounds once).
constexpr double kFloat16Tolerance = 1e-2;

// A case that only a GPU backend must run (e.g. float16 arithmetic, where the CPU kernels are float32
// only): no CPU kernel is required; a CUDA kernel still is when CUDA kernels run.
OpCase gpu_only(OpCase c);

// Runs the full check; failures are reported through gtest (ADD_FAILURE) with the case description.
CaseReport run_op_case(const OpCase& c);

// Pieces for error tests.
Graph make_graph(const OpCase& c);
Status check_op(const OpCase& c);
Status infer_op(const OpCase& c, std::vector<TensorDesc>* outputs = nullptr);
Result<std::vector<RefTensor>> reference_op(const OpCase& c);

// "MatMul(opset 13) A[2,3] B[3,4]" style description for failure messages.
std::string describe(const OpCase& c);

// Sets an environment variable for the scope of a test, then restores it.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (old_) setenv(name_, old_->c_str(), 1);
    else unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};


}  // namespace kiln::test
