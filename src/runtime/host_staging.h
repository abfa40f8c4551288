// What host IO's staging threads do to a piece of input (host_io.h): convert float32 to float16 (an FP16
// engine rounds its float32 input to float16 before any use, so converting while staging halves the bytes
// that cross PCIe), or copy it. Both store past the cache: the copy engine reads the staging buffer next, not
// this core, and on the H100 machine cached stores slowed the copies running beside them (bench_pcie_read:
// 8 threads converting beside the copies, 0.49 ms with cached stores, 0.31 ms with streaming stores).
#pragma once
#include <cstddef>
#include <cstdint>

namespace kiln {

// y[i] = x[i] rounded to float16, to nearest even: bit for bit as float_to_half in ops/float16.h, NaNs
// included (0x7e00 with the sign, as the CUDA Cast kernel writes them). Uses AVX-512F or F16C where the CPU has them; stores bypass the cache
// (the copy engine reads y next, not this core), fenced before returning.
void convert_f32_to_f16(const float* x, uint16_t* y, size_t n);

// Which path convert_f32_to_f16 takes on this CPU: "avx512f", "f16c" or "scalar".
const char* convert_f32_to_f16_isa();
// The same through one named path (tests); false when this CPU lacks it or the name is unknown.
bool convert_f32_to_f16_using(const char* isa, const float* x, uint16_t* y, size_t n);

// memcpy with streaming stores (AVX-512F or AVX where the CPU has them, else memcpy), fenced before returning.
void copy_streaming(void* dst, const void* src, size_t bytes);

}  // namespace kiln
