// Feeds arbitrary bytes to the ONNX importer as a serialized ModelProto. Any input may be rejected
// with an error Status; none may crash, hang, leak or trip a sanitizer. The base directory does not
// exist, so external-data references must fail cleanly instead of reading files.
#include <cstddef>
#include <cstdint>
#include <string>

#include "onnx/importer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  auto graph = kiln::import_onnx_bytes(bytes, "/nonexistent");
  if (graph.is_ok()) {
    // A graph the importer accepted must also pass its own verifier's checks without crashing.
    (void)graph->verify();
  }
  return 0;
}
