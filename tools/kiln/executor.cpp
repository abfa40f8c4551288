#include "executor.h"

#include <chrono>
#include <cstring>

#include <fmt/format.h>

namespace kiln::cli {

namespace {
double host_ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

Result<std::unique_ptr<Executor>> Executor::create(const Engine& engine, ExecutionContext& context, Bindings& io,
                                                   const GpuRunFlags& flags) {
  std::unique_ptr<Executor> x(new Executor(context, flags));
  x->gpu_ = engine.device() == "cuda";
  if (!x->gpu_) return x;
  auto stream = gpu::stream_create();
  if (!stream.is_ok()) return stream.status();
  x->stream_ = *stream;
  for (gpu::Event& e : x->events_) {
    auto ev = gpu::event_create();
    if (!ev.is_ok()) return ev.status();
    e = *ev;
  }
  for (auto [list, mirrors] : {std::pair{&io.inputs, &x->inputs_}, std::pair{&io.outputs, &x->outputs_}}) {
    for (BoundTensor& t : *list) {
      Mirror m;
      m.host = &t;
      if (flags.host_io == HostIo::kPageable) {  // the runtime copies from and to the host buffers themselves
        mirrors->push_back(m);
        Status s = context.set_tensor_address(t.name, t.buffer.data());
        if (!s.is_ok()) return std::move(s).with_context(fmt::format("binding '{}'", t.name));
        continue;
      }
      auto pinned = gpu::host_alloc_pinned(t.buffer.size());
      if (!pinned.is_ok()) return std::move(pinned).take_status().with_context(fmt::format("tensor '{}'", t.name));
      m.pinned = *pinned;
      if (flags.host_io == HostIo::kPinned) {  // the runtime copies from and to the pinned mirrors
        mirrors->push_back(m);
        Status s = context.set_tensor_address(t.name, m.pinned);
        if (!s.is_ok()) return std::move(s).with_context(fmt::format("binding '{}'", t.name));
        continue;
      }
      auto device = gpu::device_alloc(t.buffer.size());
      if (!device.is_ok()) {
        (void)gpu::host_free_pinned(m.pinned);
        return std::move(device).take_status().with_context(fmt::format("tensor '{}'", t.name));
      }
      m.device = *device;
      mirrors->push_back(m);
      Status s = context.set_tensor_address(t.name, m.device);
      if (!s.is_ok()) return std::move(s).with_context(fmt::format("binding '{}'", t.name));
    }
  }
  // Outputs are poisoned so that an output no layer writes is visible, not zeros.
  for (const Mirror& m : x->outputs_) {
    if (m.device) {
      Status s = gpu::memset_async(m.device, 0xFF, m.host->buffer.size(), x->stream_);
      if (!s.is_ok()) return s;
    } else {
      if (m.pinned) std::memset(m.pinned, 0xFF, m.host->buffer.size());
      std::memset(m.host->buffer.data(), 0xFF, m.host->buffer.size());
    }
  }
  context.set_cuda_graph(flags.use_cuda_graph);
  if (flags.low_latency) {
    const int64_t rows = io.inputs.empty() || io.inputs[0].dims.empty() ? 1 : io.inputs[0].dims[0];
    Status s = context.set_low_latency(true, static_cast<int>(std::max<int64_t>(rows, 1)));
    if (!s.is_ok()) return s;
  }
  Status s = x->upload_inputs();
  if (!s.is_ok()) return s;
  return x;
}

Executor::~Executor() {
  for (auto* list : {&inputs_, &outputs_})
    for (Mirror& m : *list) {
      if (m.pinned) (void)gpu::host_free_pinned(m.pinned);
      if (m.device) (void)gpu::device_free(m.device);
    }
  for (gpu::Event e : events_)
    if (e) (void)gpu::event_destroy(e);
  if (stream_) (void)gpu::stream_destroy(stream_);
}

Status Executor::copy(const std::vector<Mirror>& mirrors, bool to_device) {
  for (const Mirror& m : mirrors) {
    const size_t n = m.host->buffer.size();
    Status s = to_device ? gpu::copy_to_device_async(m.device, m.pinned, n, stream_)
                         : gpu::copy_to_host_async(m.pinned, m.device, n, stream_);
    if (!s.is_ok()) return std::move(s).with_context(fmt::format("tensor '{}'", m.host->name));
  }
  return Status::ok();
}

Status Executor::upload_inputs() {
  if (!gpu_) return Status::ok();
  for (const Mirror& m : inputs_)
    if (m.pinned) std::memcpy(m.pinned, m.host->buffer.data(), m.host->buffer.size());
  if (host_io()) return Status::ok();
  Status s = copy(inputs_, true);
  if (!s.is_ok()) return s;
  return gpu::stream_synchronize(stream_);
}

Status Executor::fetch_outputs() {
  if (!gpu_ || flags_.host_io == HostIo::kPageable) return Status::ok();
  if (host_io()) {
    for (const Mirror& m : outputs_) std::memcpy(m.host->buffer.data(), m.pinned, m.host->buffer.size());
    return Status::ok();
  }
  Status s = copy(outputs_, false);
  if (!s.is_ok()) return s;
  s = gpu::stream_synchronize(stream_);
  if (!s.is_ok()) return s;
  for (const Mirror& m : outputs_) std::memcpy(m.host->buffer.data(), m.pinned, m.host->buffer.size());
  return Status::ok();
}

Status Executor::run(TimedRun* run) {
  if (!gpu_ || host_io() || flags_.low_latency) {  // execute() moves the data itself (or reads device memory)
    const auto t0 = std::chrono::steady_clock::now();
    Status s = context_.execute();
    run->enqueue_ms = run->compute_ms = host_ms_since(t0);
    return s;
  }
  const bool transfers = !flags_.no_data_transfers;
  Status s = gpu::event_record(events_[0], stream_);
  if (s.is_ok() && transfers) s = copy(inputs_, true);
  if (s.is_ok()) s = gpu::event_record(events_[1], stream_);
  if (!s.is_ok()) return s;
  const auto t0 = std::chrono::steady_clock::now();
  s = context_.enqueue(stream_);
  run->enqueue_ms = host_ms_since(t0);
  if (!s.is_ok()) return s;
  s = gpu::event_record(events_[2], stream_);
  if (s.is_ok() && transfers) s = copy(outputs_, false);
  if (s.is_ok()) s = gpu::event_record(events_[3], stream_);
  if (s.is_ok()) s = gpu::event_synchronize(events_[3], flags_.spin_wait);
  if (!s.is_ok()) return s;
  double* stages[3] = {&run->h2d_ms, &run->compute_ms, &run->d2h_ms};
  for (int i = 0; i < 3; ++i) {
    auto ms = gpu::event_elapsed_ms(events_[i], events_[i + 1]);
    if (!ms.is_ok()) return ms.status();
    *stages[i] = *ms;
  }
  run->gpu = true;
  return Status::ok();
}

}  // namespace kiln::cli
