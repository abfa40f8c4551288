// Runs one inference of a bound execution context the way trtexec times it. CPU engines: execute() on
// host buffers. CUDA engines: the host buffers are mirrored in pinned memory and device buffers; a run
// is H2D copies, enqueue, D2H copies on one stream, with CUDA events between the stages, then a
// (blocking or spinning) synchronize. With --hostIO or --lowLatency a run is one execute() on host
// memory (pinned mirrors or the host buffers themselves): the runtime does the copies.
#pragma once
#include <memory>
#include <vector>

#include "io_binding.h"
#include "kiln/gpu.h"
#include "kiln/runtime.h"
#include "perf_report.h"

namespace kiln::cli {

// --hostIO: where the IO tensors live when execute() is handed host memory (Kiln copies in and out
// itself, chunked and overlapped); kNone is trtexec's way (device tensors, the tool's own copies).
enum class HostIo { kNone, kPinned, kPageable };

struct GpuRunFlags {
  bool use_cuda_graph = false;     // --useCudaGraph
  bool no_data_transfers = false;  // --noDataTransfers: inputs copied once, outputs fetched once at the end
  bool spin_wait = false;          // --useSpinWait
  HostIo host_io = HostIo::kNone;  // --hostIO
  bool low_latency = false;        // --lowLatency (host memory, resident kernel)
};

class Executor {
 public:
  // Binds device buffers for CUDA engines (bind_io leaves them unbound) and uploads the inputs.
  static Result<std::unique_ptr<Executor>> create(const Engine& engine, ExecutionContext& context, Bindings& io,
                                                  const GpuRunFlags& flags);
  ~Executor();
  bool on_gpu() const { return gpu_; }
  bool host_io() const { return gpu_ && flags_.host_io != HostIo::kNone; }
  // One inference; fills the duration fields of *run (not start_ms/end_ms, which the caller owns).
  Status run(TimedRun* run);
  // Host output buffers hold the last run's outputs afterwards (CUDA: copies them back).
  Status fetch_outputs();
  // Host input buffers changed (eval's next batch): CUDA copies them to the device mirrors.
  Status upload_inputs();

 private:
  struct Mirror {
    BoundTensor* host = nullptr;
    void* pinned = nullptr;
    void* device = nullptr;
  };
  Executor(ExecutionContext& context, GpuRunFlags flags) : context_(context), flags_(flags) {}
  Status copy(const std::vector<Mirror>& mirrors, bool to_device);

  ExecutionContext& context_;
  GpuRunFlags flags_;
  bool gpu_ = false;
  std::vector<Mirror> inputs_, outputs_;
  gpu::Stream stream_ = nullptr;
  gpu::Event events_[4] = {};  // before H2D, after H2D, after compute, after D2H
};

}  // namespace kiln::cli
