// `kiln build --int8 --accuracyTarget=P`: builds the FP32 and INT8 engines, measures top-1 on held-out
// labelled data, and moves the INT8 layers that hurt most back to FP32 until the top-1 drop is at most
// P points; prints each move with its accuracy and speed cost.
#pragma once
#include "engine_source.h"

namespace kiln::cli {

Result<BuiltEngine> build_with_accuracy_target(const BuildFlags& flags);

}  // namespace kiln::cli
