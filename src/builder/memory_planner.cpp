#include "builder/memory_planner.h"

#include <algorithm>

#include <fmt/format.h>

namespace kiln {
namespace {
constexpr uint64_t kAlign = 64;
uint64_t align_up(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Status plan_memory(const Graph& g, const std::vector<uint64_t>& max_bytes, bool reuse,
                   std::vector<ValueStorage>* storage, uint64_t* arena_bytes) {
  const size_t nv = g.values.size();
  storage->assign(nv, ValueStorage{});
  auto& st = *storage;
  for (size_t v = 0; v < nv; ++v) {
    st[v].max_bytes = max_bytes[v];
    if (g.values[v].constant) st[v].kind = StorageKind::kConstant;
  }
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    st[g.inputs[i]].kind = StorageKind::kInput;
    st[g.inputs[i]].io_index = static_cast<int>(i);
  }
  auto consumers = g.consumers();
  // Views: output 0 shares input 0's bytes. A graph output reached through views makes its root the
  // caller's output buffer (the kernel assignment only allows that when the root is a plain activation).
  for (const Node& n : g.nodes) {
    if (n.kernel != kViewKernel) continue;
    st[n.outputs[0]].kind = StorageKind::kView;
    st[n.outputs[0]].view_of = n.inputs[0];
    for (size_t k = 1; k < n.outputs.size(); ++k) st[n.outputs[k]].kind = StorageKind::kUnused;
  }
  auto root_of = [&](int v) {
    while (st[v].kind == StorageKind::kView) v = st[v].view_of;
    return v;
  };
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const int out = g.outputs[i];
    const int root = root_of(out);
    if (st[root].kind == StorageKind::kConstant || st[root].kind == StorageKind::kInput)
      return Status(StatusCode::kUnsupported,
                    fmt::format("graph output '{}' is {} '{}' itself, with no layer producing it", g.values[out].name,
                                st[root].kind == StorageKind::kConstant ? "the constant" : "the graph input",
                                g.values[root].name));
    if (st[root].kind != StorageKind::kArena)
      return Status(StatusCode::kInternal, fmt::format("graph output '{}' aliases a non-activation value '{}'",
                                                       g.values[out].name, g.values[root].name));
    st[root].kind = StorageKind::kOutput;
    st[root].io_index = static_cast<int>(i);
  }
  // Optional outputs nobody reads get no memory.
  for (const Node& n : g.nodes)
    for (int v : n.outputs)
      if (st[v].kind == StorageKind::kArena && consumers[v].empty() && !g.is_graph_output(v))
        st[v].kind = StorageKind::kUnused;

  // Lifetimes of arena roots: from the producing layer to the last layer reading it or any view of it.
  std::vector<int> start(nv, -1), end(nv, -1);
  for (size_t n = 0; n < g.nodes.size(); ++n) {
    for (int v : g.nodes[n].outputs) {
      int r = root_of(v);
      if (st[r].kind == StorageKind::kArena && start[r] < 0) start[r] = static_cast<int>(n);
    }
    for (int v : g.nodes[n].inputs) {
      if (v < 0) continue;
      int r = root_of(v);
      if (st[r].kind == StorageKind::kArena) end[r] = std::max(end[r], static_cast<int>(n));
    }
  }
  std::vector<int> roots;
  for (size_t v = 0; v < nv; ++v)
    if (st[v].kind == StorageKind::kArena) {
      if (start[v] < 0) return Status(StatusCode::kInternal, "activation '" + g.values[v].name + "' has no producer");
      end[v] = std::max(end[v], start[v]);
      roots.push_back(static_cast<int>(v));
    }
  // Greedy by size, first fit among roots whose lifetimes overlap (sizes at the profile's max shapes).
  std::stable_sort(roots.begin(), roots.end(), [&](int a, int b) { return max_bytes[a] > max_bytes[b]; });
  std::vector<int> placed;
  uint64_t total = 0;
  for (int r : roots) {
    const uint64_t size = align_up(std::max<uint64_t>(max_bytes[r], 1));
    uint64_t offset = 0;
    if (reuse) {
      std::vector<std::pair<uint64_t, uint64_t>> busy;
      for (int p : placed)
        if (!(end[p] < start[r] || end[r] < start[p]))
          busy.emplace_back(st[p].arena_offset, st[p].arena_offset + align_up(std::max<uint64_t>(max_bytes[p], 1)));
      std::sort(busy.begin(), busy.end());
      for (const auto& [b, e] : busy) {
        if (offset + size <= b) break;
        offset = std::max(offset, e);
      }
    } else {
      offset = total;
    }
    st[r].arena_offset = offset;
    total = std::max(total, offset + size);
    placed.push_back(r);
  }
  *arena_bytes = total;
  return Status::ok();
}

}  // namespace kiln
