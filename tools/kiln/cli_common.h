// Small helpers every subcommand shares: the one-line error convention, file I/O with errors that name
// the file, and number formatting.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <CLI/CLI.hpp>

#include "kiln/status.h"

namespace kiln::cli {

constexpr int kExitOk = 0;
constexpr int kExitFailure = 1;  // the command ran and failed (bad file, bad shape, library error)
constexpr int kExitUsage = 2;    // the command line itself is wrong

// Prints "kiln: error: <message>" on stderr and returns kExitFailure (or `code`).
int report_error(std::string_view message, int code = kExitFailure);
int report_error(const Status& status, int code = kExitFailure);
// Prints "kiln: note: <message>" on stderr: things the user should know but that are not failures.
void report_note(std::string_view message);

Result<std::vector<uint8_t>> read_binary_file(const std::string& path);
Status write_binary_file(const std::string& path, const void* data, size_t size);
Status write_text_file(const std::string& path, std::string_view text);

// A CLI11 check with a plain message: "--iterations: must be >= 1, got 0".
CLI::Validator at_least(double minimum);

std::string join(const std::vector<std::string>& items, std::string_view sep);
// "940584 bytes (918.5 KiB)"
std::string format_bytes(uint64_t bytes);

}  // namespace kiln::cli
