// The host-memory execute() path of CUDA engines; see host_io.h. Chunk sizes: large enough that the
// copy engines run at full rate and per-chunk launches are amortized (~2 MiB of input per chunk), at
// most kMaxChunks; lanes are reused across calls and re-planned only when the chunk's row count changes.
#include "runtime/host_io.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include "core/env_setting.h"
#include "kiln/gpu.h"
#include "runtime/engine_impl.h"
#include "runtime/host_staging.h"

namespace kiln {
namespace {

constexpr size_t kMinSplitBytes = 1 << 20;   // below this much host input, one chunk
constexpr size_t kChunkBytes = 2 << 20;      // target host input bytes per chunk (pageable, copied)
constexpr size_t kCastChunkBytes = 13 << 18; // the same, input converted (3.25 MiB: 8 chunks at b8192 in float16)
constexpr size_t kTailBytes = 3 << 19;       // the last chunk of pinned input (1.5 MiB)
constexpr int64_t kMaxChunks = 16;
constexpr size_t kMaxLanes = 4;              // streams with a chunk in flight
constexpr size_t kPieceBytes = 256 << 10;    // unit of work for the staging threads

// Rows per chunk. Pinned input: the copy engine is the bottleneck, and whatever runs after the last
// copy (that chunk's compute and device-to-host copy) is added to it, while every extra chunk costs a few
// microseconds of copy-engine gaps. So: few chunks of falling size, [rest, 2t, t], where a tail t of
// ~1.5 MiB takes about as long to copy as the chunk before it takes to compute. Staged input (pageable, or
// converted to float16): staging by threads runs beside the copies, and ~2 MiB chunks keep both busy;
// converted input in ~3.25 MiB chunks (the FP16 engine at b8192 in GPU run 30's sweep, median ms pinned /
// pageable: 4 chunks 0.381 / 0.395, 8: 0.371 / 0.389, 13 (2 MiB): 0.392 / 0.401, 16: 0.391 / 0.402).
// forced > 0: that many equal chunks.
std::vector<int64_t> chunk_plan(int64_t batch, size_t in_bytes, bool staged, bool converted, int64_t forced) {
  if (forced == 0 && in_bytes < kMinSplitBytes) return {batch};
  const size_t row_bytes = std::max<size_t>(in_bytes / static_cast<size_t>(batch), 1);
  if (forced == 0 && !staged) {
    const int64_t tail = std::max<int64_t>(64, static_cast<int64_t>(kTailBytes / row_bytes) / 64 * 64);
    if (batch >= 5 * tail) return {batch - 3 * tail, 2 * tail, tail};
    if (batch >= 2 * tail) return {batch - tail, tail};
    return {batch};
  }
  const size_t target = converted ? kCastChunkBytes : kChunkBytes;
  int64_t n = forced ? forced : static_cast<int64_t>((in_bytes + target - 1) / target);
  n = std::clamp<int64_t>(n, 1, std::min<int64_t>(kMaxChunks, batch));
  const int64_t rows = (batch + n - 1) / n;
  std::vector<int64_t> plan;
  for (int64_t left = batch; left > 0; left -= rows) plan.push_back(std::min(rows, left));
  return plan;
}

int64_t env_chunks() {  // KILN_HOST_IO_CHUNKS=n forces n chunks (experiments; 0 = automatic)
  const char* v = std::getenv("KILN_HOST_IO_CHUNKS");
  return v ? std::max<int64_t>(0, std::atoll(v)) : 0;
}

// KILN_HOST_IO_COPY_STREAM=1: every chunk's copies on one copy stream (host_io.h). Off by default: no faster
// than the lane streams on the H100 (GPU run 14, docs/performance.md).
bool env_copy_stream() {
  const char* v = std::getenv("KILN_HOST_IO_COPY_STREAM");
  return v && std::string(v) == "1";
}

// KILN_HOST_IO_CAST=0 turns off the host-side conversion of inputs (float16 or int8; host_io.h); 1 or unset: on.
Result<bool> env_host_cast() { return two_way_setting("KILN_HOST_IO_CAST", "0", "1", true); }

// Quantizing an INT8 engine's input on the host (KILN_HOST_IO_QUANTIZE=0 turns it off): the same bits as the
// GPU's quantizer with equal chunks (GPU run 33); pinned b8192 0.53 -> 0.37-0.48 ms (GPU run 32).
Result<bool> env_host_quantize() { return two_way_setting("KILN_HOST_IO_QUANTIZE", "0", "1", true); }

// Pageable input that is not converted is copied into staging with streaming stores (host_staging.h):
// FP32 engine, batch 8192, CUDA graph on the H100 machine (GPU run 30), 0.75 ms against 0.96-1.03 ms with
// memcpy, p99 0.80 against 1.5-1.8. KILN_HOST_IO_STAGING_COPY=memcpy goes back to memcpy.
Result<bool> env_streaming_copy() { return two_way_setting("KILN_HOST_IO_STAGING_COPY", "memcpy", "stream", true); }

// Pinned input is converted on the host only with this many staging threads: fewer convert slower than the
// copy engine copies float32 (bench_pcie_read on the H100 machine: 4 threads 0.38 ms with the copies, the
// float32 copy alone 0.48 ms; 1 thread converts at ~8 GB/s).
constexpr int kMinCastThreads = 4;

size_t bytes_of(const TensorDesc& d) { return static_cast<size_t>(volume(d.shape)) * dtype_size(d.dtype); }

}  // namespace

struct HostIoPipeline::Lane {
  std::unique_ptr<ContextImpl> ctx;
  gpu::Stream stream = nullptr;
  gpu::Event consumed = nullptr;  // recorded after each chunk's compute: its input buffers may be refilled
  bool consumed_pending = false;  // consumed was recorded in this run()
  std::vector<void*> device;  // per IO tensor: this lane's device buffer (host IO only)
  std::vector<size_t> device_bytes;
  int64_t rows = -1;
  bool graph = false;

  ~Lane() {
    ctx.reset();
    for (void* p : device)
      if (p) (void)gpu::device_free(p);
    if (consumed) (void)gpu::event_destroy(consumed);
    if (stream) (void)gpu::stream_destroy(stream);
  }
};

HostIoPipeline::HostIoPipeline(std::shared_ptr<const EngineImpl> engine, std::string batch_split_blocker)
    : engine_(std::move(engine)), blocker_(std::move(batch_split_blocker)) {
  staging_.assign(engine_->io_names.size(), nullptr);
  staging_bytes_.assign(engine_->io_names.size(), 0);
}

HostIoPipeline::~HostIoPipeline() {
  workers_.reset();
  lanes_.clear();
  for (void* p : staging_)
    if (p) (void)gpu::host_free_pinned(p);
  for (void* e : events_) (void)gpu::event_destroy(e);
  for (void* e : copied_) (void)gpu::event_destroy(e);
  if (copy_stream_) (void)gpu::stream_destroy(copy_stream_);
}

Status HostIoPipeline::reserve_staging(size_t io, size_t bytes) {
  if (staging_bytes_[io] >= bytes && staging_[io]) return Status::ok();
  if (staging_[io]) (void)gpu::host_free_pinned(staging_[io]);
  staging_[io] = nullptr;
  staging_bytes_[io] = 0;
  auto p = gpu::host_alloc_pinned(bytes);
  if (!p.is_ok()) return std::move(p).take_status().with_context("staging tensor '" + engine_->io_names[io] + "'");
  staging_[io] = *p;
  staging_bytes_[io] = bytes;
  return Status::ok();
}

// Lane `index` set up for `rows` rows: shapes, device buffers for host IO, graph setting. With
// chunked = false the lane runs the whole batch and device IO tensors are used in place.
Result<HostIoPipeline::Lane*> HostIoPipeline::lane(size_t index, int64_t rows, const HostIoRun& r, bool chunked,
                                                   const std::vector<size_t>& shrink) {
  const EngineImpl& e = *engine_;
  while (lanes_.size() <= index) {
    auto lane = std::make_unique<Lane>();
    auto ctx = ContextImpl::create(engine_);
    if (!ctx.is_ok()) return ctx.status();
    lane->ctx = std::move(ctx).value();
    auto st = gpu::stream_create();
    if (!st.is_ok()) return st.status();
    lane->stream = *st;
    lane->device.assign(e.io_names.size(), nullptr);
    lane->device_bytes.assign(e.io_names.size(), 0);
    lanes_.push_back(std::move(lane));
  }
  Lane& l = *lanes_[index];
  const int64_t batch = (*r.desc)[0].shape[0];
  for (size_t io = 0; io < e.io_names.size(); ++io) {
    const TensorDesc& d = (*r.desc)[io];
    Dims shape = d.shape;
    if (chunked) shape[0] = rows;
    if (static_cast<int>(io) < e.num_inputs) {
      Status s = l.ctx->set_input_shape(e.io_names[io], shape);
      if (s.is_ok()) s = l.ctx->set_input_host_form(static_cast<int>(io), shrink[io] > 1);
      if (!s.is_ok()) return s;
    }
    void* address = (*r.addr)[io];
    if ((*r.where)[io] != MemoryLocation::kDevice) {
      size_t need = chunked ? bytes_of(d) / static_cast<size_t>(batch) * rows : bytes_of(d);
      need /= shrink[io];
      need = std::max<size_t>(need, 1);
      if (l.device_bytes[io] < need) {
        if (l.device[io]) (void)gpu::device_free(l.device[io]);
        l.device[io] = nullptr;
        l.device_bytes[io] = 0;
        auto p = gpu::device_alloc(need);
        if (!p.is_ok()) return std::move(p).take_status().with_context("device buffer for '" + e.io_names[io] + "'");
        l.device[io] = *p;
        l.device_bytes[io] = need;
      }
      address = l.device[io];
    }
    Status s = l.ctx->set_tensor_address(e.io_names[io], address);
    if (!s.is_ok()) return s;
  }
  l.rows = rows;
  if (l.graph != r.cuda_graph) {
    l.ctx->set_cuda_graph(r.cuda_graph);
    l.graph = r.cuda_graph;
  }
  l.ctx->set_layer_observer(r.observer);
  l.ctx->profiling = r.timings != nullptr;
  return &l;
}

Status HostIoPipeline::run(const HostIoRun& r) {
  const EngineImpl& e = *engine_;
  const size_t n_io = e.io_names.size();
  const std::vector<TensorDesc>& desc = *r.desc;
  const std::vector<MemoryLocation>& where = *r.where;
  const std::vector<void*>& addr = *r.addr;
  const int64_t batch = desc[0].shape.empty() ? 0 : desc[0].shape[0];

  // The plan: how many chunks of how many rows.
  size_t host_in_bytes = 0;
  bool any_device = false, pageable_in = false, pageable_out = false;
  for (size_t io = 0; io < n_io; ++io) {
    const bool input = static_cast<int>(io) < e.num_inputs;
    if (where[io] == MemoryLocation::kDevice) any_device = true;
    if (input && where[io] != MemoryLocation::kDevice) host_in_bytes += bytes_of(desc[io]);
    if (where[io] == MemoryLocation::kPageableHost) (input ? pageable_in : pageable_out) = true;
  }
  // Inputs converted on the host as they are staged (EngineImpl::input_host_form: float16, or int8 for an INT8
  // engine's quantized input): a half or a quarter of the bytes cross PCIe, with the result the engine gives
  // on float32. Pageable input is staged by threads anyway; pinned input is staged only for this, with enough
  // threads.
  auto host_cast = env_host_cast();
  if (!host_cast.is_ok()) return host_cast.status();
  auto streaming_copy = env_streaming_copy();
  if (!streaming_copy.is_ok()) return streaming_copy.status();
  auto host_quantize = env_host_quantize();
  if (!host_quantize.is_ok()) return host_quantize.status();
  const int threads = r.threads > 0 ? r.threads : default_staging_threads();
  // Bytes of float32 source per byte of an input's staging and device copy: 1, or 2 (float16) / 4 (int8) where
  // the input is converted.
  std::vector<size_t> shrink(n_io, 1);
  last_converted_inputs_ = 0;
  for (int io = 0; io < e.num_inputs && *host_cast && !r.observer && !r.timings && host_in_bytes >= kMinSplitBytes; ++io) {
    if (where[io] == MemoryLocation::kDevice || !e.input_host_form[io] || desc[io].dtype != DataType::kFloat32) continue;
    if (e.input_host_form[io].dtype != DataType::kFloat16 && !*host_quantize) continue;
    if (where[io] == MemoryLocation::kPinnedHost && threads < kMinCastThreads) continue;
    shrink[io] = 4 / dtype_size(e.input_host_form[io].dtype);
    ++last_converted_inputs_;
  }
  const bool any_converted = last_converted_inputs_ > 0;
  const bool staged = pageable_in || any_converted;  // threads write some input into staging

  // One chunk: rows not independent, device tensors in place, layer-by-layer runs, or nothing to split.
  const bool single = !blocker_.empty() || any_device || r.observer || r.timings || batch < 2;
  std::vector<int64_t> plan = single ? std::vector<int64_t>{batch}
                                     : chunk_plan(batch, host_in_bytes, staged, any_converted, env_chunks());
  // Every chunk's shape must be inside the profile.
  for (int i = 0; i < e.num_inputs && plan.size() > 1; ++i)
    if (*std::min_element(plan.begin(), plan.end()) < e.model.profiles[i].min[0]) plan = {batch};
  const bool chunked = plan.size() > 1;
  const int64_t chunks = static_cast<int64_t>(plan.size());
  std::vector<int64_t> first_row(plan.size(), 0);
  for (size_t c = 1; c < plan.size(); ++c) first_row[c] = first_row[c - 1] + plan[c - 1];

  // Lanes first: nothing is queued before every lane is ready. Chunks of one size take turns on up to
  // kMaxLanes lanes of that size; each size has lanes of its own (a lane is planned for one shape).
  std::vector<Lane*> lane_of(plan.size());
  std::vector<std::pair<int64_t, std::vector<size_t>>> lanes_by_rows;
  size_t lanes_used = 0;
  for (size_t c = 0; c < plan.size(); ++c) {
    auto it = std::find_if(lanes_by_rows.begin(), lanes_by_rows.end(), [&](const auto& p) { return p.first == plan[c]; });
    if (it == lanes_by_rows.end()) it = lanes_by_rows.insert(lanes_by_rows.end(), {plan[c], {}});
    const size_t seen = static_cast<size_t>(std::count(plan.begin(), plan.begin() + static_cast<std::ptrdiff_t>(c), plan[c]));
    if (it->second.size() < kMaxLanes && it->second.size() == seen) it->second.push_back(lanes_used++);
    auto l = lane(it->second[seen % it->second.size()], plan[c], r, chunked, shrink);
    if (!l.is_ok()) return l.status();
    lane_of[c] = *l;
  }
  for (size_t io = 0; io < n_io; ++io)
    if (where[io] == MemoryLocation::kPageableHost || shrink[io] > 1) {
      Status s = reserve_staging(io, std::max<size_t>(bytes_of(desc[io]) / shrink[io], 1));
      if (!s.is_ok()) return s;
    }
  while (pageable_out && events_.size() < static_cast<size_t>(chunks)) {
    auto ev = gpu::event_create();
    if (!ev.is_ok()) return ev.status();
    events_.push_back(*ev);
  }
  // Chunked host input: the copies in order on one stream (see host_io.h).
  const bool copy_stream = chunked && host_in_bytes > 0 && env_copy_stream();
  if (copy_stream && !copy_stream_) {
    auto st = gpu::stream_create();
    if (!st.is_ok()) return st.status();
    copy_stream_ = *st;
  }
  while (copy_stream && copied_.size() < static_cast<size_t>(chunks)) {
    auto ev = gpu::event_create();
    if (!ev.is_ok()) return ev.status();
    copied_.push_back(*ev);
  }
  for (Lane* l : lane_of) {
    l->consumed_pending = false;
    if (copy_stream && !l->consumed) {
      auto ev = gpu::event_create();
      if (!ev.is_ok()) return ev.status();
      l->consumed = *ev;
    }
  }
  auto offset = [&](size_t io, int64_t c) {
    return chunked ? bytes_of(desc[io]) / static_cast<size_t>(batch) * static_cast<size_t>(first_row[c]) : 0;
  };
  auto chunk_bytes = [&](size_t io, int64_t c) {
    return chunked ? bytes_of(desc[io]) / static_cast<size_t>(batch) * static_cast<size_t>(plan[c]) : bytes_of(desc[io]);
  };

  // Staged inputs (pageable, or converted): pieces in chunk order for the staging threads.
  std::vector<size_t> pieces_per_chunk(static_cast<size_t>(chunks), 0);
  if (staged) {
    if (!workers_ || static_cast<int>(workers_->size()) != threads - 1)
      workers_ = std::make_unique<CopyWorkers>(threads - 1);  // the calling thread is the last one
    std::vector<CopyWorkers::Piece> pieces;
    for (int64_t c = 0; c < chunks; ++c)
      for (int io = 0; io < e.num_inputs; ++io) {
        if (where[io] != MemoryLocation::kPageableHost && shrink[io] == 1) continue;
        const size_t off = offset(io, c), bytes = chunk_bytes(io, c);
        for (size_t p = 0; p < bytes; p += kPieceBytes) {
          pieces.push_back({static_cast<uint8_t*>(staging_[io]) + (off + p) / shrink[io],
                            static_cast<const uint8_t*>(addr[io]) + off + p, std::min(kPieceBytes, bytes - p),
                            static_cast<size_t>(c),
                            shrink[io] == 1   ? (*streaming_copy ? CopyWorkers::Work::kCopyStreaming : CopyWorkers::Work::kCopy)
                            : e.input_host_form[io].dtype == DataType::kFloat16 ? CopyWorkers::Work::kToF16
                                                                                : CopyWorkers::Work::kQuantize,
                            e.input_host_form[io]});
          ++pieces_per_chunk[c];
        }
      }
    const bool wake = pieces.size() > 4;
    workers_->start(std::move(pieces), static_cast<size_t>(chunks), wake);
  }

  if (r.observer || r.timings) {  // one chunk, layer by layer: the lane's execute() reports as it goes
    Lane& l = *lane_of[0];
    for (int io = 0; io < e.num_inputs; ++io)
      if (where[io] != MemoryLocation::kDevice) {
        Status s = gpu::copy_to_device_async(l.device[io], addr[io], bytes_of(desc[io]), l.stream);
        if (!s.is_ok()) return s;
      }
    Status s = gpu::stream_synchronize(l.stream);
    if (s.is_ok()) s = l.ctx->execute();
    for (size_t io = e.num_inputs; io < n_io && s.is_ok(); ++io)
      if (where[io] != MemoryLocation::kDevice) s = gpu::copy_to_host_async(addr[io], l.device[io], bytes_of(desc[io]), l.stream);
    Status done = gpu::stream_synchronize(l.stream);
    if (r.timings) *r.timings = l.ctx->timings;
    return s.is_ok() ? done : s;
  }

  Status status = Status::ok();
  int64_t queued = 0;
  for (int64_t c = 0; c < chunks && status.is_ok(); ++c) {
    Lane& l = *lane_of[c];
    if (staged) workers_->wait_chunk(static_cast<size_t>(c), pieces_per_chunk[c]);
    // The copy stream refills a lane's input buffers only after the lane's last chunk has read them.
    const gpu::Stream in_stream = copy_stream ? copy_stream_ : l.stream;
    if (copy_stream && l.consumed_pending) status = gpu::stream_wait_event(copy_stream_, l.consumed);
    for (int io = 0; io < e.num_inputs && status.is_ok(); ++io) {
      if (where[io] == MemoryLocation::kDevice) continue;
      const bool from_staging = where[io] == MemoryLocation::kPageableHost || shrink[io] > 1;
      const uint8_t* src = static_cast<const uint8_t*>(from_staging ? staging_[io] : addr[io]);
      status = gpu::copy_to_device_async(l.device[io], src + offset(io, c) / shrink[io], chunk_bytes(io, c) / shrink[io],
                                         in_stream);
    }
    if (copy_stream && status.is_ok()) status = gpu::event_record(copied_[c], copy_stream_);
    if (copy_stream && status.is_ok()) status = gpu::stream_wait_event(l.stream, copied_[c]);
    if (status.is_ok()) status = l.ctx->enqueue(l.stream);
    if (copy_stream && status.is_ok()) {
      status = gpu::event_record(l.consumed, l.stream);
      l.consumed_pending = status.is_ok();
    }
    for (size_t io = e.num_inputs; io < n_io && status.is_ok(); ++io) {
      if (where[io] == MemoryLocation::kDevice) continue;
      uint8_t* dst = static_cast<uint8_t*>(where[io] == MemoryLocation::kPageableHost ? staging_[io] : addr[io]);
      status = gpu::copy_to_host_async(dst + offset(io, c), l.device[io], chunk_bytes(io, c), l.stream);
    }
    if (status.is_ok() && pageable_out) status = gpu::event_record(events_[c], l.stream);
    if (status.is_ok()) ++queued;
    if (!status.is_ok()) status = std::move(status).with_context(fmt::format("chunk {} of {} ({} rows)", c + 1, chunks, l.rows));
  }
  if (staged) workers_->finish();
  // Pageable outputs leave staging as each chunk completes, overlapped with later chunks.
  for (int64_t c = 0; c < queued && pageable_out && status.is_ok(); ++c) {
    status = gpu::event_synchronize(events_[c], true);
    for (size_t io = e.num_inputs; io < n_io && status.is_ok(); ++io)
      if (where[io] == MemoryLocation::kPageableHost)
        std::memcpy(static_cast<uint8_t*>(addr[io]) + offset(io, c),
                    static_cast<const uint8_t*>(staging_[io]) + offset(io, c), chunk_bytes(io, c));
  }
  // Always drain every lane used, and the copy stream, even after an error: buffers are about to be reused
  // or freed.
  if (copy_stream) {
    Status s = gpu::stream_synchronize(copy_stream_, true);
    if (status.is_ok() && !s.is_ok()) status = std::move(s);
  }
  for (size_t i = 0; i < lanes_used; ++i) {
    Status s = gpu::stream_synchronize(lanes_[i]->stream, true);
    if (status.is_ok() && !s.is_ok()) status = std::move(s);
  }
  return status;
}

}  // namespace kiln
