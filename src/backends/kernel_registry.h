// A backend's kernel registry: kernel definitions (a Def with name, domain, op_type and priority) that
// kernel files register at static-initialization time. Shared by the CPU and CUDA backends.
#pragma once
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "kiln/status.h"

namespace kiln {

template <class Def>
class KernelRegistryOf {
 public:
  static KernelRegistryOf& instance() {
    static KernelRegistryOf registry;
    return registry;
  }
  Status add(Def def) {
    if (find(def.name)) return Status(StatusCode::kInternal, "kernel '" + def.name + "' registered twice");
    defs_.push_back(std::make_unique<Def>(std::move(def)));
    return Status::ok();
  }
  const Def* find(const std::string& name) const {
    for (const auto& d : defs_) if (d->name == name) return d.get();
    return nullptr;
  }
  // Kernels registered for the op, highest priority first.
  std::vector<const Def*> candidates(const std::string& domain, const std::string& op_type) const {
    std::vector<const Def*> out;
    for (const auto& d : defs_) if (d->domain == domain && d->op_type == op_type) out.push_back(d.get());
    std::stable_sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->priority > b->priority; });
    return out;
  }
  std::vector<const Def*> all() const {
    std::vector<const Def*> out;
    for (const auto& d : defs_) out.push_back(d.get());
    return out;
  }

 private:
  std::vector<std::unique_ptr<Def>> defs_;
};

// `static KernelRegistrarOf<Def> reg{Def{...}};` in a kernel file.
template <class Def>
struct KernelRegistrarOf {
  explicit KernelRegistrarOf(Def def) {
    Status s = KernelRegistryOf<Def>::instance().add(std::move(def));
    if (!s.is_ok()) std::fprintf(stderr, "kiln: %s\n", s.to_string().c_str());
  }
};

}  // namespace kiln
