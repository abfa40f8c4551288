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
// True when p is ordinary (pageable) host memory: not page-locked or registered, not device or managed.
Result<bool> is_pageable_host(const void* p);

// Copies between the device and host memory of any kind, with cudaMemcpyAsync's contract: an upload returns
// once host_src may be reused; a download to pageable memory returns once the data is in host_dst (as the
// driver's does), to page-locked memory as soon as it is queued. Page-locked memory and small copies go
// straight to copy_to_device_async / copy_to_host_async. Larger pageable copies go through Kiln's own
// page-locked staging: an upload (from 1 MiB) is staged chunk by chunk by worker threads with streaming
// stores, each chunk's copy queued as soon as it is staged, where the driver stages on one thread (25.7 MB:
// 2.0 ms on the H100 machine against 0.48 ms from page-locked memory); a download (from 64 KiB) lands in
// staging chunk by chunk and is copied out as each chunk arrives. KILN_PAGEABLE_COPY=driver leaves pageable
// memory to the driver. Concurrent calls take turns on the staging buffers.
Status upload_async(void* device_dst, const void* host_src, size_t bytes, Stream stream);
Status download_async(void* host_dst, const void* device_src, size_t bytes, Stream stream);

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
