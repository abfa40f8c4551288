// Elementwise op kinds shared by the op definitions (binary.cpp, unary.cpp) and the CPU and CUDA kernels,
// so the reference and the kernels agree on one definition of each formula (the float32 CPU kernels swap
// in vectorizable exp/tanh approximations, see backends/cpu/vec_math.h).
#pragma once
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include "ir/graph.h"
#include "kiln/status.h"
#include "ops/host_device.h"

namespace kiln {

enum class BinaryOp { kAdd, kSub, kMul, kDiv };
enum class UnaryOp { kRelu, kLeakyRelu, kSigmoid, kTanh };

// From op_type; error for anything else.
Result<BinaryOp> binary_op_from_type(const std::string& op_type);
Result<UnaryOp> unary_op_from_type(const std::string& op_type);

// LeakyRelu's alpha (0.01 default); 0 for the other unary ops.
Result<float> unary_alpha(const Node& node);

// Integer division truncates toward zero like ONNX/C. Division by zero yields 0 and INT_MIN / -1 wraps,
// where ONNX leaves the result undefined, so that a kernel never traps.
template <class T>
KILN_HOST_DEVICE inline T int_div(T a, T b) {
  if (b == 0) return 0;
  if (b == -1) return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(a));
  return a / b;
}

// Integer add/sub/mul wrap (two's complement) instead of overflowing, which C++ leaves undefined.
template <BinaryOp Op, class T>
KILN_HOST_DEVICE inline T apply_binary(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = std::make_unsigned_t<T>;
    if constexpr (Op == BinaryOp::kAdd) return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
    else if constexpr (Op == BinaryOp::kSub) return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
    else if constexpr (Op == BinaryOp::kMul) return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
    else return int_div(a, b);
  } else {
    if constexpr (Op == BinaryOp::kAdd) return a + b;
    else if constexpr (Op == BinaryOp::kSub) return a - b;
    else if constexpr (Op == BinaryOp::kMul) return a * b;
    else return a / b;
  }
}

template <UnaryOp Op, class T>
KILN_HOST_DEVICE inline T apply_unary(T x, T alpha) {
  if constexpr (Op == UnaryOp::kRelu) return x > T(0) ? x : T(0);
  else if constexpr (Op == UnaryOp::kLeakyRelu) return x >= T(0) ? x : alpha * x;
  else if constexpr (Op == UnaryOp::kSigmoid) return T(1) / (T(1) + std::exp(-x));
  else return std::tanh(x);
}

}  // namespace kiln
