#include <algorithm>

#include <fmt/format.h>

#include "backends/cpu/cpu_kernel.h"

namespace kiln::cpu {

KernelRegistry& KernelRegistry::instance() {
  static KernelRegistry registry;
  return registry;
}

Status KernelRegistry::add(CpuKernelDef def) {
  if (find(def.name)) return Status(StatusCode::kInternal, fmt::format("kernel '{}' registered twice", def.name));
  defs_.push_back(std::make_unique<CpuKernelDef>(std::move(def)));
  return Status::ok();
}

const CpuKernelDef* KernelRegistry::find(const std::string& name) const {
  for (const auto& d : defs_) if (d->name == name) return d.get();
  return nullptr;
}

std::vector<const CpuKernelDef*> KernelRegistry::candidates(const std::string& domain,
                                                            const std::string& op_type) const {
  std::vector<const CpuKernelDef*> out;
  for (const auto& d : defs_) if (d->domain == domain && d->op_type == op_type) out.push_back(d.get());
  std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->priority > b->priority; });
  return out;
}

KernelRegistrar::KernelRegistrar(CpuKernelDef def) {
  Status s = KernelRegistry::instance().add(std::move(def));
  if (!s.is_ok()) fmt::print(stderr, "kiln: {}\n", s.to_string());
}

}  // namespace kiln::cpu
