#include "op_harness.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "backends/cpu/cpu_kernel.h"
#include "ops/cast.h"
#include "ops/op_util.h"
#include "ops/reference_eval.h"

#ifdef KILN_WITH_CUDA
#include <cuda_runtime.h>

#include "backends/cuda/cuda_kernel.h"
#endif

namespace kiln::test {

InputSpec input(Dims shape, DataType dt) { return InputSpec{dt, std::move(shape), false, false, {}}; }
InputSpec constant(DataType dt, Dims shape, std::vector<double> values) {
  return InputSpec{dt, std::move(shape), false, true, std::move(values)};
}
InputSpec ints(const std::vector<int64_t>& values) {
  return constant(DataType::kInt64, {static_cast<int64_t>(values.size())},
                  std::vector<double>(values.begin(), values.end()));
}
InputSpec random_constant(Dims shape, DataType dt) { return InputSpec{dt, std::move(shape), false, true, {}}; }
InputSpec omitted() { return InputSpec{DataType::kUndefined, {}, true, false, {}}; }
OpCase gpu_only(OpCase c) {
  c.require_kernel = false;
  return c;
}

namespace {

// Random value of dtype, never zero except for bool. Floats are rounded to the dtype so that the
// reference sees exactly what the kernel sees.
double random_value(std::mt19937_64& rng, DataType dt, double magnitude) {
  const bool negative = rng() & 1;
  switch (dt) {
    case DataType::kBool: return static_cast<double>(rng() & 1);
    case DataType::kUInt8: return static_cast<double>(1 + rng() % 20);
    case DataType::kInt8: case DataType::kInt32: case DataType::kInt64: {
      const double v = static_cast<double>(1 + rng() % 9);
      return negative ? -v : v;
    }
    default: {
      const double u = static_cast<double>(rng() >> 11) * 0x1p-53;
      const double v = magnitude / 8 + u * (magnitude - magnitude / 8);
      return cast_double(negative ? -v : v, dt);
    }
  }
}

RefTensor random_tensor(std::mt19937_64& rng, DataType dt, const Dims& shape, double magnitude) {
  RefTensor r{dt, shape, {}};
  r.data.resize(static_cast<size_t>(std::max<int64_t>(volume(shape), 0)));
  for (double& v : r.data) v = random_value(rng, dt, magnitude);
  return r;
}

// Explicit values, rounded to the dtype as the kernel will see them.
RefTensor explicit_tensor(const InputSpec& in, const Dims& shape) {
  RefTensor r{in.dtype, shape, in.values};
  for (double& v : r.data) v = cast_double(v, in.dtype);
  return r;
}

bool is_gemm(const OpCase& c) { return c.op_type == "Gemm" || c.op_type == "FusedGemm"; }

// Input shapes of each run: the case's shapes, then more_shapes applied to the non-constant inputs.
std::vector<std::vector<Dims>> shape_sets(const OpCase& c) {
  std::vector<std::vector<Dims>> sets;
  std::vector<Dims> base;
  for (const auto& in : c.inputs) base.push_back(in.shape);
  sets.push_back(base);
  for (const auto& more : c.more_shapes) {
    std::vector<Dims> s = base;
    size_t next = 0;
    for (size_t i = 0; i < c.inputs.size(); ++i)
      if (!c.inputs[i].omitted && !c.inputs[i].constant && next < more.size()) s[i] = more[next++];
    sets.push_back(s);
  }
  return sets;
}

struct Prepared {
  std::vector<TensorDesc> in_descs, out_descs;
  std::vector<RefTensor> ref_in;  // empty RefTensor for omitted inputs
  std::vector<RefTensor> ref_out;
};

// Aligned buffer with a guard zone after the payload to catch out-of-bounds writes.
struct Buffer {
  static constexpr size_t kGuard = 64;
  std::vector<uint8_t> storage;
  uint8_t* ptr = nullptr;
  size_t bytes = 0;

  explicit Buffer(size_t n) : storage(n + kGuard + 64), bytes(n) {
    const auto addr = reinterpret_cast<uintptr_t>(storage.data());
    ptr = storage.data() + (64 - addr % 64) % 64;
  }
  void poison(DataType dt) {
    const size_t e = dtype_size(dt);
    for (size_t i = 0; i + e <= bytes; i += e) {
      if (dt == DataType::kFloat32) { const float nan = NAN; std::memcpy(ptr + i, &nan, 4); }
      else if (dt == DataType::kFloat64) { const double nan = NAN; std::memcpy(ptr + i, &nan, 8); }
      else if (dt == DataType::kFloat16) { const uint16_t nan = 0x7e00; std::memcpy(ptr + i, &nan, 2); }
      else std::memset(ptr + i, 0xA5, e);
    }
    std::memset(ptr + bytes, 0xCB, kGuard);
  }
  bool guard_intact() const {
    for (size_t i = 0; i < kGuard; ++i) if (ptr[bytes + i] != 0xCB) return false;
    return true;
  }
};

// Empty string when out matches ref; otherwise what differs.
std::string compare(const RefTensor& ref, const RefTensor& out, bool exact, double tol, int integer_slack) {
  if (ref.data.size() != out.data.size()) return fmt::format("{} values, expected {}", out.data.size(), ref.data.size());
  size_t mismatches = 0, first = 0;
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < ref.data.size(); ++i) {
    const double r = ref.data[i], o = out.data[i];
    if (std::isnan(o) && !std::isnan(r)) return fmt::format("NaN left at element {} (reference {})", i, r);
    if (std::isnan(r) && std::isnan(o)) continue;
    if (r != o && mismatches++ == 0) first = i;
    if (std::isfinite(r) && std::isfinite(o)) {
      err2 += (o - r) * (o - r);
      ref2 += r * r;
    } else if (r != o) {
      err2 = INFINITY;
    }
  }
  const bool compare_exactly = exact || !is_float_dtype(ref.dtype);
  if (compare_exactly && integer_slack > 0 && !is_float_dtype(ref.dtype)) {
    size_t beyond = 0;
    for (size_t i = 0; i < ref.data.size(); ++i)
      if (std::abs(out.data[i] - ref.data[i]) > integer_slack) beyond++;
    if (beyond == 0 && mismatches <= std::max<size_t>(2, ref.data.size() / 100)) return "";
    return fmt::format("{} of {} elements differ ({} by more than {}); first at {}: got {}, expected {}", mismatches,
                       ref.data.size(), beyond, integer_slack, first, out.data[first], ref.data[first]);
  }
  if (compare_exactly) {
    if (mismatches == 0) return "";
    return fmt::format("{} of {} elements differ; first at {}: got {}, expected {}", mismatches, ref.data.size(),
                       first, out.data[first], ref.data[first]);
  }
  const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
  if (rel <= tol) return "";
  return fmt::format("relative L2 error {:.3g} > {:.3g}; first difference at {}: got {}, expected {}", rel, tol, first,
                     out.data[first], ref.data[first]);
}

const OpDef* find_def(const OpCase& c) { return OpRegistry::instance().find(c.domain, c.op_type); }

// Checks one run's outputs (host copies, guard zones included) against the reference; reports failures.
bool check_outputs(const std::string& rwhat, const OpCase& c, const Prepared& p, const std::vector<Buffer>& outs) {
  bool ok = true;
  for (size_t o = 0; o < outs.size(); ++o) {
    if (!outs[o].guard_intact()) {
      ADD_FAILURE() << rwhat << ": output " << o << " was written out of bounds";
      ok = false;
    }
    std::vector<uint8_t> bytes(outs[o].ptr, outs[o].ptr + outs[o].bytes);
    const RefTensor got = ref_from_tensor(Tensor::make(p.out_descs[o].dtype, p.out_descs[o].shape, bytes));
    const std::string diff = compare(p.ref_out[o], got, c.exact, c.tolerance, c.integer_slack);
    if (!diff.empty()) {
      ADD_FAILURE() << rwhat << ": output " << o << ": " << diff;
      ok = false;
    }
  }
  return ok;
}

// Input descs a kernel sees: constants as stored after pack (possibly in another layout or dtype).
std::vector<TensorDesc> kernel_in_descs(const Graph& kg, std::vector<TensorDesc> descs) {
  const Node& kn = kg.nodes[0];
  for (size_t i = 0; i < kn.inputs.size(); ++i)
    if (kn.inputs[i] != kNoValue && kg.values[kn.inputs[i]].constant) {
      const Tensor& t = *kg.values[kn.inputs[i]].constant;
      descs[i] = {t.dtype, t.shape};
    }
  return descs;
}

void run_cpu_kernels(const OpCase& c, const Graph& g, const std::vector<Prepared>& runs, const std::string& what,
                     CaseReport& report) {
  const auto candidates = cpu::KernelRegistry::instance().candidates(c.domain, c.op_type);
  if (candidates.empty()) {
    if (c.require_kernel && !is_gemm(c)) ADD_FAILURE() << what << ": no CPU kernel is registered for " << c.op_type;
    return;
  }
  for (const cpu::CpuKernelDef* kd : candidates) {
    const std::string kwhat = what + " on " + kd->name;
    Status s = kd->supports(g.nodes[0], g);
    if (!s.is_ok()) {
      report.kernels_skipped.push_back(kd->name + ": " + s.to_string());
      continue;
    }
    Graph kg = g;
    Node& kn = kg.nodes[0];
    if (kd->pack) {
      s = kd->pack(kn, kg);
      if (!s.is_ok()) { ADD_FAILURE() << kwhat << ": pack failed: " << s.to_string(); continue; }
    }
    std::shared_ptr<const void> shared;
    if (kd->prepare) {
      auto prepared = kd->prepare(kn, kg);
      if (!prepared.is_ok()) { ADD_FAILURE() << kwhat << ": prepare failed: " << prepared.status().to_string(); continue; }
      shared = *prepared;
    }
    cpu::KernelInit init{kn, kg, {}, shared};
    for (int v : kn.inputs) init.constants.push_back(kg.is_constant(v) ? &*kg.values[v].constant : nullptr);
    auto kernel = kd->create(init);
    if (!kernel.is_ok()) { ADD_FAILURE() << kwhat << ": create failed: " << kernel.status().to_string(); continue; }
    bool ok = true;
    for (size_t r = 0; r < runs.size() && ok; ++r) {
      const Prepared& p = runs[r];
      const std::string rwhat = fmt::format("{} (shape set {})", kwhat, r);
      std::vector<Tensor> in_data(kn.inputs.size());
      std::vector<const void*> in_ptrs(kn.inputs.size(), nullptr);
      for (size_t i = 0; i < kn.inputs.size(); ++i) {
        if (kn.inputs[i] == kNoValue) continue;
        const Value& v = kg.values[kn.inputs[i]];
        // Constants are passed as stored (possibly packed); others converted from the reference data.
        in_data[i] = v.constant ? *v.constant : tensor_from_ref(p.ref_in[i], v.dtype);
        static const uint8_t kEmpty[64] = {};
        in_ptrs[i] = in_data[i].nbytes() ? in_data[i].raw() : kEmpty;
      }
      std::vector<Buffer> outs;
      std::vector<void*> out_ptrs;
      for (const auto& d : p.out_descs) {
        outs.emplace_back(static_cast<size_t>(std::max<int64_t>(volume(d.shape), 0)) * dtype_size(d.dtype));
        out_ptrs.push_back(outs.back().ptr);
      }
      s = (*kernel)->reshape(kernel_in_descs(kg, p.in_descs), p.out_descs);
      if (!s.is_ok()) { ADD_FAILURE() << rwhat << ": reshape failed: " << s.to_string(); ok = false; break; }
      for (int rep = 0; rep < 2 && ok; ++rep) {  // twice: run() must not depend on leftover state
        for (size_t o = 0; o < outs.size(); ++o) outs[o].poison(p.out_descs[o].dtype);
        s = (*kernel)->run(in_ptrs.data(), out_ptrs.data());
        if (!s.is_ok()) { ADD_FAILURE() << rwhat << ": run failed: " << s.to_string(); ok = false; break; }
        ok = check_outputs(rwhat, c, p, outs);
      }
    }
    if (ok) report.kernels_run.push_back(kd->name);
  }
  if (c.require_kernel && !is_gemm(c) && report.kernels_run.empty()) {
    std::string why;
    for (const auto& k : report.kernels_skipped) why += "\n  " + k;
    ADD_FAILURE() << what << ": no CPU kernel ran" << why;
  }
}

enum class CudaMode { kAuto, kRequire, kOff, kInvalid };

CudaMode cuda_mode() {
  const char* env = std::getenv("KILN_TEST_CUDA");
  const std::string v = env ? env : "";
  if (v.empty() || v == "auto") return CudaMode::kAuto;
  if (v == "require") return CudaMode::kRequire;
  if (v == "off") return CudaMode::kOff;
  return CudaMode::kInvalid;
}

#ifdef KILN_WITH_CUDA

// CUDA kernels for these ops are still being written; until they land a case may have none.
bool cuda_kernel_optional(const OpCase& c) { return is_gemm(c) || c.op_type == "MatMul"; }

// Device memory owned by the test (cudaFree on destruction). Never null once allocated, even for 0 bytes.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(DeviceMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)) {}
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  DeviceMemory& operator=(DeviceMemory&&) = delete;
  ~DeviceMemory() {
    if (ptr_) cudaFree(ptr_);
  }
  Status allocate(size_t bytes) {
    if (ptr_) return Status(StatusCode::kInternal, "device memory allocated twice");
    return cuda::check(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)), fmt::format("cudaMalloc({} bytes)", bytes));
  }
  // Allocates and copies bytes from host data (ordered on stream).
  Status upload(const void* data, size_t bytes, cudaStream_t stream) {
    Status s = allocate(bytes);
    if (!s.is_ok() || bytes == 0) return s;
    return cuda::check(cudaMemcpyAsync(ptr_, data, bytes, cudaMemcpyHostToDevice, stream),
                       fmt::format("uploading {} bytes", bytes));
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
};

struct TestStream {
  cudaStream_t stream = nullptr;
  TestStream() = default;
  TestStream(const TestStream&) = delete;
  TestStream& operator=(const TestStream&) = delete;
  ~TestStream() {
    if (stream) cudaStreamDestroy(stream);
  }
};

// Per-dim min (or max) over the shape sets, for tune()'s profile.
std::vector<TensorDesc> profile_bound(const std::vector<Prepared>& runs, bool outputs, bool take_max) {
  std::vector<TensorDesc> bound = outputs ? runs[0].out_descs : runs[0].in_descs;
  for (const Prepared& p : runs) {
    const std::vector<TensorDesc>& descs = outputs ? p.out_descs : p.in_descs;
    for (size_t i = 0; i < bound.size(); ++i) {
      if (descs[i].shape.size() != bound[i].shape.size()) continue;
      for (size_t d = 0; d < bound[i].shape.size(); ++d)
        bound[i].shape[d] = take_max ? std::max(bound[i].shape[d], descs[i].shape[d])
                                     : std::min(bound[i].shape[d], descs[i].shape[d]);
    }
  }
  return bound;
}

// Runs one CUDA kernel over every shape set, as an engine would: pack and tune at build time, constants
// uploaded once, then per shape set reshape, workspace, and enqueue twice on poisoned outputs.
void run_cuda_kernel(const cuda::KernelDef& kd, const OpCase& c, const Graph& g, const std::vector<Prepared>& runs,
                     const cuda::DeviceInfo& device, cudaStream_t stream, const std::string& what,
                     CaseReport& report) {
  const std::string kwhat = what + " on " + kd.name;
  Status s = kd.supports(g.nodes[0], g);
  if (!s.is_ok()) {
    report.cuda_kernels_skipped.push_back(kd.name + ": " + s.to_string());
    return;
  }
  Graph kg = g;
  Node& kn = kg.nodes[0];
  if (kd.pack) {
    s = kd.pack(kn, kg);
    if (!s.is_ok()) { ADD_FAILURE() << kwhat << ": pack failed: " << s.to_string(); return; }
  }
  if (kd.tune) {
    cuda::TuneContext tc{profile_bound(runs, false, false), runs[0].in_descs, profile_bound(runs, false, true),
                         profile_bound(runs, true, false), runs[0].out_descs, profile_bound(runs, true, true),
                         device, stream, nullptr, false};
    for (auto* descs : {&tc.in_min, &tc.in_opt, &tc.in_max}) *descs = kernel_in_descs(kg, *descs);
    s = kd.tune(kn, kg, tc);
    if (!s.is_ok()) { ADD_FAILURE() << kwhat << ": tune failed: " << s.to_string(); return; }
  }
  // Constants go to the device once, as an engine's would; the host copies stay available too.
  std::vector<DeviceMemory> constants(kn.inputs.size());
  cuda::KernelInit init{kn, kg, {}, {}, device};
  for (size_t i = 0; i < kn.inputs.size(); ++i) {
    const int v = kn.inputs[i];
    const Tensor* t = kg.is_constant(v) ? &*kg.values[v].constant : nullptr;
    if (t) {
      s = constants[i].upload(t->raw(), t->nbytes(), stream);
      if (!s.is_ok()) { ADD_FAILURE() << kwhat << ": constant input " << i << ": " << s.to_string(); return; }
    }
    init.constants.push_back(t);
    init.device_constants.push_back(t ? constants[i].get() : nullptr);
  }
  auto kernel = kd.create(init);
  if (!kernel.is_ok()) { ADD_FAILURE() << kwhat << ": create failed: " << kernel.status().to_string(); return; }
  bool ok = true;
  for (size_t r = 0; r < runs.size() && ok; ++r) {
    const Prepared& p = runs[r];
    const std::string rwhat = fmt::format("{} (shape set {})", kwhat, r);
    auto fail = [&](const std::string& step, const Status& st) {
      ADD_FAILURE() << rwhat << ": " << step << ": " << st.to_string();
      ok = false;
    };
    std::vector<DeviceMemory> in_mem(kn.inputs.size());
    std::vector<const void*> in_ptrs(kn.inputs.size(), nullptr);
    for (size_t i = 0; i < kn.inputs.size() && ok; ++i) {
      if (kn.inputs[i] == kNoValue) continue;
      const Value& v = kg.values[kn.inputs[i]];
      if (v.constant) {
        in_ptrs[i] = constants[i].get();
        continue;
      }
      const Tensor t = tensor_from_ref(p.ref_in[i], v.dtype);
      s = in_mem[i].upload(t.raw(), t.nbytes(), stream);
      if (!s.is_ok()) fail(fmt::format("input {}", i), s);
      in_ptrs[i] = in_mem[i].get();
    }
    if (!ok) break;
    s = (*kernel)->reshape(kernel_in_descs(kg, p.in_descs), p.out_descs);
    if (!s.is_ok()) { fail("reshape failed", s); break; }
    DeviceMemory workspace;
    const size_t ws_bytes = (*kernel)->workspace_bytes();
    if (ws_bytes > 0) {
      s = workspace.allocate(ws_bytes);
      if (!s.is_ok()) { fail("workspace", s); break; }
    }
    std::vector<Buffer> outs;  // host staging: poison going in, results (and guard zones) coming back
    std::vector<DeviceMemory> dev_outs(p.out_descs.size());
    std::vector<void*> out_ptrs;
    for (size_t o = 0; o < p.out_descs.size() && ok; ++o) {
      const TensorDesc& d = p.out_descs[o];
      outs.emplace_back(static_cast<size_t>(std::max<int64_t>(volume(d.shape), 0)) * dtype_size(d.dtype));
      s = dev_outs[o].allocate(outs.back().bytes + Buffer::kGuard);
      if (!s.is_ok()) fail(fmt::format("output {}", o), s);
      out_ptrs.push_back(dev_outs[o].get());
    }
    for (int rep = 0; rep < 2 && ok; ++rep) {  // twice: enqueue() must not depend on leftover state
      for (size_t o = 0; o < outs.size() && ok; ++o) {
        outs[o].poison(p.out_descs[o].dtype);
        s = cuda::check(cudaMemcpyAsync(out_ptrs[o], outs[o].ptr, outs[o].bytes + Buffer::kGuard,
                                        cudaMemcpyHostToDevice, stream), "poisoning the output");
        if (!s.is_ok()) fail(fmt::format("output {}", o), s);
      }
      if (!ok) break;
      s = (*kernel)->enqueue(in_ptrs.data(), out_ptrs.data(), workspace.get(), stream);
      if (!s.is_ok()) { fail("enqueue failed", s); break; }
      s = cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize after enqueue");
      if (!s.is_ok()) { fail("the kernel failed on the device", s); break; }
      for (size_t o = 0; o < outs.size() && ok; ++o) {
        s = cuda::check(cudaMemcpyAsync(outs[o].ptr, out_ptrs[o], outs[o].bytes + Buffer::kGuard,
                                        cudaMemcpyDeviceToHost, stream), "copying the output back");
        if (!s.is_ok()) fail(fmt::format("output {}", o), s);
      }
      s = cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize after the copy back");
      if (!s.is_ok()) fail("copy back", s);
      if (ok) ok = check_outputs(rwhat, c, p, outs);
    }
  }
  if (ok) report.cuda_kernels_run.push_back(kd.name);
}

#endif  // KILN_WITH_CUDA

// Every CUDA kernel registered for the op, when KILN_TEST_CUDA and the machine allow (see op_harness.h).
void run_cuda_kernels(const OpCase& c, const Graph& g, const std::vector<Prepared>& runs, const std::string& what,
                      CaseReport& report) {
  const CudaMode mode = cuda_mode();
  if (mode == CudaMode::kInvalid) {
    ADD_FAILURE() << "KILN_TEST_CUDA=" << std::getenv("KILN_TEST_CUDA") << " is not one of auto, require, off";
    return;
  }
  if (mode == CudaMode::kOff) return;
#ifndef KILN_WITH_CUDA
  if (mode == CudaMode::kRequire) ADD_FAILURE() << what << ": KILN_TEST_CUDA=require, but this build has no CUDA backend";
  (void)c, (void)g, (void)runs, (void)report;
#else
  static const Result<cuda::DeviceInfo> device = cuda::current_device();
  if (!device.is_ok()) {
    if (mode == CudaMode::kRequire)
      ADD_FAILURE() << what << ": KILN_TEST_CUDA=require, but " << device.status().to_string();
    return;
  }
  report.cuda_checked = true;
  TestStream stream;
  Status s = cuda::check(cudaStreamCreateWithFlags(&stream.stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (!s.is_ok()) {
    ADD_FAILURE() << what << ": " << s.to_string();
    return;
  }
  for (const cuda::KernelDef* kd : cuda::KernelRegistry::instance().candidates(c.domain, c.op_type))
    run_cuda_kernel(*kd, c, g, runs, device.value(), stream.stream, what, report);
  if (c.require_cuda_kernel && !cuda_kernel_optional(c) && report.cuda_kernels_run.empty()) {
    std::string why;
    for (const auto& k : report.cuda_kernels_skipped) why += "\n  " + k;
    ADD_FAILURE() << what << ": no CUDA kernel ran on " << device->describe() << why;
  }
#endif
}

}  // namespace

std::string describe(const OpCase& c) {
  std::string s = fmt::format("{}{}(opset {})", c.domain.empty() ? "" : c.domain + ".", c.op_type, c.opset);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& in = c.inputs[i];
    if (in.omitted) s += " -";
    else s += fmt::format(" {}{}{}", in.constant ? "const " : "", dtype_name(in.dtype), shape_str(in.shape));
  }
  for (const auto& [name, v] : c.attrs.all()) {
    s += " " + name + "=";
    if (auto* i = std::get_if<int64_t>(&v)) s += std::to_string(*i);
    else if (auto* f = std::get_if<float>(&v)) s += fmt::format("{}", *f);
    else if (auto* is = std::get_if<std::vector<int64_t>>(&v)) s += shape_str(*is);
    else s += "...";
  }
  for (const auto& more : c.more_shapes) {
    s += " then";
    for (const auto& d : more) s += " " + shape_str(d);
  }
  return s;
}

Graph make_graph(const OpCase& c) {
  Graph g;
  std::mt19937_64 rng(c.seed * 7919 + 17);
  Node node;
  node.name = "node";
  node.op_type = c.op_type;
  node.domain = c.domain;
  node.opset = c.opset;
  node.attrs = c.attrs;
  node.precision = c.precision;
  const auto sets = shape_sets(c);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    const InputSpec& in = c.inputs[i];
    if (in.omitted) {
      node.inputs.push_back(kNoValue);
      continue;
    }
    Value v;
    v.name = fmt::format("in{}", i);
    v.dtype = in.dtype;
    v.rank_known = true;
    v.shape = in.shape;
    // Dims that change between runs are dynamic, as the builder would see them.
    for (const auto& set : sets)
      for (size_t d = 0; d < v.shape.size() && set[i].size() == v.shape.size(); ++d)
        if (set[i][d] != in.shape[d]) v.shape[d] = kDynamicDim;
    v.dim_params.assign(v.shape.size(), "");
    if (in.constant) {
      RefTensor data = in.values.empty() ? random_tensor(rng, in.dtype, in.shape, c.magnitude)
                                         : explicit_tensor(in, in.shape);
      v.constant = tensor_from_ref(data, in.dtype);
    }
    const int id = g.add_value(std::move(v));
    node.inputs.push_back(id);
    if (!in.constant) g.inputs.push_back(id);
  }
  for (size_t o = 0; o < c.num_outputs; ++o) {
    Value v;
    v.name = fmt::format("out{}", o);
    const int id = g.add_value(std::move(v));
    node.outputs.push_back(id);
    g.outputs.push_back(id);
  }
  g.nodes.push_back(std::move(node));
  return g;
}

Status check_op(const OpCase& c) {
  const OpDef* def = find_def(c);
  if (!def) return Status(StatusCode::kUnsupported, "no operator definition for " + c.op_type);
  Graph g = make_graph(c);
  return def->check(g.nodes[0]);
}

Status infer_op(const OpCase& c, std::vector<TensorDesc>* outputs) {
  Graph g = make_graph(c);
  std::vector<TensorDesc> in;
  for (const auto& spec : c.inputs) in.push_back(spec.omitted ? TensorDesc{} : TensorDesc{spec.dtype, spec.shape});
  std::vector<TensorDesc> out;
  Status s = infer_node(g.nodes[0], g, in, &out);
  if (outputs) *outputs = out;
  return s;
}

Result<std::vector<RefTensor>> reference_op(const OpCase& c) {
  Graph g = make_graph(c);
  std::mt19937_64 rng(c.seed);
  std::vector<RefTensor> data(c.inputs.size());
  std::vector<const RefTensor*> ptrs(c.inputs.size(), nullptr);
  for (size_t i = 0; i < c.inputs.size(); ++i) {
    if (c.inputs[i].omitted) continue;
    const Value& v = g.values[g.nodes[0].inputs[i]];
    if (v.constant) data[i] = ref_from_tensor(*v.constant);
    else if (!c.inputs[i].values.empty()) data[i] = explicit_tensor(c.inputs[i], c.inputs[i].shape);
    else data[i] = random_tensor(rng, c.inputs[i].dtype, c.inputs[i].shape, c.magnitude);
    ptrs[i] = &data[i];
  }
  return evaluate_node_reference(g.nodes[0], ptrs);
}

CaseReport run_op_case(const OpCase& c) {
  CaseReport report;
  const std::string what = describe(c);
  const OpDef* def = find_def(c);
  if (!def) {
    ADD_FAILURE() << what << ": no operator definition";
    return report;
  }
  EXPECT_TRUE(c.opset >= def->min_opset && c.opset <= def->max_opset) << what << ": opset outside the OpDef's range";
  Graph g = make_graph(c);
  Status s = def->check(g.nodes[0]);
  if (!s.is_ok()) {
    ADD_FAILURE() << what << ": check() failed: " << s.to_string();
    return report;
  }

  // Shape inference and reference per shape set.
  std::vector<Prepared> runs;
  std::mt19937_64 rng(c.seed);
  for (const auto& shapes : shape_sets(c)) {
    Prepared p;
    p.ref_in.resize(c.inputs.size());
    std::vector<const RefTensor*> ptrs(c.inputs.size(), nullptr);
    for (size_t i = 0; i < c.inputs.size(); ++i) {
      if (c.inputs[i].omitted) {
        p.in_descs.push_back({});
        continue;
      }
      const Value& v = g.values[g.nodes[0].inputs[i]];
      if (v.constant) p.ref_in[i] = ref_from_tensor(*v.constant);
      else if (!c.inputs[i].values.empty() && volume(shapes[i]) == static_cast<int64_t>(c.inputs[i].values.size()))
        p.ref_in[i] = explicit_tensor(c.inputs[i], shapes[i]);
      else p.ref_in[i] = random_tensor(rng, c.inputs[i].dtype, shapes[i], c.magnitude);  // new shape: fresh data
      p.in_descs.push_back({c.inputs[i].dtype, p.ref_in[i].shape});
      ptrs[i] = &p.ref_in[i];
    }
    s = infer_node(g.nodes[0], g, p.in_descs, &p.out_descs);
    if (!s.is_ok()) {
      ADD_FAILURE() << what << ": shape inference failed: " << s.to_string();
      return report;
    }
    auto ref = evaluate_node_reference(g.nodes[0], ptrs);
    if (!ref.is_ok()) {
      ADD_FAILURE() << what << ": reference failed: " << ref.status().to_string();
      return report;
    }
    p.ref_out = std::move(*ref);
    for (size_t o = 0; o < p.out_descs.size(); ++o) {
      EXPECT_EQ(p.out_descs[o].shape, p.ref_out[o].shape) << what << ": inferred vs reference shape of output " << o;
      EXPECT_EQ(p.out_descs[o].dtype, p.ref_out[o].dtype) << what << ": inferred vs reference dtype of output " << o;
    }
    runs.push_back(std::move(p));
  }
  report.outputs = runs[0].out_descs;
  for (size_t o = 0; o < c.num_outputs; ++o) {
    Value& v = g.values[g.nodes[0].outputs[o]];
    v.dtype = runs[0].out_descs[o].dtype;
    v.shape = runs[0].out_descs[o].shape;
    v.rank_known = true;
    v.dim_params.assign(v.shape.size(), "");
  }

  run_cpu_kernels(c, g, runs, what, report);
  run_cuda_kernels(c, g, runs, what, report);
  return report;
}

}  // namespace kiln::test
