// kiln.QGemm's own CUDA kernels: the epilogue after cuBLASLt's int32 matmul, and a tiled int8 GEMM for
// what cuBLASLt's IMMA path refuses (K or N not a multiple of 4, W not constant in [K,N], misaligned
// pointers). The tiled kernel ("cuda.int8.qgemm.tiled") is registered below the cuBLASLt one: correct for
// every shape and alignment, not tuned for speed.
//
// Tile: 64x64 outputs per block of 16x16 threads, each thread 4x4 outputs at rows ty + 16i and columns
// tx + 16j (strided, so that a warp's shared-memory reads fall in distinct banks), K in steps of 32 staged
// through shared memory as int8 rows of 36 bytes (K-contiguous, padded), accumulated 4 products at a time
// with dp4a.
#include <cstdint>

#include "backends/cuda/cuda_kernel.h"
#include "backends/cuda/gemm_elementwise.h"
#include "backends/cuda/qgemm.h"
#include "ops/quantize.h"

namespace kiln::cuda {
namespace {

__device__ __forceinline__ float qgemm_value(int32_t acc, int64_t col, const QGemmEpilogue& e) {
  const float scale = e.a_scale * e.w_scale[col * e.w_scale_stride];
  return activate(e.activation, fmaf(scale, static_cast<float>(acc), e.bias ? e.bias[col] : 0.f),
                  e.activation_alpha);
}

__device__ __forceinline__ void qgemm_store(void* y, int64_t i, int32_t acc, int64_t col, const QGemmEpilogue& e) {
  const float v = qgemm_value(acc, col, e);
  if (e.y_scale > 0.f) static_cast<int8_t*>(y)[i] = static_cast<int8_t>(quantize_saturate(v / e.y_scale, -128, 127));
  else static_cast<float*>(y)[i] = v;
}

// V consecutive accumulators of one row per thread (V = 4 when n % 4 == 0: one int4 load).
template <int V>
__global__ void qgemm_epilogue_kernel(const int32_t* __restrict__ acc, int64_t groups, int64_t n, QGemmEpilogue e,
                                      void* __restrict__ y) {
  struct alignas(4 * V) Group { int32_t v[V]; };
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups; g += int64_t(gridDim.x) * blockDim.x) {
    const Group a = reinterpret_cast<const Group*>(acc)[g];
    const int64_t i = g * V, col = i % n;
#pragma unroll
    for (int j = 0; j < V; ++j) qgemm_store(y, i + j, a.v[j], col + j, e);
  }
}

constexpr int kTile = 64, kThreads = 16, kPerThread = kTile / kThreads, kStepK = 32;
constexpr int kRowWords = kStepK / 4 + 1;  // 9 words: odd, so rows 0..15 start in distinct banks

// W element (k, col) is w[k * ldk + col * ldn].
template <bool TransB>
__global__ void __launch_bounds__(kThreads * kThreads)
    qgemm_tiled_kernel(const int8_t* __restrict__ a, const int8_t* __restrict__ w, int64_t m, int64_t n, int64_t k,
                       QGemmEpilogue e, void* __restrict__ y) {
  __shared__ int32_t a_tile[kTile][kRowWords], w_tile[kTile][kRowWords];  // [row or col][k bytes]
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kThreads + tx;
  const int64_t row0 = int64_t(blockIdx.x) * kTile, col0 = int64_t(blockIdx.y) * kTile;
  int32_t acc[kPerThread][kPerThread] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kStepK) {
    // Stage A[row0.., k0..] and W[k0.., col0..] as K-contiguous bytes, zero outside the matrices.
    for (int idx = tid; idx < kTile * kStepK; idx += kThreads * kThreads) {
      const int r = idx / kStepK, kk = idx % kStepK;
      const int64_t gr = row0 + r, gk = k0 + kk;
      reinterpret_cast<int8_t*>(a_tile[r])[kk] = gr < m && gk < k ? a[gr * k + gk] : int8_t{0};
      // W: read along its contiguous dim (k when TransB, columns otherwise).
      const int c = TransB ? r : idx % kTile, wk = TransB ? kk : idx / kTile;
      const int64_t gc = col0 + c, gwk = k0 + wk;
      reinterpret_cast<int8_t*>(w_tile[c])[wk] =
          gc < n && gwk < k ? w[TransB ? gc * k + gwk : gwk * n + gc] : int8_t{0};
    }
    __syncthreads();
#pragma unroll
    for (int q = 0; q < kStepK / 4; ++q) {
      int32_t av[kPerThread], wv[kPerThread];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) {
        av[i] = a_tile[ty + kThreads * i][q];
        wv[i] = w_tile[tx + kThreads * i][q];
      }
#pragma unroll
      for (int i = 0; i < kPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) acc[i][j] = __dp4a(av[i], wv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
    const int64_t r = row0 + ty + kThreads * i;
    if (r >= m) continue;
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int64_t c = col0 + tx + kThreads * j;
      if (c < n) qgemm_store(y, r * n + c, acc[i][j], c, e);
    }
  }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

}  // namespace

Status launch_qgemm_epilogue(const int32_t* acc, int64_t m, int64_t n, const QGemmEpilogue& e, void* y,
                             cudaStream_t stream) {
  const int64_t total = m * n;
  if (total <= 0) return Status::ok();
  const size_t out_elem = e.y_scale > 0.f ? 1 : 4;
  if (n % 4 == 0 && aligned(acc, 16) && aligned(y, 4 * out_elem))
    qgemm_epilogue_kernel<4><<<grid_for(total / 4, 256), 256, 0, stream>>>(acc, total / 4, n, e, y);
  else
    qgemm_epilogue_kernel<1><<<grid_for(total, 256), 256, 0, stream>>>(acc, total, n, e, y);
  return check_launch(cat("qgemm epilogue [", m, "x", n, "]"));
}

Status launch_qgemm_tiled(const int8_t* a, const int8_t* w, bool trans_b, int64_t m, int64_t n, int64_t k,
                          const QGemmEpilogue& e, void* y, cudaStream_t stream) {
  if (m <= 0 || n <= 0) return Status::ok();
  const int64_t row_tiles = (m + kTile - 1) / kTile, col_tiles = (n + kTile - 1) / kTile;
  if (row_tiles > INT32_MAX || col_tiles > 65535)
    return Status(StatusCode::kUnsupported, cat(kQGemmTiledName, ": [", m, "x", k, "]x[", k, "x", n, "] needs a grid of ",
                                                row_tiles, "x", col_tiles, " tiles (at most 2^31-1 x 65535)"));
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles)), block(kThreads, kThreads);
  if (trans_b) qgemm_tiled_kernel<true><<<grid, block, 0, stream>>>(a, w, m, n, k, e, y);
  else qgemm_tiled_kernel<false><<<grid, block, 0, stream>>>(a, w, m, n, k, e, y);
  return check_launch(cat(kQGemmTiledName, " [", m, "x", k, "]x[", k, "x", n, "]", trans_b ? " (W as [N,K])" : ""));
}

namespace {

class QGemmTiledKernel final : public CudaKernel {
 public:
  QGemmTiledKernel(const Node& node, const QGemmAttrs& at) : name_(node.name), at_(at) {}

  Status reshape(const std::vector<TensorDesc>& in, const std::vector<TensorDesc>&) override {
    const Dims& a = in[0].shape;
    const Dims& w = in[1].shape;
    k_ = a.back();
    m_ = volume(Dims(a.begin(), a.end() - 1));
    n_ = at_.trans_b ? w[0] : w[1];
    w_scale_stride_ = volume(in[3].shape) == 1 ? 0 : 1;
    return Status::ok();
  }

  Status enqueue(const void* const* in, void* const* out, void*, cudaStream_t stream) override {
    QGemmEpilogue e{at_.a_scale, at_.y_scale, static_cast<const float*>(in[3]), w_scale_stride_,
                    static_cast<const float*>(in[2]), at_.activation, at_.activation_alpha};
    Status s = launch_qgemm_tiled(static_cast<const int8_t*>(in[0]), static_cast<const int8_t*>(in[1]), at_.trans_b,
                                  m_, n_, k_, e, out[0], stream);
    if (s.is_ok()) return s;
    return Status(s.code(), cat("layer '", name_, "' (", kQGemmTiledName, "): ", s.message()));
  }

 private:
  std::string name_;
  QGemmAttrs at_;
  int64_t m_ = 0, n_ = 0, k_ = 0, w_scale_stride_ = 1;
};

KernelDef tiled_def() {
  KernelDef d;
  d.name = kQGemmTiledName;
  d.domain = "kiln";
  d.op_type = "QGemm";
  d.priority = 0;  // below cuda.int8.qgemm.cublaslt
  d.supports = [](const Node& n, const Graph& g) -> Status {
    auto at = QGemmAttrs::parse(n);
    if (!at.is_ok()) return at.status();
    return require_dtypes(n, g, {DataType::kInt8}, kQGemmTiledName, /*all_inputs=*/false);
  };
  d.create = [](const KernelInit& init) -> Result<std::unique_ptr<CudaKernel>> {
    auto at = QGemmAttrs::parse(init.node);
    if (!at.is_ok()) return at.status();
    return std::unique_ptr<CudaKernel>(std::make_unique<QGemmTiledKernel>(init.node, *at));
  };
  return d;
}

const KernelRegistrar kTiled{tiled_def()};

}  // namespace
}  // namespace kiln::cuda
