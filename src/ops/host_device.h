// KILN_HOST_DEVICE marks the small inline formulas (ops/elementwise.h, ops/cast.h) that CUDA kernels share
// with the references and the CPU kernels, so every backend computes one definition of each.
#pragma once

#if defined(__CUDACC__)
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif
