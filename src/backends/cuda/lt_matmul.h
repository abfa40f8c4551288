// cuBLASLt plumbing shared by the GEMM and MatMul kernels: the row-major -> column-major mapping, plans
// (descriptors + algorithm) per problem, tactic timing at build time and tactic (de)serialization.
//
// Mapping. Kiln tensors are row-major; cuBLASLt is column-major. A row-major [R,C] buffer read as
// column-major is the [C,R] transpose, so Kiln's Y = op(X)·op(W) is computed as cuBLASLt's
//   D (N x M, ld N) = op_a(A = W) · op_b(B = X)        i.e. Yᵀ = op(W)ᵀ · op(X)ᵀ
// W is cuBLASLt's A: stored [K,N] (trans_w = 0) reads as N x K, op N; stored [N,K] (trans_w = 1) reads as
// K x N, op T. X is cuBLASLt's B: stored [M,K] reads as K x M, op N; stored [K,M] (trans_x) as M x K, op T.
// D's rows are Kiln's columns, so a per-column bias [N] is cuBLASLt's per-row bias epilogue. The fastest
// form ("TN": both operands K-contiguous) is weights [N,K] with activations [M,K]: what GEMM pack() makes.
#pragma once
#include <cublasLt.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backends/cuda/cuda_kernel.h"

namespace kiln::cuda {

// Ok, or kRuntimeError "<what>: CUBLAS_STATUS_...: <description>".
Status lt_check(cublasStatus_t st, const std::string& what);

// One cuBLASLt matmul, in Kiln's row-major terms:
//   Y[b] = act(alpha * op(X[b]) · op(W[b]) + beta * Y[b] (when accumulate) + bias (when bias)), act = ReLU or none
struct LtProblem {
  int64_t m = 0, n = 0, k = 0;
  bool trans_x = false, trans_w = false;
  int64_t batch = 1;
  int64_t stride_x = 0, stride_w = 0, stride_y = 0;  // elements between batch matrices; 0 = one shared matrix
  bool bias = false;        // per-column bias [N] of Y's dtype (cuBLASLt's BIAS epilogue)
  bool relu = false;        // RELU epilogue (after bias and accumulate)
  bool accumulate = false;  // C = Y in place, scaled by beta (Y was pre-filled with broadcast C)

  auto operator<=>(const LtProblem&) const = default;
  std::string layout() const;    // "W:T X:N" + strides when batched
  std::string epilogue() const;  // "DEFAULT", "BIAS", "RELU_BIAS", ... + "+accumulate"
  std::string describe() const;  // for messages
};

struct LtTypes {
  DataType in = DataType::kFloat32;   // X and W
  DataType out = DataType::kFloat32;  // Y (and bias, and C)
  bool tf32 = false;                  // CUBLAS_COMPUTE_32F_FAST_TF32 (float32 only); else CUBLAS_COMPUTE_32F
  // int8 X and W with an int32 Y: CUBLAS_COMPUTE_32I with int32 alpha/beta (the IMMA kernels want "TN",
  // K and N multiples of 4 and 4-byte aligned pointers; see qgemm_cublaslt.cpp).
  bool integer() const { return in == DataType::kInt8; }
  std::string describe() const;       // "float16,float16->float32 compute 32F", "int8,int8->int32 compute 32I"
};

// Workspace cap for any algorithm we pick (heuristic preference and check of tuned algorithms).
constexpr size_t kLtMaxWorkspace = size_t{32} << 20;
// Pointer alignment the primary algorithm may assume. Arena slices and uploaded constants are at least this
// aligned; anything less (an odd batch offset, a view) runs a fallback algorithm picked for element
// alignment, decided per launch from the actual pointers.
constexpr uint32_t kLtAlignment = 16;

using LtAlgo = cublasLtMatmulAlgo_t;
// The 64-byte algorithm as 8 int64 (kTacticDataAttr / timing cache data), and back (nullopt if malformed).
std::vector<int64_t> algo_to_ints(const LtAlgo& algo);
std::optional<LtAlgo> algo_from_ints(const std::vector<int64_t>& v);
// "algo 21 tile 128x128 stages 64x4 splitK 1 reduction none swizzle 0 custom 0 cluster 1x1x1"
std::string algo_name(const LtAlgo& algo);

// A tuned algorithm and the M it was timed at: a "tactic band". Tiles tuned for a dynamic profile's opt M
// (8192 rows) waste most of the GPU at its min M (1 row), so tuning also times the min M when it is far
// below opt, and select() runs the band nearest the actual M.
struct LtBand {
  int64_t m = 0;  // the M it was timed at; 0 = any M (a tactic from an engine written before bands)
  LtAlgo algo{};
  std::string name;
  double ms = 0;
  bool from_cache = false;
};
// kTacticDataAttr's encoding, also for kernels that keep bands inside their own tactic data: 9 ints per
// band, [m, algo_to_ints...]; a lone m = 0 band is the 8 ints of engines written before bands.
std::vector<int64_t> bands_to_ints(const std::vector<LtBand>& bands);
// Reads both forms (names from algo_name; ms 0). Anything else is kInvalidArgument naming `what`.
Result<std::vector<LtBand>> bands_from_ints(const std::vector<int64_t>& v, const std::string& what);
// Indices of `bands`, nearest to m first by |log m - log band.m| (m = 0 bands are nearest to any M;
// ties keep their order): the order select() tries them in.
std::vector<size_t> band_order(const std::vector<LtBand>& bands, int64_t m);

// Runs problems for one kernel instance. Owns its cuBLASLt handle (see gemm_cublaslt.cpp for why).
class LtMatmul {
 public:
  // context names the layer for messages, e.g. "layer 'fc1' (cuda.f16.gemm.cublaslt)".
  static Result<std::unique_ptr<LtMatmul>> create(LtTypes types, std::vector<LtBand> tuned, std::string context);
  ~LtMatmul();
  LtMatmul(const LtMatmul&) = delete;
  LtMatmul& operator=(const LtMatmul&) = delete;

  // Reshape time: descriptors and algorithm for `p` (the tuned band nearest p.m that
  // cublasLtMatmulAlgoCheck accepts for this shape, else the next nearest, else the heuristic's first),
  // cached per problem. Makes `p` current.
  Status select(const LtProblem& p);
  size_t workspace_bytes() const;  // of the current problem (both its algorithms)
  // Of the current problem: "tuned M=1: <name>" ("tuned: <name>" for an any-M band) / "heuristic: <name>".
  std::string selected() const;
  // Whether run() has an algorithm for these pointers' alignments (callers with a fallback of their own).
  bool accepts(const void* x, const void* w, const void* y, const void* bias) const;

  // Hot path: runs the current problem. bias (N elements of the output dtype) when the problem has one;
  // y is also C when it accumulates. No allocation, no heuristic calls. Integer types pass alpha and beta
  // as int32 (rounded).
  Status run(const void* x, const void* w, void* y, const void* bias, float alpha, float beta, void* workspace,
             cudaStream_t stream);

  struct Plan;

 private:
  LtMatmul() = default;
  LtTypes types_;
  std::vector<LtBand> tuned_;
  std::string context_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<LtProblem, std::unique_ptr<Plan>> plans_;
  Plan* current_ = nullptr;
};

// Build time, on the build GPU: times up to 16 heuristic candidates for `opt` (keeping those that
// cublasLtMatmulAlgoCheck also accepts at `min` and `max`) on random data, median of 25 runs each; the
// fastest is the first band (m = opt.m). When min.m * 8 <= opt.m, a second band is timed the same way at
// `min` (its candidates need only run there). Consults and fills ctx.cache per band (key from the
// device, cuBLASLt version, kernel, precision, types and the band's problem).
Result<std::vector<LtBand>> lt_tune(const LtTypes& types, const LtProblem& opt, const LtProblem& min, const LtProblem& max,
                        float alpha, float beta, const TuneContext& ctx, const std::string& kernel,
                        const std::string& precision, const std::string& context);

// Build-time packing shared by the GEMM kernels: a constant 2-D input 1 stored [K,N] (transB = 0) becomes
// its [N,K] transpose and transB = 1, cuBLASLt's "TN" form. Other inputs are left as they are.
Status pack_weights_nk(Node& n, Graph& g);

// Writes kTacticAttr (the name; with several bands "M=8192: <name> (0.0123 ms); M=1: ..."),
// kTacticDataAttr (bands_to_ints) and kTacticMsAttr (the first band's time) into the node.
void write_tactic(Node& node, const std::vector<LtBand>& bands);
// The tuned bands recorded in the node, none without a tactic (malformed data is an error).
Result<std::vector<LtBand>> read_tactic(const Node& node);

}  // namespace kiln::cuda
