// Feeds arbitrary bytes to Runtime::deserialize_engine. Corrupt engines must be rejected with an
// error Status (kCorruptEngine, kVersionMismatch, ...); an engine that loads must be usable: creating
// an execution context and querying every IO tensor may fail with a Status, never crash.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "kiln/runtime.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kiln::Runtime runtime;
  auto engine = runtime.deserialize_engine(std::span<const uint8_t>(data, size));
  if (!engine.is_ok()) return 0;
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
  if (!ctx.is_ok()) return 0;
  for (int i = 0; i < e.num_io_tensors(); ++i) {
    (void)(*ctx)->tensor_shape(e.io_tensor_name(i));
  }
  return 0;
}
