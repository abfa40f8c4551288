#include "backends/cuda/lt_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>

#include <fmt/format.h>

#include "backends/cuda/gemm_elementwise.h"
#include "backends/cuda/timing_cache.h"

#include "backends/cuda/cublaslt_names.inc"

namespace kiln::cuda {

Status lt_check(cublasStatus_t st, const std::string& what) {
  if (st == CUBLAS_STATUS_SUCCESS) return Status::ok();
  return Status(StatusCode::kRuntimeError,
                fmt::format("{}: {}: {}", what, cublasLtGetStatusName(st), cublasLtGetStatusString(st)));
}

namespace {

cudaDataType_t cuda_type(DataType dt) {
  switch (dt) {
    case DataType::kFloat16: return CUDA_R_16F;
    case DataType::kInt8: return CUDA_R_8I;
    case DataType::kInt32: return CUDA_R_32I;
    default: return CUDA_R_32F;
  }
}

// The least pointer alignment an algorithm may be asked for: the element size, and 4 bytes for int8
// (cuBLASLt's IMMA kernels need it; below it the heuristic has nothing to offer).
uint32_t min_alignment(DataType dt) { return dt == DataType::kInt8 ? 4u : static_cast<uint32_t>(dtype_size(dt)); }

const char* tile_name(uint32_t id) {
#define KILN_X(s) case CUBLASLT_MATMUL_TILE_##s: return #s;
  switch (id) {
    case CUBLASLT_MATMUL_TILE_UNDEFINED: return "auto";
    KILN_LT_TILES(KILN_X)
    default: return nullptr;
  }
#undef KILN_X
}

const char* stages_name(uint32_t id) {
#define KILN_X(s) case CUBLASLT_MATMUL_STAGES_##s: return #s;
  switch (id) {
    case CUBLASLT_MATMUL_STAGES_UNDEFINED: return "auto";
    KILN_LT_STAGES(KILN_X)
    default: return nullptr;
  }
#undef KILN_X
}

const char* cluster_name(uint32_t id) {
#define KILN_X(s) case CUBLASLT_CLUSTER_SHAPE_##s: return #s;
  switch (id) {
    case CUBLASLT_CLUSTER_SHAPE_AUTO: return "auto";
    KILN_LT_CLUSTERS(KILN_X)
    default: return nullptr;
  }
#undef KILN_X
}

const char* reduction_name(uint32_t r) {
  switch (r) {
    case CUBLASLT_REDUCTION_SCHEME_NONE: return "none";
    case CUBLASLT_REDUCTION_SCHEME_INPLACE: return "inplace";
    case CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE: return "compute";
    case CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE: return "output";
    default: return nullptr;
  }
}

template <class T>
T config_attr(const LtAlgo& algo, cublasLtMatmulAlgoConfigAttributes_t attr) {
  T v{};
  size_t written = 0;
  if (cublasLtMatmulAlgoConfigGetAttribute(&algo, attr, &v, sizeof v, &written) != CUBLAS_STATUS_SUCCESS) return T{};
  return v;
}

// Element counts a problem touches (batch strides of 0 share one matrix).
int64_t extent(int64_t batch, int64_t stride, int64_t matrix) { return (batch - 1) * stride + matrix; }

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// Problem and type descriptions

std::string LtProblem::layout() const {
  std::string s = fmt::format("W:{} X:{}", trans_w ? "T" : "N", trans_x ? "T" : "N");
  if (batch > 1) s += fmt::format(" strides x{} w{} y{}", stride_x, stride_w, stride_y);
  return s;
}

std::string LtProblem::epilogue() const {
  std::string s = bias ? (relu ? "RELU_BIAS" : "BIAS") : (relu ? "RELU" : "DEFAULT");
  if (accumulate) s += "+accumulate";
  return s;
}

std::string LtProblem::describe() const {
  return fmt::format("Y[{}x{}] = X{}[{}x{}] * W{}[{}x{}]{}, epilogue {}", m, n, trans_x ? "^T" : "",
                     trans_x ? k : m, trans_x ? m : k, trans_w ? "^T" : "", trans_w ? n : k, trans_w ? k : n,
                     batch > 1 ? fmt::format(" x {} batches ({})", batch, layout()) : "", epilogue());
}

std::string LtTypes::describe() const {
  return fmt::format("{},{}->{} compute {}", dtype_name(in), dtype_name(in), dtype_name(out),
                     integer() ? "32I" : tf32 ? "32F_FAST_TF32" : "32F");
}

std::vector<int64_t> algo_to_ints(const LtAlgo& algo) {
  static_assert(sizeof(LtAlgo) == 8 * sizeof(int64_t));
  std::vector<int64_t> v(8);
  std::memcpy(v.data(), &algo, sizeof algo);
  return v;
}

std::optional<LtAlgo> algo_from_ints(const std::vector<int64_t>& v) {
  if (v.size() != 8) return std::nullopt;
  LtAlgo algo;
  std::memcpy(&algo, v.data(), sizeof algo);
  return algo;
}

std::string algo_name(const LtAlgo& algo) {
  auto named = [](const char* name, uint32_t id) { return name ? std::string(name) : fmt::format("#{}", id); };
  const uint32_t tile = config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID);
  const uint32_t stages = config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID);
  const uint32_t reduction = config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME);
  const uint16_t cluster = config_attr<uint16_t>(algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID);
  return fmt::format("algo {} tile {} stages {} splitK {} reduction {} swizzle {} custom {} cluster {}",
                     config_attr<int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID), named(tile_name(tile), tile),
                     named(stages_name(stages), stages), config_attr<int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM),
                     named(reduction_name(reduction), reduction),
                     config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING),
                     config_attr<uint32_t>(algo, CUBLASLT_ALGO_CONFIG_CUSTOM_OPTION),
                     named(cluster_name(cluster), cluster));
}

// ---------------------------------------------------------------------------------------------------------
// Tactic bands

namespace {
constexpr size_t kAlgoInts = 8, kBandInts = 1 + kAlgoInts;  // a band: m, then the algorithm
}  // namespace

std::vector<int64_t> bands_to_ints(const std::vector<LtBand>& bands) {
  if (bands.size() == 1 && bands[0].m == 0) return algo_to_ints(bands[0].algo);
  std::vector<int64_t> v;
  v.reserve(bands.size() * kBandInts);
  for (const LtBand& b : bands) {
    v.push_back(b.m);
    const std::vector<int64_t> algo = algo_to_ints(b.algo);
    v.insert(v.end(), algo.begin(), algo.end());
  }
  return v;
}

Result<std::vector<LtBand>> bands_from_ints(const std::vector<int64_t>& v, const std::string& what) {
  auto band = [](int64_t m, std::vector<int64_t>::const_iterator algo_begin) {
    const LtAlgo algo = *algo_from_ints(std::vector<int64_t>(algo_begin, algo_begin + kAlgoInts));  // 8 ints decode
    return LtBand{m, algo, algo_name(algo)};
  };
  if (v.size() == kAlgoInts) return std::vector<LtBand>{band(0, v.begin())};
  if (v.empty() || v.size() % kBandInts != 0)
    return Status(StatusCode::kInvalidArgument,
                  fmt::format("{} holds {} ints: neither a cuBLASLt algorithm ({}) nor bands of {} (M, then the "
                              "algorithm)", what, v.size(), kAlgoInts, kBandInts));
  std::vector<LtBand> bands;
  for (size_t i = 0; i < v.size(); i += kBandInts) {
    if (v[i] <= 0)
      return Status(StatusCode::kInvalidArgument,
                    fmt::format("{}: band {} has M = {}, not a row count", what, i / kBandInts, v[i]));
    bands.push_back(band(v[i], v.begin() + static_cast<std::ptrdiff_t>(i) + 1));
  }
  return bands;
}

std::vector<size_t> band_order(const std::vector<LtBand>& bands, int64_t m) {
  auto distance = [m](const LtBand& b) {
    return b.m > 0 && m > 0 ? std::abs(std::log(static_cast<double>(m)) - std::log(static_cast<double>(b.m))) : 0.0;
  };
  std::vector<size_t> order(bands.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return distance(bands[a]) < distance(bands[b]); });
  return order;
}

// ---------------------------------------------------------------------------------------------------------
// Plans: descriptors live in cuBLASLt's semi-opaque structs (initialized in place, nothing to free), so a
// plan is plain data at a stable address (plans are held by unique_ptr).

struct LtMatmul::Plan {
  LtProblem problem;
  cublasLtMatmulDescOpaque_t desc;
  cublasLtMatrixLayoutOpaque_t a, b, c, d;  // cuBLASLt's A (= W), B (= X), C and D (= Y, same layout)
  struct Choice {
    bool valid = false;
    LtAlgo algo;
    size_t workspace = 0;
    uint32_t align_a = 0, align_b = 0, align_c = 0, align_d = 0;  // bytes each pointer must be aligned to
    std::string name;
  };
  Choice main;      // tuned or heuristic, chosen assuming kLtAlignment-aligned pointers
  Choice fallback;  // for less aligned pointers (only when main needs more than element alignment)
  std::string source;
};

namespace {

using Plan = LtMatmul::Plan;

Status init_plan(Plan& pl, const LtTypes& t, const LtProblem& p, const std::string& context) {
  const std::string what = fmt::format("{}: describing {} ({})", context, p.describe(), t.describe());
  if (p.m <= 0 || p.n <= 0 || p.k <= 0 || p.batch <= 0)
    return Status(StatusCode::kInternal, what + ": empty problems never reach cuBLASLt");
  if (p.batch > INT32_MAX) return Status(StatusCode::kUnsupported, what + ": more than 2^31 batches");
  pl.problem = p;
  const cudaDataType_t in = cuda_type(t.in), out = cuda_type(t.out);
  const cublasComputeType_t compute =
      t.integer() ? CUBLAS_COMPUTE_32I : t.tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  Status s = lt_check(cublasLtMatmulDescInit(&pl.desc, compute, t.integer() ? CUDA_R_32I : CUDA_R_32F),
                      what + ": cublasLtMatmulDescInit");
  if (!s.is_ok()) return s;
  auto set_desc = [&](cublasLtMatmulDescAttributes_t attr, const auto& v, const char* name) {
    if (!s.is_ok()) return;
    s = lt_check(cublasLtMatmulDescSetAttribute(&pl.desc, attr, &v, sizeof v), fmt::format("{}: setting {}", what, name));
  };
  const int32_t op_a = p.trans_w ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int32_t op_b = p.trans_x ? CUBLAS_OP_T : CUBLAS_OP_N;
  set_desc(CUBLASLT_MATMUL_DESC_TRANSA, op_a, "TRANSA");
  set_desc(CUBLASLT_MATMUL_DESC_TRANSB, op_b, "TRANSB");
  const uint32_t epilogue = p.bias ? (p.relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                   : (p.relu ? CUBLASLT_EPILOGUE_RELU : CUBLASLT_EPILOGUE_DEFAULT);
  set_desc(CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue, "EPILOGUE");
  if (p.bias && p.batch > 1) set_desc(CUBLASLT_MATMUL_DESC_BIAS_BATCH_STRIDE, int64_t{0}, "BIAS_BATCH_STRIDE");
  if (!s.is_ok()) return s;

  auto init_layout = [&](cublasLtMatrixLayoutOpaque_t& l, cudaDataType_t type, int64_t rows, int64_t cols,
                         int64_t stride, const char* name) {
    if (!s.is_ok()) return;
    s = lt_check(cublasLtMatrixLayoutInit(&l, type, static_cast<uint64_t>(rows), static_cast<uint64_t>(cols), rows),
                 fmt::format("{}: layout of {} ({}x{})", what, name, rows, cols));
    if (!s.is_ok() || p.batch == 1) return;
    const int32_t count = static_cast<int32_t>(p.batch);
    s = lt_check(cublasLtMatrixLayoutSetAttribute(&l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof count),
                 fmt::format("{}: batch count of {}", what, name));
    if (s.is_ok())
      s = lt_check(
          cublasLtMatrixLayoutSetAttribute(&l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
          fmt::format("{}: batch stride of {}", what, name));
  };
  // Column-major views of the row-major buffers (see the header): ld = rows, no padding.
  init_layout(pl.a, in, p.trans_w ? p.k : p.n, p.trans_w ? p.n : p.k, p.stride_w, "W");
  init_layout(pl.b, in, p.trans_x ? p.m : p.k, p.trans_x ? p.k : p.m, p.stride_x, "X");
  init_layout(pl.c, out, p.n, p.m, p.stride_y, "C");
  init_layout(pl.d, out, p.n, p.m, p.stride_y, "Y");
  return s;
}

uint32_t cap_alignment(const LtAlgo& algo, cublasLtMatmulAlgoCapAttributes_t attr, uint32_t element) {
  uint32_t v = 0;
  size_t written = 0;
  // An algorithm that cannot say keeps to what we asked the heuristic for.
  if (cublasLtMatmulAlgoCapGetAttribute(&algo, attr, &v, sizeof v, &written) != CUBLAS_STATUS_SUCCESS)
    return std::max(kLtAlignment, element);
  return std::max(v, element);
}

Plan::Choice make_choice(const LtAlgo& algo, size_t workspace, const LtTypes& t) {
  Plan::Choice c;
  c.valid = true;
  c.algo = algo;
  c.workspace = workspace;
  const uint32_t ein = min_alignment(t.in), eout = min_alignment(t.out);
  c.align_a = cap_alignment(algo, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_A_BYTES, ein);
  c.align_b = cap_alignment(algo, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_B_BYTES, ein);
  c.align_c = cap_alignment(algo, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_C_BYTES, eout);
  c.align_d = cap_alignment(algo, CUBLASLT_ALGO_CAP_MIN_ALIGNMENT_D_BYTES, eout);
  c.name = algo_name(algo);
  return c;
}

// Up to `count` heuristic results for the plan, best first, with pointers aligned to `align_in` (A, B) and
// `align_out` (C, D) bytes. An unsupported configuration is an empty list, not an error.
Result<std::vector<cublasLtMatmulHeuristicResult_t>> heuristic(cublasLtHandle_t handle, Plan& pl, int count,
                                                               uint32_t align_in, uint32_t align_out,
                                                               const std::string& what) {
  cublasLtMatmulPreferenceOpaque_t pref;
  Status s = lt_check(cublasLtMatmulPreferenceInit(&pref), what + ": cublasLtMatmulPreferenceInit");
  auto set_pref = [&](cublasLtMatmulPreferenceAttributes_t attr, const auto& v, const char* name) {
    if (s.is_ok())
      s = lt_check(cublasLtMatmulPreferenceSetAttribute(&pref, attr, &v, sizeof v),
                   fmt::format("{}: preference {}", what, name));
  };
  set_pref(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{kLtMaxWorkspace}, "MAX_WORKSPACE_BYTES");
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_in, "MIN_ALIGNMENT_A_BYTES");
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_in, "MIN_ALIGNMENT_B_BYTES");
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_out, "MIN_ALIGNMENT_C_BYTES");
  set_pref(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_out, "MIN_ALIGNMENT_D_BYTES");
  if (!s.is_ok()) return s;
  std::vector<cublasLtMatmulHeuristicResult_t> results(static_cast<size_t>(count));
  int returned = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, &pl.desc, &pl.a, &pl.b, &pl.c, &pl.d, &pref, count,
                                                           results.data(), &returned);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) return std::vector<cublasLtMatmulHeuristicResult_t>{};
  s = lt_check(st, what + ": cublasLtMatmulAlgoGetHeuristic");
  if (!s.is_ok()) return s;
  results.resize(static_cast<size_t>(std::max(returned, 0)));
  std::erase_if(results, [](const auto& r) { return r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > kLtMaxWorkspace; });
  return results;
}

// Workspace the algorithm needs for the plan, or nullopt when cublasLtMatmulAlgoCheck rejects it there.
std::optional<size_t> check_algo(cublasLtHandle_t handle, Plan& pl, const LtAlgo& algo) {
  cublasLtMatmulHeuristicResult_t r{};
  if (cublasLtMatmulAlgoCheck(handle, &pl.desc, &pl.a, &pl.b, &pl.c, &pl.d, &algo, &r) != CUBLAS_STATUS_SUCCESS)
    return std::nullopt;
  if (r.workspaceSize > kLtMaxWorkspace) return std::nullopt;
  return r.workspaceSize;
}

// alpha and beta in the matmul's scale type: float, or int32 for the integer compute type.
struct Scalars {
  float f[2];
  int32_t i[2];
  bool integer;
  Scalars(const LtTypes& t, float alpha, float beta)
      : f{alpha, beta}, i{static_cast<int32_t>(std::lround(alpha)), static_cast<int32_t>(std::lround(beta))},
        integer(t.integer()) {}
  const void* alpha() const { return integer ? static_cast<const void*>(&i[0]) : &f[0]; }
  const void* beta() const { return integer ? static_cast<const void*>(&i[1]) : &f[1]; }
};

bool aligned(const void* p, uint32_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

bool fits(const Plan::Choice& c, const void* x, const void* w, const void* y, const void* bias) {
  // The bias has no capability of its own; hold it to C's requirement.
  return c.valid && aligned(w, c.align_a) && aligned(x, c.align_b) && aligned(y, c.align_c) && aligned(y, c.align_d) &&
         (!bias || aligned(bias, c.align_c));
}

struct HandleDeleter {
  void operator()(cublasLtHandle_t h) const { cublasLtDestroy(h); }
};
using HandlePtr = std::unique_ptr<std::remove_pointer_t<cublasLtHandle_t>, HandleDeleter>;

Result<HandlePtr> create_handle(const std::string& what) {
  cublasLtHandle_t h = nullptr;
  Status s = lt_check(cublasLtCreate(&h), what + ": cublasLtCreate");
  if (!s.is_ok()) return s;
  return HandlePtr(h);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// LtMatmul

Result<std::unique_ptr<LtMatmul>> LtMatmul::create(LtTypes types, std::vector<LtBand> tuned, std::string context) {
  auto handle = create_handle(context);
  if (!handle.is_ok()) return handle.status();
  std::unique_ptr<LtMatmul> m(new LtMatmul());
  m->types_ = types;
  m->tuned_ = std::move(tuned);
  m->context_ = std::move(context);
  m->handle_ = handle->release();
  return m;
}

LtMatmul::~LtMatmul() {
  if (handle_) cublasLtDestroy(handle_);
}

Status LtMatmul::select(const LtProblem& p) {
  if (auto it = plans_.find(p); it != plans_.end()) {
    current_ = it->second.get();
    return Status::ok();
  }
  auto pl = std::make_unique<Plan>();
  Status s = init_plan(*pl, types_, p, context_);
  if (!s.is_ok()) return s;
  const std::string what = fmt::format("{}: {} ({})", context_, p.describe(), types_.describe());
  for (size_t i : band_order(tuned_, p.m)) {
    const LtBand& band = tuned_[i];
    if (auto ws = check_algo(handle_, *pl, band.algo)) {
      pl->main = make_choice(band.algo, *ws, types_);
      pl->source = band.m > 0 ? fmt::format("tuned M={}", band.m) : "tuned";
      break;
    }
  }
  if (!pl->main.valid) {  // no tactic, or none fits this shape (another M inside the profile)
    auto h = heuristic(handle_, *pl, 1, kLtAlignment, kLtAlignment, what);
    if (!h.is_ok()) return h.status();
    if (!h->empty()) {
      pl->main = make_choice(h->front().algo, h->front().workspaceSize, types_);
      pl->source = "heuristic";
    }
  }
  const uint32_t ein = min_alignment(types_.in), eout = min_alignment(types_.out);
  const Plan::Choice& m = pl->main;
  if (!m.valid || m.align_a > ein || m.align_b > ein || m.align_c > eout || m.align_d > eout) {
    auto h = heuristic(handle_, *pl, 1, ein, eout, what);
    if (!h.is_ok()) return h.status();
    if (!h->empty()) pl->fallback = make_choice(h->front().algo, h->front().workspaceSize, types_);
  }
  if (!pl->main.valid && !pl->fallback.valid)
    return Status(StatusCode::kUnsupported, what + ": cuBLASLt has no algorithm for this problem on this GPU");
  current_ = pl.get();
  plans_.emplace(p, std::move(pl));
  return Status::ok();
}

size_t LtMatmul::workspace_bytes() const {
  if (!current_) return 0;
  return std::max(current_->main.valid ? current_->main.workspace : 0,
                  current_->fallback.valid ? current_->fallback.workspace : 0);
}

std::string LtMatmul::selected() const {
  if (!current_) return "";
  if (!current_->main.valid) return "fallback: " + current_->fallback.name;
  return current_->source + ": " + current_->main.name;
}

bool LtMatmul::accepts(const void* x, const void* w, const void* y, const void* bias) const {
  return current_ && (fits(current_->main, x, w, y, bias) || fits(current_->fallback, x, w, y, bias));
}

Status LtMatmul::run(const void* x, const void* w, void* y, const void* bias, float alpha, float beta,
                     void* workspace, cudaStream_t stream) {
  if (!current_) return Status(StatusCode::kInternal, context_ + ": run before select");
  Plan& pl = *current_;
  const Plan::Choice* c = &pl.main;
  if (!fits(*c, x, w, y, bias)) {
    c = &pl.fallback;
    if (!fits(*c, x, w, y, bias))
      return Status(StatusCode::kRuntimeError,
                    fmt::format("{}: {}: no cuBLASLt algorithm accepts these pointer alignments (X {}, W {}, Y {}, "
                                "bias {})", context_, pl.problem.describe(), x, w, static_cast<const void*>(y), bias));
  }
  if (pl.problem.bias) {
    // A host-side descriptor update, no device work: fine on the hot path and under stream capture.
    Status s = lt_check(cublasLtMatmulDescSetAttribute(&pl.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                        context_ + ": setting the bias pointer");
    if (!s.is_ok()) return s;
  }
  if (!pl.problem.accumulate) beta = 0.f;  // C is not read when beta is 0
  const Scalars scalars(types_, alpha, beta);
  return lt_check(cublasLtMatmul(handle_, &pl.desc, scalars.alpha(), w, &pl.a, x, &pl.b, scalars.beta(), y, &pl.c, y,
                                 &pl.d, &c->algo, c->workspace ? workspace : nullptr, c->workspace, stream),
                  fmt::format("{}: cublasLtMatmul {} ({}) with {}", context_, pl.problem.describe(), types_.describe(),
                              c->name));
}

// ---------------------------------------------------------------------------------------------------------
// Tuning

namespace {

struct Event {
  cudaEvent_t e = nullptr;
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
};

// What the bands of one lt_tune call share.
struct BandTuner {
  cublasLtHandle_t handle;
  const LtTypes& types;
  float alpha, beta;
  const TuneContext& ctx;
  const std::string& kernel;
  const std::string& precision;
  const std::string& context;

  // Times up to 16 heuristic candidates at problems[0] (keeping those that cublasLtMatmulAlgoCheck also
  // accepts at the other problems) and returns the fastest as the band for problems[0].m.
  Result<LtBand> tune(const std::vector<LtProblem>& problems) const;
};

Result<LtBand> BandTuner::tune(const std::vector<LtProblem>& problems) const {
  const LtProblem& at = problems.front();
  const std::string what = fmt::format("{}: tuning {} ({})", context, at.describe(), types.describe());
  std::vector<Plan> plans(problems.size());  // initialized in place, never moved
  for (size_t i = 0; i < problems.size(); ++i) {
    Status s = init_plan(plans[i], types, problems[i], context);
    if (!s.is_ok()) return s;
  }
  Plan& pat = plans.front();
  // Workspace at `at`, or nullopt when the algorithm does not run at every problem.
  auto everywhere = [&](const LtAlgo& a) -> std::optional<size_t> {
    auto ws = check_algo(handle, pat, a);
    for (size_t i = 1; i < plans.size() && ws; ++i)
      if (!check_algo(handle, plans[i], a)) ws.reset();
    return ws;
  };

  TimingKey key;
  key.gpu = ctx.device.name;
  key.cc = ctx.device.compute_capability();
  key.library = fmt::format("cublasLt {}", cublasLtGetVersion());
  key.kernel = kernel;
  key.precision = precision;
  key.dtypes = types.describe();
  key.m = at.m;
  key.n = at.n;
  key.k = at.k;
  key.batch = at.batch;
  key.layout = at.layout();
  key.epilogue = at.epilogue();
  const std::string key_text = key.to_string();
  if (ctx.cache) {
    if (auto e = ctx.cache->lookup(key_text)) {
      auto algo = algo_from_ints(e->data);
      if (algo && everywhere(*algo)) {
        ctx.cache->count_hit();
        return LtBand{at.m, *algo, e->tactic, e->ms, true};
      }
      ctx.cache->count_stale();  // another cuBLASLt build or driver: re-time and overwrite below
    }
  }

  auto found = heuristic(handle, pat, 16, kLtAlignment, kLtAlignment, what);
  if (!found.is_ok()) return found.status();
  if (found->empty())
    return Status(StatusCode::kUnsupported, what + ": cuBLASLt has no algorithm for this problem on this GPU");
  struct Candidate {
    LtAlgo algo;
    size_t workspace;
  };
  std::vector<Candidate> candidates;
  for (const auto& r : *found)
    if (auto ws = everywhere(r.algo)) candidates.push_back({r.algo, *ws});
  // None runs at every problem: time those for `at`; select() falls back per shape at run time.
  if (candidates.empty())
    for (const auto& r : *found) candidates.push_back({r.algo, r.workspaceSize});

  // Random, non-zero operands at `at` (values matter little for time, zeros could).
  const size_t ein = dtype_size(types.in), eout = dtype_size(types.out);
  const int64_t nx = extent(at.batch, at.stride_x, at.m * at.k), nw = extent(at.batch, at.stride_w, at.k * at.n),
                ny = extent(at.batch, at.stride_y, at.m * at.n);
  size_t ws_bytes = 0;
  for (const auto& c : candidates) ws_bytes = std::max(ws_bytes, c.workspace);
  DeviceBuffer x, w, y, bias, ws;
  Status s = x.alloc(nx * ein, what);
  if (s.is_ok()) s = w.alloc(nw * ein, what);
  if (s.is_ok()) s = y.alloc(ny * eout, what);
  if (s.is_ok()) s = bias.alloc(at.n * eout, what);
  if (s.is_ok()) s = ws.alloc(ws_bytes, what);
  if (s.is_ok()) s = launch_fill_random(x.p, types.in, nx, 1, ctx.stream);
  if (s.is_ok()) s = launch_fill_random(w.p, types.in, nw, 2, ctx.stream);
  if (s.is_ok()) s = launch_fill_random(y.p, types.out, ny, 3, ctx.stream);
  if (s.is_ok() && at.bias) s = launch_fill_random(bias.p, types.out, at.n, 4, ctx.stream);
  if (!s.is_ok()) return s;

  constexpr int kWarmup = 3, kRuns = 25;
  std::vector<Event> events(kRuns + 1);
  for (auto& e : events) {
    s = check(cudaEventCreate(&e.e), what + ": cudaEventCreate");
    if (!s.is_ok()) return s;
  }
  const Scalars scalars(types, alpha, at.accumulate ? beta : 0.f);
  auto launch = [&](const Candidate& c) {
    return cublasLtMatmul(handle, &pat.desc, scalars.alpha(), w.p, &pat.a, x.p, &pat.b, scalars.beta(), y.p, &pat.c,
                          y.p, &pat.d, &c.algo, c.workspace ? ws.p : nullptr, c.workspace, ctx.stream);
  };
  if (at.bias) {
    const void* bp = bias.p;
    s = lt_check(cublasLtMatmulDescSetAttribute(&pat.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bp, sizeof bp),
                 what + ": setting the bias pointer");
    if (!s.is_ok()) return s;
  }
  std::optional<LtBand> best;
  for (const Candidate& c : candidates) {
    bool ok = true;
    for (int i = 0; i < kWarmup && ok; ++i) ok = launch(c) == CUBLAS_STATUS_SUCCESS;
    if (!ok) continue;  // checked but refuses to launch: not a candidate
    for (int i = 0; i < kRuns && ok; ++i) {
      ok = cudaEventRecord(events[i].e, ctx.stream) == cudaSuccess && launch(c) == CUBLAS_STATUS_SUCCESS;
    }
    if (ok) ok = cudaEventRecord(events[kRuns].e, ctx.stream) == cudaSuccess;
    s = check(cudaStreamSynchronize(ctx.stream), what + ": synchronizing after timing " + algo_name(c.algo));
    if (!s.is_ok()) return s;  // a fault here is sticky: stop
    cudaGetLastError();
    if (!ok) continue;
    std::vector<float> ms(kRuns);
    for (int i = 0; i < kRuns; ++i) {
      s = check(cudaEventElapsedTime(&ms[i], events[i].e, events[i + 1].e), what + ": cudaEventElapsedTime");
      if (!s.is_ok()) return s;
    }
    std::nth_element(ms.begin(), ms.begin() + kRuns / 2, ms.end());
    const double median = ms[kRuns / 2];
    if (ctx.verbose)
      std::fprintf(stderr, "kiln: %s: M=%lld: %s: %.4f ms\n", context.c_str(), static_cast<long long>(at.m),
                   algo_name(c.algo).c_str(), median);
    if (!best || median < best->ms) best = LtBand{at.m, c.algo, algo_name(c.algo), median, false};
  }
  if (!best)
    return Status(StatusCode::kRuntimeError,
                  fmt::format("{}: none of {} cuBLASLt candidates launched", what, candidates.size()));
  if (ctx.cache) {
    ctx.cache->store(key_text, TimingEntry{algo_to_ints(best->algo), best->ms, best->name});
    ctx.cache->count_timed();
  }
  return *best;
}

}  // namespace

Result<std::vector<LtBand>> lt_tune(const LtTypes& types, const LtProblem& opt, const LtProblem& min,
                                    const LtProblem& max, float alpha, float beta, const TuneContext& ctx,
                                    const std::string& kernel, const std::string& precision,
                                    const std::string& context) {
  auto handle = create_handle(fmt::format("{}: tuning {} ({})", context, opt.describe(), types.describe()));
  if (!handle.is_ok()) return handle.status();
  const BandTuner tuner{handle->get(), types, alpha, beta, ctx, kernel, precision, context};
  auto at_opt = tuner.tune({opt, min, max});
  if (!at_opt.is_ok()) return at_opt.status();
  std::vector<LtBand> bands{std::move(*at_opt)};
  if (min.m * 8 <= opt.m) {
    // The low band only speeds up small M (select() falls back per shape without it): a shape cuBLASLt
    // has nothing for is no reason to fail the build, a CUDA fault is.
    auto at_min = tuner.tune({min});
    if (at_min.is_ok()) bands.push_back(std::move(*at_min));
    else if (at_min.status().code() != StatusCode::kUnsupported) return at_min.status();
  }
  return bands;
}

// Row-major element transpose of a [rows, cols] tensor of any element size.
std::vector<uint8_t> transpose_bytes(const uint8_t* src, int64_t rows, int64_t cols, size_t esize) {
  std::vector<uint8_t> out(static_cast<size_t>(rows * cols) * esize);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) std::memcpy(&out[(c * rows + r) * esize], &src[(r * cols + c) * esize], esize);
  return out;
}

Status pack_weights_nk(Node& n, Graph& g) {
  if (n.inputs.size() < 2 || !g.is_constant(n.inputs[1])) return Status::ok();
  auto trans_b = n.attrs.get_int("transB", 0);
  if (!trans_b.is_ok()) return trans_b.status();
  if (*trans_b != 0) return Status::ok();
  const Tensor& b = *g.values[n.inputs[1]].constant;
  if (b.shape.size() != 2) return Status(StatusCode::kInvalidArgument, n.describe() + ": B must be 2-D");
  const int64_t K = b.shape[0], N = b.shape[1];
  Value wv;
  wv.name = g.values[n.inputs[1]].name + "/packed_NxK";
  wv.set_constant(Tensor::make(b.dtype, {N, K}, transpose_bytes(b.raw(), K, N, dtype_size(b.dtype))));
  n.inputs[1] = g.add_value(std::move(wv));
  n.attrs.set("transB", int64_t{1});
  return Status::ok();
}

void write_tactic(Node& node, const std::vector<LtBand>& bands) {
  std::string name = bands.size() == 1 ? bands[0].name : "";
  if (bands.size() > 1)
    for (const LtBand& b : bands)
      name += fmt::format("{}M={}: {} ({:.4f} ms)", name.empty() ? "" : "; ", b.m, b.name, b.ms);
  node.attrs.set(kTacticAttr, name);
  node.attrs.set(kTacticDataAttr, bands_to_ints(bands));
  node.attrs.set(kTacticMsAttr, static_cast<float>(bands.empty() ? 0 : bands[0].ms));
}

Result<std::vector<LtBand>> read_tactic(const Node& node) {
  if (!node.attrs.has(kTacticDataAttr)) return std::vector<LtBand>{};
  auto data = node.attrs.get_ints(kTacticDataAttr, {});
  if (!data.is_ok()) return data.status();
  return bands_from_ints(*data, fmt::format("{}: attribute {}", node.describe(), kTacticDataAttr));
}

}  // namespace kiln::cuda
