// Host IO's float32 -> float16 conversion (host_io.h): an FP16 engine rounds its float32 input to float16
// before any use, so converting on the host while staging halves the bytes that cross PCIe.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kiln {

// y[i] = x[i] rounded to float16, to nearest even (bit for bit as float_to_half in ops/float16.h, NaNs
// aside: any NaN stays a NaN). Uses AVX-512F or F16C where the CPU has them; stores bypass the cache
// (the copy engine reads y next, not this core), fenced before returning.
void convert_f32_to_f16(const float* x, uint16_t* y, size_t n);

// Which path convert_f32_to_f16 takes on this CPU: "avx512f", "f16c" or "scalar".
const char* convert_f32_to_f16_isa();
// The same through one named path (tests); false when this CPU lacks it or the name is unknown.
bool convert_f32_to_f16_using(const char* isa, const float* x, uint16_t* y, size_t n);

}  // namespace kiln
