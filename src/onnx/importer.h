// ONNX (protobuf) -> Kiln IR. Resolves external data, Constant nodes, symbolic dims, and checks every
// node against the operator registry, reporting all unsupported nodes at once.
#pragma once
#include <string>

#include "ir/graph.h"
#include "kiln/status.h"

namespace kiln {

// Reads and imports an .onnx file; external data is resolved relative to its folder.
Result<Graph> import_onnx_file(const std::string& path);
// Imports serialized ModelProto bytes; external data is resolved relative to base_dir.
Result<Graph> import_onnx_bytes(const std::string& bytes, const std::string& base_dir);

}  // namespace kiln
