#include "runtime/host_staging.h"

#include <algorithm>
#include <cstring>

#include "ops/float16.h"
#include "ops/quantize.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#include <immintrin.h>
#define KILN_X86 1
#endif

namespace kiln {
namespace {

void convert_scalar(const float* x, uint16_t* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = float_to_half(x[i]);
}

// The QuantizeLinear kernels' own formula (ops/quantize.h), element by element.
void quantize_scalar(const float* x, uint8_t* y, size_t n, float scale, int32_t zero_point, int32_t lo, int32_t hi) {
  const float z = static_cast<float>(zero_point);
  for (size_t i = 0; i < n; ++i) y[i] = static_cast<uint8_t>(quantize_saturate(rintf(x[i] / scale) + z, lo, hi));
}

#ifdef KILN_X86
// Any NaN among a vector's lanes (rare) takes float_to_half's canonical NaN (0x7e00 with the sign), as the
// GPU's Cast writes it; the hardware conversion would keep part of the payload. Plain pointers: vector
// arguments would cross into a function compiled without AVX.
void canonical_nans(const float* x, uint16_t* lanes, int count, unsigned nan_mask) {
  for (int l = 0; l < count; ++l)
    if (nan_mask >> l & 1) lanes[l] = float_to_half(x[l]);
}

// Scalar up to a 32-byte boundary of y, vectors with streaming stores, scalar tail; fenced before returning.
__attribute__((target("avx512f,f16c"))) void convert_avx512(const float* x, uint16_t* y, size_t n) {
  size_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(y + i) % 32 != 0; ++i) y[i] = float_to_half(x[i]);
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    // The zero-masked form: the plain one's undefined pass-through trips GCC 12's -Wmaybe-uninitialized.
    __m256i h = _mm512_maskz_cvtps_ph(0xffff, v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const unsigned nans = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (nans) {
      alignas(32) uint16_t lanes[16];
      _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), h);
      canonical_nans(x + i, lanes, 16, nans);
      h = _mm256_load_si256(reinterpret_cast<const __m256i*>(lanes));
    }
    _mm256_stream_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = float_to_half(x[i]);
  _mm_sfence();
}

__attribute__((target("avx,f16c"))) void convert_f16c(const float* x, uint16_t* y, size_t n) {
  size_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(y + i) % 16 != 0; ++i) y[i] = float_to_half(x[i]);
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const unsigned nans = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
    if (nans) {
      alignas(16) uint16_t lanes[8];
      _mm_store_si128(reinterpret_cast<__m128i*>(lanes), h);
      canonical_nans(x + i, lanes, 8, nans);
      h = _mm_load_si128(reinterpret_cast<const __m128i*>(lanes));
    }
    _mm_stream_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = float_to_half(x[i]);
  _mm_sfence();
}

__attribute__((target("avx512f"))) void copy_avx512(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  const size_t head = std::min(n, (64 - reinterpret_cast<uintptr_t>(d) % 64) % 64);
  std::memcpy(d, s, head);
  for (i = head; i + 64 <= n; i += 64) _mm512_stream_si512(reinterpret_cast<__m512i*>(d + i), _mm512_loadu_si512(s + i));
  std::memcpy(d + i, s + i, n - i);
  _mm_sfence();
}

// quantize_scalar in vectors of 16: the same division, round to nearest even, zero point, NaN -> 0 and
// saturation, so the same bytes; streaming stores from a 16-byte boundary of y, fenced before returning.
__attribute__((target("avx512f"))) void quantize_avx512(const float* x, uint8_t* y, size_t n, float scale,
                                                        int32_t zero_point, int32_t lo, int32_t hi) {
  size_t i = 0;
  const size_t head = std::min(n, (16 - reinterpret_cast<uintptr_t>(y) % 16) % 16);
  quantize_scalar(x, y, head, scale, zero_point, lo, hi);
  const __m512 s = _mm512_set1_ps(scale), z = _mm512_set1_ps(static_cast<float>(zero_point));
  const __m512 flo = _mm512_set1_ps(static_cast<float>(lo)), fhi = _mm512_set1_ps(static_cast<float>(hi));
  for (i = head; i + 16 <= n; i += 16) {
    const __m512 q = _mm512_div_ps(_mm512_loadu_ps(x + i), s);
    __m512 r = _mm512_add_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), z);
    const __mmask16 nan = _mm512_cmp_ps_mask(r, r, _CMP_UNORD_Q);
    r = _mm512_min_ps(_mm512_max_ps(r, flo), fhi);
    const __m512i v = _mm512_maskz_cvtps_epi32(static_cast<__mmask16>(~nan), r);  // NaN -> 0
    _mm_stream_si128(reinterpret_cast<__m128i*>(y + i), _mm512_cvtepi32_epi8(v));
  }
  quantize_scalar(x + i, y + i, n - i, scale, zero_point, lo, hi);
  _mm_sfence();
}

__attribute__((target("avx"))) void copy_avx(uint8_t* d, const uint8_t* s, size_t n) {
  size_t i = 0;
  const size_t head = std::min(n, (32 - reinterpret_cast<uintptr_t>(d) % 32) % 32);
  std::memcpy(d, s, head);
  for (i = head; i + 32 <= n; i += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(d + i), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + i)));
  std::memcpy(d + i, s + i, n - i);
  _mm_sfence();
}
#endif

enum class Isa { kScalar, kF16c, kAvx512 };

Isa detect() {
#ifdef KILN_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return Isa::kAvx512;
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  const bool f16c = __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  if (__builtin_cpu_supports("avx") && f16c) return Isa::kF16c;
#endif
  return Isa::kScalar;
}

Isa isa() {
  static const Isa found = detect();
  return found;
}

}  // namespace

void convert_f32_to_f16(const float* x, uint16_t* y, size_t n) {
  switch (isa()) {
#ifdef KILN_X86
    case Isa::kAvx512: convert_avx512(x, y, n); return;
    case Isa::kF16c: convert_f16c(x, y, n); return;
#endif
    default: convert_scalar(x, y, n); return;
  }
}

bool convert_f32_to_f16_using(const char* name, const float* x, uint16_t* y, size_t n) {
  if (std::strcmp(name, "scalar") == 0) {
    convert_scalar(x, y, n);
    return true;
  }
#ifdef KILN_X86
  const Isa have = isa();
  if (std::strcmp(name, "avx512f") == 0 && have == Isa::kAvx512) {
    convert_avx512(x, y, n);
    return true;
  }
  if (std::strcmp(name, "f16c") == 0 && (have == Isa::kAvx512 || have == Isa::kF16c)) {
    convert_f16c(x, y, n);
    return true;
  }
#endif
  return false;
}

void quantize_f32(const float* x, void* y, size_t n, DataType q, float scale, int32_t zero_point) {
  const int32_t lo = q == DataType::kInt8 ? -128 : 0, hi = q == DataType::kInt8 ? 127 : 255;
  uint8_t* out = static_cast<uint8_t*>(y);
#ifdef KILN_X86
  if (isa() == Isa::kAvx512) {
    quantize_avx512(x, out, n, scale, zero_point, lo, hi);
    return;
  }
#endif
  quantize_scalar(x, out, n, scale, zero_point, lo, hi);
}

void copy_streaming(void* dst, const void* src, size_t bytes) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  switch (isa()) {
#ifdef KILN_X86
    case Isa::kAvx512: copy_avx512(d, s, bytes); return;
    case Isa::kF16c: copy_avx(d, s, bytes); return;  // F16C implies AVX here (detect())
#endif
    default: std::memcpy(d, s, bytes); return;
  }
}

const char* convert_f32_to_f16_isa() {
  switch (isa()) {
    case Isa::kAvx512: return "avx512f";
    case Isa::kF16c: return "f16c";
    default: return "scalar";
  }
}

int default_staging_threads() { return static_cast<int>(std::clamp(std::thread::hardware_concurrency() / 2, 1u, 8u)); }

CopyWorkers::CopyWorkers(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { loop(); });
}

CopyWorkers::~CopyWorkers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

void CopyWorkers::start(std::vector<Piece> pieces, size_t chunks, bool wake) {
  pieces_ = std::move(pieces);
  done_ = std::make_unique<std::atomic<size_t>[]>(chunks);
  for (size_t c = 0; c < chunks; ++c) done_[c].store(0, std::memory_order_relaxed);
  next_.store(0, std::memory_order_relaxed);
  if (!wake || threads_.empty()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = threads_.size();
    ++generation_;
  }
  cv_.notify_all();
}

void CopyWorkers::finish() {
  next_.store(pieces_.size(), std::memory_order_relaxed);
  std::unique_lock<std::mutex> lock(mu_);
  idle_cv_.wait(lock, [this] { return busy_ == 0; });
}

bool CopyWorkers::take() {
  const size_t i = next_.fetch_add(1, std::memory_order_relaxed);
  if (i >= pieces_.size()) return false;
  const Piece& p = pieces_[i];
  switch (p.work) {
    case Work::kToF16: convert_f32_to_f16(static_cast<const float*>(p.src), static_cast<uint16_t*>(p.dst), p.bytes / 4); break;
    case Work::kQuantize:
      quantize_f32(static_cast<const float*>(p.src), p.dst, p.bytes / 4, p.form.dtype, p.form.scale, p.form.zero_point);
      break;
    case Work::kCopyStreaming: copy_streaming(p.dst, p.src, p.bytes); break;
    default: std::memcpy(p.dst, p.src, p.bytes); break;
  }
  done_[p.chunk].fetch_add(1, std::memory_order_release);
  return true;
}

void CopyWorkers::loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
    }
    while (take()) {
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (--busy_ == 0) idle_cv_.notify_all();
  }
}

}  // namespace kiln
