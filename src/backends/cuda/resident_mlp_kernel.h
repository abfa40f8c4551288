// The low-latency mode's resident kernel as the host sees it: the mapped control block it polls, its
// parameters, and the launcher. Shared by resident_mlp.cu (kernel) and resident_mlp.cpp (host side).
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kiln/status.h"

namespace kiln::cuda::resident {

// Cluster sizes: 8 CTAs is the portable size (every CTA holds 1/8 of each layer's columns); 16 is the largest
// Hopper allows (non-portable): half the weights and half the layer work per CTA, twice the hand-out sends.
constexpr int kClusterCtas = 8;
constexpr int kMaxClusterCtas = 16;  // the kernel's sends address CTA (lane & 15)
constexpr int kThreads = 512;     // 16 warps per CTA
constexpr int kMaxLayers = 8;
constexpr int kMaxRows = 16;

enum : uint32_t { kCommandRun = 1, kCommandStop = 2, kCommandIdleExit = 3 /* kernel-side only */ };
enum : int { kActNone = 0, kActRelu = 1, kActLeakyRelu = 2, kActSigmoid = 3, kActTanh = 4 };

// Lives in mapped page-locked host memory. Host-written and device-written words sit on different 128-byte
// lines. Requests travel as "LL" words (as NCCL's low-latency protocol does): 8 bytes each, a 4-byte payload
// and the request's sequence number, written by the host with one 8-byte store. A reader that sees the
// sequence number in a word has that word's payload, with no flag, fence or second round trip; it polls
// the words themselves.
// Protocol: the host writes the input rows (host input), then the request line (command, rows, IO addresses,
// lease) as LL words tagged with seq = last + 1. CTA 0 polls the request line and hands it to every CTA
// through distributed shared memory (st.async + mbarrier); then CTA 0 (or, with input_spread, every CTA its
// share) reads the input and sends it to every CTA the same way; the last layer writes
// each output element as an LL word into the mapped output, which the host polls. Device output instead: the output in device memory, then `done_seq[cta]` = seq
// (release) once the CTA's part is written.
// Idling: a kernel that never ends would make any device-wide wait (cudaFree, lazy module loading) wait
// forever. Each request grants a lease (`lease`, GPU globaltimer ns); when CTA 0 sees no new request after
// the lease has run out it tells every CTA to end, so the kernel ends by itself (`exited` = its launch
// generation). The host never posts a request close to the lease's end: it stops and relaunches the kernel
// instead (see ResidentMlp::run).
enum : int {
  kRequestCommand = 0,
  kRequestRows,
  kRequestInputLo,   // device-resident IO: the request's input and output in device memory (0: the mapped
  kRequestInputHi,   // buffers, KernelParams::input/output). Reading the input from device memory skips PCIe.
  kRequestOutputLo,
  kRequestOutputHi,
  kRequestLeaseLo,   // GPU globaltimer ns: with no request after this, end
  kRequestLeaseHi,
  kRequestWords
};
// One LL word: payload in the low half, sequence number in the high half (little-endian: payload first).
constexpr uint64_t ll_word(uint32_t payload, uint32_t seq) { return payload | (static_cast<uint64_t>(seq) << 32); }

struct alignas(128) Channel {
  // line 0 (host): the request, kRequestWords LL words
  uint64_t request[kRequestWords];
  uint32_t host_pad0[16];
  // line 1 (device)
  uint32_t ready;   // the launch generation, once every CTA holds its weights in shared memory
  uint32_t exited;  // the launch generation, once the kernel has ended (idle or stop)
  uint64_t ready_gpu_ns;  // CTA 0's globaltimer when it wrote ready (the host's clock offset)
  uint32_t device_pad[28];
  // line 2 (device): device-output requests only
  uint32_t done_seq[32];
  // CTA 0's running sums of nanoseconds per request phase (kTrace*), and the request count: written after
  // each answer, for bench_low_latency's breakdown (plain stores; read by the host whenever).
  uint64_t trace[16];
};
static_assert(sizeof(Channel) == 512, "Channel layout");
static_assert(offsetof(Channel, ready) == 128 && offsetof(Channel, done_seq) == 256, "Channel lines");

enum : int {
  kTraceHeader = 0,     // request line seen -> the request sent to every CTA (mailbox, st.async)
  kTraceInput,          // CTA 0: its own mailbox arrived, its input (share) read and sent to every CTA
  kTraceHandOut,        // CTA 0's wait until the whole input has arrived (mbarrier)
  kTraceLayerCompute,   // thread 0's own share of every layer's columns (sum over layers)
  kTraceLayerBarriers,  // the waits for each layer's input columns from every CTA (mbarrier, sum)
  kTraceOutput,         // device output only: output stores fenced (+ __syncthreads)
  kTraceDone,           // device output only: done_seq store
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
  const void* input = nullptr;  // [rows, k0] float32 or float16
  void* output = nullptr;       // LL words: one per [rows, n_last] output element (float32 bits, or float16 bits)
  int layers = 0;
  LayerParams layer[kMaxLayers];
  uint8_t input_half = 0, round_input_half = 0, output_half = 0;
  int max_rows = 0;
  int threads = kThreads;       // per CTA, a multiple of 32 up to kThreads (KILN_LOW_LATENCY_THREADS, experiments)
  int ctas = kClusterCtas;      // CTAs in the cluster: kClusterCtas or kMaxClusterCtas (KILN_LOW_LATENCY_CTAS)
  uint8_t input_spread = 0;     // every CTA reads 1/ctas of the input and sends it to all (else CTA 0 reads it all)
  uint8_t trace = 1;            // CTA 0's phase trace (Channel::trace; KILN_LOW_LATENCY_TRACE=0 turns it off)
  uint32_t generation = 0;      // written to ready / exited
  uint32_t start_seq = 0;       // the last request already answered: serve anything after it
  uint64_t idle_ns = 0;         // the lease before the first request
  int act_stride = 0;                // row stride (floats) of the two activation buffers
  uint32_t input_offset = 0;         // [max_rows][layer[0].k_pad] float
  uint32_t act_offset[2] = {0, 0};   // [max_rows][act_stride] float each
  uint32_t smem_bytes = 0;
};

// Sets the kernel's shared-memory limit, checks that a cluster of p.ctas CTAs with p.smem_bytes each
// can be resident on this GPU (clusters_out: how many could), and launches it on stream.
Status launch_resident_mlp(const KernelParams& p, cudaStream_t stream, int* clusters_out);
// The shared memory one CTA may opt in to (cudaDevAttrMaxSharedMemoryPerBlockOptin minus static use).
Result<int> resident_smem_limit();

}  // namespace kiln::cuda::resident
