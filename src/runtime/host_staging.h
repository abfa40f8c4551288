// What host IO's staging threads do to a piece of input (host_io.h): convert float32 to float16 (an FP16
// engine rounds its float32 input to float16 before any use, so converting while staging halves the bytes
// that cross PCIe), quantize it (an INT8 engine's first layer does: a quarter of the bytes), or copy it. All
// store past the cache: the copy engine reads the staging buffer next, not this core, and on the H100 machine
// cached stores slowed the copies running beside them (bench_pcie_read: 8 threads converting beside the
// copies, 0.49 ms with cached stores, 0.31 ms with streaming stores).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/host_input_form.h"

namespace kiln {

// y[i] = x[i] rounded to float16, to nearest even: bit for bit as float_to_half in ops/float16.h, NaNs
// included (0x7e00 with the sign, as the CUDA Cast kernel writes them). Uses AVX-512F or F16C where the CPU has them; stores bypass the cache
// (the copy engine reads y next, not this core), fenced before returning.
void convert_f32_to_f16(const float* x, uint16_t* y, size_t n);

// Which path convert_f32_to_f16 takes on this CPU: "avx512f", "f16c" or "scalar".
const char* convert_f32_to_f16_isa();
// The same through one named path (tests); false when this CPU lacks it or the name is unknown.
bool convert_f32_to_f16_using(const char* isa, const float* x, uint16_t* y, size_t n);

// y[i] = saturate(round_half_even(x[i] / scale) + zero_point) as q (kInt8: [-128, 127], kUInt8: [0, 255]),
// NaN -> 0: byte for byte the QuantizeLinear kernels' formula (ops/quantize.h), with AVX-512 where the CPU
// has it; streaming stores, fenced before returning.
void quantize_f32(const float* x, void* y, size_t n, DataType q, float scale, int32_t zero_point);

// memcpy with streaming stores (AVX-512F or AVX where the CPU has them, else memcpy), fenced before returning.
void copy_streaming(void* dst, const void* src, size_t bytes);

// Staging threads for a process with default settings: half the hardware threads, 1 to 8.
int default_staging_threads();

// Persistent threads staging pieces of host memory (copy or convert) into page-locked buffers, in order;
// the calling thread helps, so a chunk is never waiting for a thread to wake up. Used by host IO and by
// the pageable copies of kiln/gpu.h (pageable_copy.cpp). One start() at a time.
class CopyWorkers {
 public:
  enum class Work : uint8_t { kCopy, kCopyStreaming, kToF16, kQuantize };
  struct Piece {
    void* dst;
    const void* src;
    size_t bytes;  // of the source
    size_t chunk;
    Work work;     // kToF16: float32 source converted to float16 (dst gets bytes / 2); kQuantize: to form
    HostInputForm form{};  // kQuantize: int8 or uint8 with its scale and zero point (dst gets bytes / 4)
  };

  explicit CopyWorkers(int threads);  // threads besides the calling one
  ~CopyWorkers();
  size_t size() const { return threads_.size(); }

  // Starts copying; done(c) then counts finished pieces of chunk c. With wake = false the calling thread
  // copies alone (help()): waking threads costs more than a few pieces.
  void start(std::vector<Piece> pieces, size_t chunks, bool wake);
  // Copies one piece on the calling thread; false when none is left to take.
  bool help() { return take(); }
  size_t done(size_t chunk) const { return done_[chunk].load(std::memory_order_acquire); }
  // Waits (helping) until chunk's `pieces` pieces are done.
  void wait_chunk(size_t chunk, size_t pieces) {
    while (done(chunk) < pieces)
      if (!help()) std::this_thread::yield();
  }
  // Stops handing out pieces and waits until no thread is copying.
  void finish();

 private:
  bool take();
  void loop();

  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  uint64_t generation_ = 0;
  size_t busy_ = 0;
  bool stop_ = false;
  std::vector<Piece> pieces_;
  std::unique_ptr<std::atomic<size_t>[]> done_;
  std::atomic<size_t> next_{0};
};

}  // namespace kiln
