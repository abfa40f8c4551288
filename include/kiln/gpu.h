// Minimal GPU plumbing for programs that drive CUDA engines without including CUDA headers: device
// memory, pinned host memory, streams and events. Handles are the CUDA runtime's own (a Stream is a
// cudaStream_t, an Event a cudaEvent_t), so they mix freely with CUDA code and other libraries. In a
// build without the CUDA backend every call returns kUnsupported.
#pragma once
#include <cstddef>
#include <string>

#include "kiln/status.h"

namespace kiln::gpu {

using Stream = void*;  // cudaStream_t; nullptr is the legacy default stream
using Event = void*;   // cudaEvent_t

// True when this build has the CUDA backend and a usable GPU is present.
bool available();
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, CUDA 13.0)", or why no GPU can be used.
Result<std::string> describe_device();
// cudaDriverGetVersion, e.g. 13000.
Result<int> driver_version();
// Bytes of device memory in use on the GPU right now (total - free), for peak-memory reports.
Result<size_t> device_memory_used();

Result<void*> device_alloc(size_t bytes);
Status device_free(void* p);
Result<void*> host_alloc_pinned(size_t bytes);
Status host_free_pinned(void* p);
Status memset_async(void* device_dst, int value, size_t bytes, Stream stream);
Status copy_to_device_async(void* device_dst, const void* host_src, size_t bytes, Stream stream);
Status copy_to_host_async(void* host_dst, const void* device_src, size_t bytes, Stream stream);
Status copy_device_to_device_async(void* dst, const void* src, size_t bytes, Stream stream);

Result<Stream> stream_create();
Status stream_destroy(Stream s);
// spin = poll (cudaStreamQuery) instead of blocking: lower latency, one busy core (trtexec --useSpinWait).
Status stream_synchronize(Stream s, bool spin = false);
// Waits for all work on the current device (cudaDeviceSynchronize), like pycuda's Context.synchronize().
Status device_synchronize();

Result<Event> event_create();
Status event_destroy(Event e);
Status event_record(Event e, Stream s);
Status event_synchronize(Event e, bool spin = false);
// Work queued on s after this waits until e's recorded work is done (cudaStreamWaitEvent).
Status stream_wait_event(Stream s, Event e);
Result<float> event_elapsed_ms(Event start, Event end);

}  // namespace kiln::gpu
