// Feeds arbitrary bytes to Runtime::deserialize_engine. Corrupt engines must be rejected with an
// error Status (kCorruptEngine, kVersionMismatch, ...); an engine that loads must be usable: creating
// an execution context and querying every IO tensor may fail with a Status, never crash.
//
// The engine file's CRC-32 (over everything after the 64-byte header) rejects almost every mutation
// before the flatbuffer verifier and the graph checks run. So an input that starts with the engine
// magic is also tried with its CRC recomputed, which lets mutations reach those deeper checks. The
// field's offset mirrors the Header struct in src/engine/engine_file.cpp; if that layout changes, the
// fuzzer only loses depth, not correctness.
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "kiln/runtime.h"

namespace {

constexpr size_t kHeaderSize = 64;
constexpr size_t kCrcOffset = 48;  // magic[8], version u32, header_size u32, 4 x u64 section table
constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'E', 'N', 'G', '\0'};

void load_and_query(std::span<const uint8_t> bytes) {
  kiln::Runtime runtime;
  auto engine = runtime.deserialize_engine(bytes);
  if (!engine.is_ok()) return;
  const kiln::Engine& e = **engine;
  (void)e.num_layers();
  (void)e.device();
  (void)e.metadata();
  (void)e.inspect_json();
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    const std::string& name = e.io_tensor_name(i);
    (void)e.tensor_mode(name);
    (void)e.tensor_dtype(name);
    (void)e.tensor_shape(name);
    if (e.tensor_mode(name) == kiln::TensorIOMode::kInput) (void)e.profile_shapes(name);
  }
  auto ctx = e.create_execution_context();
  if (!ctx.is_ok()) return;
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    (void)(*ctx)->tensor_shape(e.io_tensor_name(i));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  load_and_query(std::span<const uint8_t>(data, size));

  if (size < kHeaderSize || std::memcmp(data, kMagic, sizeof kMagic) != 0) return 0;
  const uint32_t crc = static_cast<uint32_t>(
      crc32(crc32(0L, Z_NULL, 0), data + kHeaderSize, static_cast<uInt>(size - kHeaderSize)));
  uint32_t stored;
  std::memcpy(&stored, data + kCrcOffset, sizeof stored);
  if (crc == stored) return 0;  // already tried as is
  std::vector<uint8_t> fixed(data, data + size);
  std::memcpy(fixed.data() + kCrcOffset, &crc, sizeof crc);
  load_and_query(fixed);
  return 0;
}
