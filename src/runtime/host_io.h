// execute() on a CUDA engine whose IO tensors are in host memory. The batch is cut into chunks run by
// "lanes" (child execution contexts with their own device buffers, arena and stream), so that chunk
// i+1's host-to-device copy overlaps chunk i's compute and device-to-host copy; pageable inputs are
// first staged into page-locked memory by worker threads, overlapped with the copies of earlier chunks.
// Inputs that every reading layer rounds to float16 anyway (an FP16 engine's float32 input) are converted
// to float16 by the staging threads, pinned input included (given >= 4 threads): half the bytes cross PCIe,
// with the same result (bench_pcie_read on the H100 machine: 25.7 MB converted by 8 threads beside the
// copies of 12.8 MB in 0.31 ms, against 0.48 ms for the float32 copy alone). An INT8 engine's input, which
// its first layer quantizes with a scale fixed at build, is quantized by them the same way (a quarter of the
// bytes; the same bits, GPU run 33; KILN_HOST_IO_QUANTIZE=0 turns it off). KILN_HOST_IO_CAST=0
// turns both off.
// With KILN_HOST_IO_COPY_STREAM=1 (an experiment), every chunk's host-to-device copy goes on one copy
// stream, in chunk order, and its lane waits for it by an event. The hypothesis was that copies queued on
// several streams run side by side on separate copy engines, sharing the link; timed on the H100 (GPU run
// 14) it was no faster than the lane streams, so it stays off.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "kiln/runtime.h"
#include "ops/op.h"

namespace kiln {

class EngineImpl;
class ContextImpl;
class CopyWorkers;

struct HostIoRun {
  const std::vector<void*>* addr = nullptr;            // per IO tensor (inputs, then outputs)
  const std::vector<MemoryLocation>* where = nullptr;  // per IO tensor
  const std::vector<TensorDesc>* desc = nullptr;       // per IO tensor, at the requested shapes
  bool cuda_graph = false;
  int threads = 0;  // staging threads for pageable memory (0 = default)
  // Profiling / layer observer: run as one chunk with these set on the lane.
  std::function<void(const LayerOutput&)> observer;
  std::vector<LayerTiming>* timings = nullptr;
};

class HostIoPipeline {
 public:
  // batch_split_blocker: empty when the engine's batch rows are independent (else no chunking).
  HostIoPipeline(std::shared_ptr<const EngineImpl> engine, std::string batch_split_blocker);
  ~HostIoPipeline();
  Status run(const HostIoRun& r);
  // Inputs the last run() converted on the host, to float16 or int8 (0: none).
  int last_converted_inputs() const { return last_converted_inputs_; }

 private:
  struct Lane;
  Result<Lane*> lane(size_t index, int64_t rows, const HostIoRun& r, bool chunked, const std::vector<size_t>& shrink);
  Status reserve_staging(size_t io, size_t bytes);

  std::shared_ptr<const EngineImpl> engine_;
  std::string blocker_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::vector<void*> staging_;  // per IO tensor: page-locked buffer for pageable memory
  std::vector<size_t> staging_bytes_;
  std::vector<void*> events_;   // per chunk: pageable outputs are copied out as their chunk completes
  void* copy_stream_ = nullptr;  // every chunk's host-to-device copies, in order
  std::vector<void*> copied_;    // per chunk: its inputs are on the device (recorded on copy_stream_)
  std::unique_ptr<CopyWorkers> workers_;
  int last_converted_inputs_ = 0;
};

}  // namespace kiln
