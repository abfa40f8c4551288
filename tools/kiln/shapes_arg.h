// Parsing of trtexec-style list flags: "--shapes=input:1x1x28x28,mask:1x128" and
// "--loadInputs=input:data.bin,mask:mask.bin".
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kiln/status.h"
#include "kiln/types.h"

namespace kiln::cli {

struct NamedShape {
  std::string name;
  Dims dims;
};

// Parses one or more comma-separated "name:AxBxC" items (each element of `values` may hold several,
// so the flag can be repeated). Tensor names may contain ':', so the name ends at the LAST ':'.
// Dims must be non-negative integers; a scalar is written "name:" (no dims). Duplicate names are an
// error. Errors read "<flag>: bad dimension 'A' in 'input:1xAx28'".
Result<std::vector<NamedShape>> parse_shapes(std::string_view flag, const std::vector<std::string>& values);

struct NamedFile {
  std::string name;
  std::string path;
};

// Parses comma-separated "name:path" items. A name may contain ':' and so may a path, so the split is
// resolved against the engine's input names: the first ':' whose left side is a known input wins;
// failing that, the first ':'. Unknown names are reported by the caller, which knows the engine.
Result<std::vector<NamedFile>> parse_named_files(std::string_view flag, const std::vector<std::string>& values,
                                                 const std::vector<std::string>& known_names);

// Splits on ',' and drops empty items (so a trailing comma is harmless).
std::vector<std::string> split_list(const std::vector<std::string>& values);

}  // namespace kiln::cli
