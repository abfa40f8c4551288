// Low-latency mode on the GPU (issue 8): a resident kernel (resident_mlp.cu) answers requests that the
// host writes into mapped page-locked memory, with no launch and no stream synchronize per call.
//   plan_resident_mlp: recognises the engine graph as input -> views -> [Cast] -> dense layers -> [Cast] ->
//                      output, or says (kUnsupported) which layer does not fit and why.
//   ResidentMlp:       start (launch, wait for "ready" with a deadline), run (write the request, spin on the
//                      done sequence numbers with a deadline; launch again if the kernel ended after idling),
//                      stop (idempotent; also at process exit).
#pragma once
#include <cuda_runtime.h>

#include <memory>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/cuda/resident_mlp_kernel.h"
#include "ir/graph.h"
#include "ops/op.h"
#include "kiln/status.h"

namespace kiln::cuda {

struct ResidentLayerPlan {
  std::string name;  // the engine layer it came from
  resident::LayerParams params;  // without the shared-memory offsets
  DataType weight_dtype = DataType::kFloat32;
};

struct ResidentPlan {
  std::vector<ResidentLayerPlan> layers;
  DataType input_dtype = DataType::kFloat32, output_dtype = DataType::kFloat32;
  bool round_input_half = false;  // a Cast float32 -> float16 right after the input
  std::string input_name, output_name;
};

// device_constants: per value, the device address of its uploaded constant (CudaEngine::constant_ptrs).
Result<ResidentPlan> plan_resident_mlp(const Graph& g, const std::vector<const void*>& device_constants);

class ResidentMlp {
 public:
  ResidentMlp() = default;
  ResidentMlp(const ResidentMlp&) = delete;
  ResidentMlp& operator=(const ResidentMlp&) = delete;
  ~ResidentMlp() { stop(); }

  Status start(const ResidentPlan& plan, int max_rows);
  // rows = in.shape[0]; in and out hold the graph input's and output's dtype, in host memory or (where
  // in_device / out_device) in device memory, which the kernel then reads or writes itself.
  Status run(const void* in, bool in_device, const TensorDesc& in_desc, void* out, bool out_device,
             const TensorDesc& out_desc);
  // Ends the kernel and releases its buffers; safe to call twice and when start failed.
  void stop();
  bool running() const { return running_; }
  std::string json() const;
  nlohmann::json trace_json() const;

 private:
  Status wait_ready();
  // Writes the request line's LL words with seq (after the input's, if any) and makes seq the last posted.
  void post_request(uint32_t command, uint32_t rows, uint64_t in_addr, uint64_t out_addr, uint64_t lease, uint32_t seq);
  Status kernel_status(const char* what) const;
  // Launches the kernel (again) to serve the requests after start_seq; waits for it to be ready.
  Status launch(uint32_t start_seq);
  // The kernel has ended after idling (it wrote `exited` for this launch).
  bool idled_out() const;
  // Ends the kernel (a stop request unless it already ended) and launches it again for the requests after
  // start_seq; a failure marks the mode failed.
  Status relaunch(uint32_t start_seq);

  // Ends the running kernel (a stop request unless it already ended), waiting for its stream.
  // *ended = false when it is still running (the deadline passed).
  Status end_kernel(bool* ended = nullptr);

  uint32_t generation_ = 0;  // launches so far; the kernel reports it in ready/exited
  int64_t gpu_minus_host_ns_ = 0;   // GPU globaltimer minus host steady_clock, measured at ready
  int64_t lease_end_host_ns_ = 0;   // when the lease granted with the last request (or launch) ends
  uint64_t idle_ns_ = 0;
  uint64_t relaunches_ = 0;
  ResidentPlan plan_;
  resident::KernelParams params_{};
  int clusters_possible_ = 0;
  cudaStream_t stream_ = nullptr;
  unsigned char* block_ = nullptr;  // mapped page-locked memory: Channel, input, output
  size_t block_bytes_ = 0;
  resident::Channel* channel_ = nullptr;  // host view of the block's channel
  unsigned char* input_ = nullptr;        // host views
  unsigned char* output_ = nullptr;
  uint32_t seq_ = 0;
  bool running_ = false;
  bool launched_ = false;
  std::string failed_;  // set once a request timed out or the kernel failed: later runs refuse
};

}  // namespace kiln::cuda
