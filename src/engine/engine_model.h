// What an engine holds, in memory: the optimized graph with its kernels, where every value lives, the
// shape profiles, and build facts. serialize/deserialize convert it to and from the engine file.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ir/graph.h"
#include "kiln/runtime.h"

namespace kiln {

enum class StorageKind : uint8_t {
  kArena = 0,     // activation arena at arena_offset
  kInput = 1,     // caller-bound input io_index
  kOutput = 2,    // caller-bound output io_index
  kConstant = 3,  // weight data in the engine
  kView = 4,      // same bytes as value view_of (zero-copy Reshape/Flatten/...)
  kUnused = 5,    // an optional output nothing reads: kernels get nullptr
};

struct ValueStorage {
  StorageKind kind = StorageKind::kArena;
  uint64_t arena_offset = 0;
  uint64_t max_bytes = 0;
  int io_index = -1;
  int view_of = -1;
};

constexpr const char* kViewKernel = "view";  // kernel name of a layer that only aliases

struct EngineModel {
  Graph graph;                          // optimized; node.kernel set for every node
  std::vector<ValueStorage> storage;    // per value
  std::vector<ShapeProfile> profiles;   // per graph input
  uint64_t arena_bytes = 0;
  std::string kiln_version;
  std::string device = "cpu";
  std::string target;                   // CPU ISA the weights were packed for, or the GPU description
  std::string device_json = "{}";       // CUDA: the GPU and CUDA version the engine was built for
  std::string build_flags_json = "{}";

  // Bytes of constant data the engine carries (the weights).
  uint64_t weight_bytes() const {
    uint64_t n = 0;
    for (size_t v = 0; v < graph.values.size(); ++v)
      if (storage[v].kind == StorageKind::kConstant) n += graph.values[v].constant->nbytes();
    return n;
  }
};

constexpr uint32_t kEngineFormatVersion = 1;

std::vector<uint8_t> serialize_engine(const EngineModel& m);
// Validates everything (header, checksum, flatbuffer, every index) before returning.
Result<EngineModel> deserialize_engine(std::span<const uint8_t> bytes);

}  // namespace kiln
