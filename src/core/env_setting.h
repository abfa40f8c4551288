// Settings read from the environment (experiments and opt-outs such as KILN_HOST_IO_CAST): one shape for
// all, so each is parsed the same way and a malformed value is refused by name instead of guessed at.
#pragma once
#include "kiln/status.h"

namespace kiln {

// A two-way setting: unset or empty gives `unset`; `when_false` / `when_true` give false / true; anything
// else is kInvalidArgument naming the variable, its value and the two accepted names.
Result<bool> two_way_setting(const char* name, const char* when_false, const char* when_true, bool unset);

// A whole number in [lo, hi]: unset or empty gives `unset`; anything else is kInvalidArgument naming the
// variable, its value and the range.
Result<int> int_setting(const char* name, int lo, int hi, int unset);

}  // namespace kiln
