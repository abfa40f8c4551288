// Precision for GPU engines, with TensorRT 10's meanings: FP32 layers, with TF32 tensor cores allowed
// unless turned off; --fp16 runs every floating-point layer in FP16 (weights converted at build time,
// FP32 accumulation in GEMMs); engine IO stays FP32 unless IO formats say FP16, with Cast layers at the
// boundary where IO and layer precision differ.
#pragma once
#include "ir/graph.h"
#include "kiln/builder.h"

namespace kiln {

// Before shape annotation: converts FP32 constants and Cast targets to FP16 (when config.fp16), sets the
// IO dtypes from the IO formats and inserts input Casts. Call fix_output_precision after dtypes have
// been propagated.
Status apply_precision(Graph& g, const BuilderConfig& config);
// After shape annotation: inserts output Casts where a graph output's dtype differs from its IO format,
// and labels every node's precision ("fp16", "tf32" or "fp32"). Returns true in *changed when Casts
// were added (shapes must be annotated again).
Status fix_output_precision(Graph& g, const BuilderConfig& config, bool* changed);

// CPU engines built with bf16: labels every float kiln.FusedMLP layer "bf16" (its CPU kernel then computes in
// BF16); other layers keep their precision. Returns how many were labelled.
int mark_cpu_bf16_layers(Graph& g);

// CPU build with TF32 allowed (the default, as TensorRT's): labels every float32 kiln.FusedMLP "tf32", which lets
// its kernel trade float32's last bits for speed (split BF16 where forced, backends/cpu/fused_mlp.cpp). Returns how
// many. Other CPU kernels compute float32 whatever the label, so only FusedMLP is marked.
int mark_cpu_tf32_layers(Graph& g);

}  // namespace kiln
