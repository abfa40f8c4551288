// Umbrella header for Kiln's C++ API.
#pragma once
#include "kiln/builder.h"
#include "kiln/gpu.h"
#include "kiln/runtime.h"
#include "kiln/status.h"
#include "kiln/types.h"
