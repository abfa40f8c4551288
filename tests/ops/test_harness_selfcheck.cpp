// The harness must catch broken kernels: wrong values, poison left in the output, writes past the end.
// A probe op (domain kiln.test) whose kernel misbehaves on request exercises each check.
#include <cmath>
#include <cstdlib>
#include <optional>
#include <string>

#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include "../op_harness.h"
#include "backends/cpu/cpu_kernel.h"
#include "ops/op_util.h"
#ifdef KILN_WITH_CUDA
#include "backends/cuda/cuda_kernel.h"
#endif

namespace kiln::test {
namespace {

// Probe: y = 2 * x. Attribute `bug`: 0 none, 1 wrong value, 2 leaves the last element, 3 writes past the end.
Status probe_check(const Node& node) { return check_attributes(node, {"bug"}); }
Status probe_infer(InferContext& ctx) {
  ctx.outputs[0] = ctx.inputs[0];
  return Status::ok();
}
Status probe_reference(RefContext& ctx) {
  ctx.outputs[0] = *ctx.inputs[0];
  for (double& v : ctx.outputs[0].data) v *= 2;
  return Status::ok();
}

OpDef probe_def() {
  OpDef def = op_def("HarnessProbe", probe_check, probe_infer, probe_reference);
  def.domain = "kiln.test";
  return def;
}
const OpRegistrar kProbe{probe_def()};

class ProbeKernel final : public cpu::CpuKernel {
 public:
  explicit ProbeKernel(int64_t bug) : bug_(bug) {}
  Status reshape(const std::vector<TensorDesc>&, const std::vector<TensorDesc>& outputs) override {
    n_ = volume(outputs[0].shape);
    return Status::ok();
  }
  Status run(const void* const* inputs, void* const* outputs) override {
    const float* x = static_cast<const float*>(inputs[0]);
    float* y = static_cast<float*>(outputs[0]);
    const int64_t n = bug_ == 2 ? n_ - 1 : bug_ == 3 ? n_ + 1 : n_;
    for (int64_t i = 0; i < n; ++i) y[i] = 2 * x[i % n_] + (bug_ == 1 && i == 0 ? 0.5f : 0.f);
    return Status::ok();
  }

 private:
  int64_t bug_;
  int64_t n_ = 0;
};

cpu::CpuKernelDef probe_kernel_def() {
  cpu::CpuKernelDef def;
  def.name = "cpu.f32.harness_probe";
  def.domain = "kiln.test";
  def.op_type = "HarnessProbe";
  def.supports = [](const Node&, const Graph&) { return Status::ok(); };
  def.create = [](const cpu::KernelInit& init) -> Result<std::unique_ptr<cpu::CpuKernel>> {
    auto bug = init.node.attrs.get_int("bug", 0);
    if (!bug.is_ok()) return bug.status();
    return std::unique_ptr<cpu::CpuKernel>(std::make_unique<ProbeKernel>(*bug));
  };
  return def;
}
const cpu::KernelRegistrar kProbeKernel{probe_kernel_def()};

OpCase probe(int64_t bug) {
  OpCase c;
  c.op_type = "HarnessProbe";
  c.domain = "kiln.test";
  c.opset = 1;
  c.inputs = {input({3, 5})};
  c.attr("bug", bug);
  c.require_kernel = bug == 0;  // a buggy kernel must be reported once, as itself
  c.require_cuda_kernel = false;  // the probe is CPU-only
  return c;
}

TEST(OpHarness, PassesCorrectKernel) {
  auto r = run_op_case(probe(0));
  ASSERT_EQ(r.kernels_run.size(), 1u);
  EXPECT_EQ(r.kernels_run[0], "cpu.f32.harness_probe");
}

TEST(OpHarness, CatchesWrongValues) { EXPECT_NONFATAL_FAILURE(run_op_case(probe(1)), "relative L2 error"); }
TEST(OpHarness, CatchesPoisonLeft) { EXPECT_NONFATAL_FAILURE(run_op_case(probe(2)), "NaN left at element 14"); }
TEST(OpHarness, CatchesOutOfBoundsWrites) {
  EXPECT_NONFATAL_FAILURE(run_op_case(probe(3)), "written out of bounds");
}

TEST(OpHarness, InputsAreNeverZero) {
  OpCase c = probe(0);
  c.inputs[0] = input({1000});
  auto ref = reference_op(c);
  ASSERT_TRUE(ref.is_ok());
  for (double v : ref->at(0).data) EXPECT_NE(v, 0.0);
}

bool gpu_usable() {
#ifdef KILN_WITH_CUDA
  return cuda::current_device().is_ok();
#else
  return false;
#endif
}

TEST(OpHarness, CudaOffSkipsCudaKernels) {
  ScopedEnv env("KILN_TEST_CUDA", "off");
  auto r = run_op_case(probe(0));
  EXPECT_FALSE(r.cuda_checked);
  EXPECT_TRUE(r.cuda_kernels_run.empty());
}

// KILN_TEST_CUDA=require fails every case where CUDA kernels cannot run: a GPU run never passes vacuously.
TEST(OpHarness, CudaRequireFailsWithoutGpu) {
  ScopedEnv env("KILN_TEST_CUDA", "require");
  if (gpu_usable()) {
    EXPECT_TRUE(run_op_case(probe(0)).cuda_checked);
    return;
  }
  EXPECT_NONFATAL_FAILURE(run_op_case(probe(0)), "KILN_TEST_CUDA=require, but");
}

TEST(OpHarness, CudaModeMustBeKnown) {
  ScopedEnv env("KILN_TEST_CUDA", "yes");
  EXPECT_NONFATAL_FAILURE(run_op_case(probe(0)), "is not one of auto, require, off");
}

TEST(OpRegistry, EveryOpHasACpuKernel) {
  for (const OpDef* def : OpRegistry::instance().all()) {
    if (def->op_type == "Gemm" || def->op_type == "FusedGemm") continue;  // the lead's kernel, checked in OpGemm
    EXPECT_FALSE(cpu::KernelRegistry::instance().candidates(def->domain, def->op_type).empty())
        << def->domain << "." << def->op_type << " has no CPU kernel";
  }
}

TEST(OpRegistry, KernelNamesAreUniqueAndDescriptive) {
  for (const OpDef* def : OpRegistry::instance().all())
    for (const auto* k : cpu::KernelRegistry::instance().candidates(def->domain, def->op_type)) {
      EXPECT_EQ(k->name.rfind("cpu.", 0), 0u) << k->name;
      EXPECT_EQ(cpu::KernelRegistry::instance().find(k->name), k) << k->name << " is registered twice";
    }
}

#ifdef KILN_WITH_CUDA
TEST(OpRegistry, EveryOpHasACudaKernel) {
  for (const OpDef* def : OpRegistry::instance().all()) {
    if (def->domain == "kiln.test") continue;  // harness probes
    EXPECT_FALSE(cuda::KernelRegistry::instance().candidates(def->domain, def->op_type).empty())
        << def->domain << "." << def->op_type << " has no CUDA kernel";
  }
}

TEST(OpRegistry, CudaKernelNamesAreUniqueAndDescriptive) {
  for (const cuda::KernelDef* k : cuda::KernelRegistry::instance().all()) {
    EXPECT_EQ(k->name.rfind("cuda.", 0), 0u) << k->name;
    EXPECT_EQ(cuda::KernelRegistry::instance().find(k->name), k) << k->name << " is registered twice";
    EXPECT_TRUE(k->supports && k->create) << k->name;
  }
}
#endif

}  // namespace
}  // namespace kiln::test
