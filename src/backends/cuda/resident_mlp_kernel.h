// The low-latency mode's resident kernel as the host sees it: the mapped control block it polls, its
// parameters, and the launcher. Shared by resident_mlp.cu (kernel) and resident_mlp.cpp (host side).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kiln/status.h"

namespace kiln::cuda::resident {

constexpr int kClusterCtas = 8;   // portable cluster size: every CTA holds 1/8 of each layer's columns
constexpr int kThreads = 512;     // 16 warps per CTA
constexpr int kMaxLayers = 8;
constexpr int kMaxRows = 16;

enum : uint32_t { kCommandRun = 1, kCommandStop = 2, kCommandIdleExit = 3 /* kernel-side only */ };
enum : int { kActNone = 0, kActRelu = 1, kActLeakyRelu = 2, kActSigmoid = 3, kActTanh = 4 };

// Lives in mapped page-locked host memory. Host-written and device-written words sit on different 128-byte
// lines. Protocol: the host writes the input (or its device address), `command`, `rows` and `lease_until`, then bumps
// `request_seq` (release); thread 0 of every CTA polls `request_seq` (ld.acquire.sys) on its own, every
// CTA computes and writes `done_seq[cta]` = that sequence number (release, after its outputs) once its
// part of the output is in host memory.
// Idling: a kernel that never ends would make any device-wide wait (cudaFree, lazy module loading) wait
// forever. Each request grants a lease (`lease_until`, GPU globaltimer ns); a CTA that sees no new request
// after the lease has run out leaves its loop, so the kernel ends by itself (`exited` = its launch
// generation). Every CTA decides alone, with no barrier, because the host never posts a request close
// to the lease's end: it stops and relaunches the kernel instead (see ResidentMlp::run).
// Header lines: after seeing a new request_seq, the poller reads the rest of the request with one load per
// 128-byte line, all in flight together. Reads of one line from one thread go one PCIe round trip at a time
// (measured on the H100: three reads of one line 2.3 us, of three lines 1.3 us), hence three lines.
struct alignas(128) Channel {
  // line 0 (host): polled
  uint32_t request_seq;
  uint32_t command;
  uint32_t rows;
  uint32_t host_pad0[29];
  // line 1 (host): device-resident IO, the request's input and output in device memory (0: the mapped
  // buffers, KernelParams::input/output). Reading the input from device memory skips the PCIe read.
  uint64_t input_addr;
  uint64_t output_addr;
  uint32_t host_pad1[28];
  // line 2 (host)
  uint64_t lease_until;  // GPU globaltimer ns: with no request after this, end
  uint32_t host_pad2[30];
  // line 3 (device)
  uint32_t ready;   // the launch generation, once every CTA holds its weights in shared memory
  uint32_t exited;  // the launch generation, once the kernel has ended (idle or stop)
  uint64_t ready_gpu_ns;  // CTA 0's globaltimer when it wrote ready (the host's clock offset)
  uint32_t device_pad[28];
  uint32_t done_seq[32];
  // CTA 0's running sums of nanoseconds per request phase (kTrace*), and the request count: written after
  // each answer, for bench_low_latency's breakdown (plain stores; read by the host whenever).
  uint64_t trace[16];
};
static_assert(sizeof(Channel) == 768, "Channel layout");
static_assert(offsetof(Channel, command) == 4 && offsetof(Channel, rows) == 8 && offsetof(Channel, input_addr) == 128 &&
                  offsetof(Channel, output_addr) == 136 && offsetof(Channel, lease_until) == 256,
              "Channel header layout (the kernel reads [seq, command, rows, pad], [input_addr, output_addr], lease_until)");

enum : int {
  kTraceHeader = 0,     // request seen -> its header words loaded and shared within CTA 0
  kTraceInput,          // CTA 0 thread 0's share of the input read and stored into every CTA (DSMEM)
  kTraceHandOut,        // the hand-out: mailbox stores + cluster barrier
  kTraceLayerCompute,   // thread 0's own share of every layer's columns (sum over layers)
  kTraceLayerBarriers,  // the cluster barriers between layers (sum)
  kTraceOutput,         // output stores fenced (+ __syncthreads)
  kTraceDone,           // done_seq store
  kTracePhases,
  // CTA 0 warp 0's own layer work in SM cycles (sums): the K loops (shared loads + FMAs), the reductions with
  // activation and result stores (DSMEM pushes / output), and how many column blocks it computed.
  kTraceWarpKLoop = 8,
  kTraceWarpReduceStore = 9,
  kTraceWarpBlocks = 10,
  kTraceSmCycles = 14,  // trace[14]: CTA 0's SM clock cycles over the same requests (clock rate = cycles / ns)
  kTraceCount = 15,     // trace[15]: requests answered
};

struct LayerParams {
  const void* weight = nullptr;  // device, [n, k] row-major (the GEMM's packed transB = 1 form)
  const void* bias = nullptr;    // device, [n], or null
  int k = 0, n = 0;
  int k_pad = 0;                 // row stride in shared memory, elements (multiple of 8: 16-byte rows)
  int cols_per_cta = 0;          // ceil(n / ctas): the shared-memory layout's column count
  float alpha = 1.f, beta = 1.f; // y = act(alpha * x·wᵀ + beta * bias)
  int activation = kActNone;
  float activation_alpha = 0.01f;
  uint32_t weight_offset = 0, bias_offset = 0;  // bytes into dynamic shared memory
  uint8_t weight_half = 0, bias_half = 0;
  uint8_t round_output_half = 0;  // the layer's output is float16 in the engine: round like it does
};

struct KernelParams {
  Channel* channel = nullptr;  // device addresses of the mapped buffers
  const void* input = nullptr;  // [rows, k0], float32 or float16
  void* output = nullptr;       // [rows, n_last], float32 or float16
  int layers = 0;
  LayerParams layer[kMaxLayers];
  uint8_t input_half = 0, round_input_half = 0, output_half = 0;
  int max_rows = 0;
  int threads = kThreads;       // per CTA, a multiple of 32 up to kThreads (KILN_LOW_LATENCY_THREADS, experiments)
  uint32_t generation = 0;      // written to ready / exited
  uint32_t start_seq = 0;       // the last request already answered: serve anything after it
  uint64_t idle_ns = 0;         // the lease before the first request
  int act_stride = 0;                // row stride (floats) of the two activation buffers
  uint32_t input_offset[2] = {0, 0};  // [max_rows][layer[0].k_pad] float, by request parity (may coincide)
  uint32_t act_offset[2] = {0, 0};   // [max_rows][act_stride] float each
  uint32_t smem_bytes = 0;
};

// Sets the kernel's shared-memory limit, checks that a cluster of kClusterCtas CTAs with p.smem_bytes each
// can be resident on this GPU (clusters_out: how many could), and launches it on stream.
Status launch_resident_mlp(const KernelParams& p, cudaStream_t stream, int* clusters_out);
// The shared memory one CTA may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin minus static use).
Result<int> resident_smem_limit();

}  // namespace kiln::cuda::resident
