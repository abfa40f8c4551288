// Whole-file reads for the dataset readers, with errors that name the file and say why.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "kiln/status.h"

namespace kiln::data {

// The file's bytes. `what` begins every message ("npy file", "raw file"); a missing file is kNotFound, a
// directory or a file over max_bytes (a guard against absurd inputs) kInvalidArgument, others kIoError.
Result<std::string> read_file_bytes(const std::string& path, std::string_view what, uint64_t max_bytes);

}  // namespace kiln::data
