// Graph rewrite passes. Each pass is a small named rule in its own file, registered with a static
// PassRegistrar, run in `order`, and switchable from the CLI (`kiln build --disablePass=name`).
#pragma once
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

struct PassContext {
  std::set<std::string> disabled;  // every disabled pass/rule name, for rules that consult others
  // The backend the engine is for ("cpu" or "cuda"): rules that create kernel-only ops (kiln.FusedMLP)
  // fuse only when that backend has a kernel for the op.
  std::string device = "cpu";
  // An INT8 build: the INT8 step after the passes rewrites Gemm nodes, so rules must leave them visible.
  bool int8 = false;
};

struct PassDef {
  std::string name;
  std::string description;
  int order = 0;  // lower runs first
  // Returns true in *changed when it rewrote the graph.
  std::function<Status(Graph&, const PassContext&, bool* changed)> run;
};

class PassRegistry {
 public:
  static PassRegistry& instance();
  void add(PassDef def);
  std::vector<const PassDef*> ordered() const;

 private:
  std::vector<PassDef> defs_;
};

struct PassRegistrar {
  explicit PassRegistrar(PassDef def) { PassRegistry::instance().add(std::move(def)); }
};

// Runs every enabled pass in order, repeating the fusion rounds until nothing changes.
// Fills `ran` with the names of the passes that ran.
Status run_passes(Graph& g, const PassContext& ctx, std::vector<std::string>* ran);

// Runs one pass (if registered and enabled). The builder folds constants before the first shape
// inference, since shape arguments (Reshape's shape...) may only become constant by folding.
Status run_pass(Graph& g, const std::string& name, const PassContext& ctx);

// Helpers shared by rules.
// The single node consuming value v, or -1 when v has zero or several consumers or is a graph output.
int sole_consumer(const Graph& g, const std::vector<std::vector<int>>& consumers, int v);
// Removes nodes marked in `dead` (keeps order) and compacts values.
void erase_nodes(Graph& g, const std::vector<char>& dead);

// Names of builder steps that are not graph rewrites but can also be switched off.
inline constexpr const char* kWeightPrepackingPass = "weight_prepacking";
inline constexpr const char* kViewAliasingPass = "view_aliasing";
inline constexpr const char* kMemoryReusePass = "memory_reuse";

}  // namespace kiln
