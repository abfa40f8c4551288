// Kiln's C++ API end to end: build an engine from an ONNX model, save it, load it back with the
// Runtime, inspect its IO tensors, and run it twice: once with caller-owned buffers
// (set_input_shape + set_tensor_address + execute, the zero-allocation hot path) and once with the
// one-call infer(). Both must agree.
//
//   infer_mlp MODEL.onnx ENGINE_OUT [INPUT.bin]
//
// INPUT.bin holds preprocessed float32 images [N,1,28,28] (e.g. tests/fixtures/mlp_first64_input.bin);
// the first 4 are used. Without it a fixed synthetic pattern is fed.
#include <kiln/kiln.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {

constexpr int64_t kBatch = 4;

int fail(const char* what, const kiln::Status& status) {
  std::fprintf(stderr, "infer_mlp: %s: %s\n", what, status.to_string().c_str());
  return 1;
}

const char* mode_name(kiln::TensorIOMode mode) {
  switch (mode) {
    case kiln::TensorIOMode::kInput: return "input";
    case kiln::TensorIOMode::kOutput: return "output";
    default: return "none";
  }
}

// Index of the largest value in each row of a [rows, cols] matrix.
std::vector<int> argmax_rows(const float* data, int64_t rows, int64_t cols) {
  std::vector<int> out;
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = data + r * cols;
    out.push_back(static_cast<int>(std::max_element(row, row + cols) - row));
  }
  return out;
}

void print_argmax(const char* label, const std::vector<int>& classes) {
  std::printf("%s argmax:", label);
  for (int c : classes) std::printf(" %d", c);
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL.onnx ENGINE_OUT [INPUT.bin]\n", argv[0]);
    return 2;
  }
  const std::string onnx_path = argv[1], engine_path = argv[2];
  std::printf("kiln %s\n", kiln::version());

  // 1. Build: the batch dim is dynamic; give it a profile so the engine accepts 1..64.
  kiln::BuilderConfig config;
  config.profiles["input"] = {{1, 1, 28, 28}, {kBatch, 1, 28, 28}, {64, 1, 28, 28}};
  auto built = kiln::build_engine_from_file(onnx_path, config);
  if (!built.is_ok()) return fail("build", built.status());
  std::printf("built %d layers, %llu weight bytes in %.1f ms\n", built->summary.layers,
              static_cast<unsigned long long>(built->summary.weight_bytes), built->summary.build_ms);
  {
    std::ofstream f(engine_path, std::ios::binary);
    f.write(reinterpret_cast<const char*>(built->engine.data()),
            static_cast<std::streamsize>(built->engine.size()));
    if (!f) return fail("save", kiln::Status(kiln::StatusCode::kIoError, "cannot write " + engine_path));
  }

  // 2. Load the engine file and list its IO tensors (-1 marks a dynamic dim).
  kiln::Runtime runtime;
  auto loaded = runtime.load_engine(engine_path);
  if (!loaded.is_ok()) return fail("load", loaded.status());
  std::shared_ptr<kiln::Engine> engine = *loaded;
  std::string input_name, output_name;
  for (int i = 0; i < engine->num_io_tensors(); ++i) {
    const std::string& name = engine->io_tensor_name(i);
    const kiln::TensorIOMode mode = engine->tensor_mode(name);
    std::printf("  %-6s %-8s %-8s %s\n", mode_name(mode), name.c_str(),
                std::string(kiln::dtype_name(engine->tensor_dtype(name))).c_str(),
                kiln::dims_to_string(engine->tensor_shape(name)).c_str());
    if (mode == kiln::TensorIOMode::kInput && input_name.empty()) input_name = name;
    if (mode == kiln::TensorIOMode::kOutput && output_name.empty()) output_name = name;
  }

  // 3. Input: 4 images from INPUT.bin, or a fixed pattern.
  const kiln::Dims input_shape = {kBatch, 1, 28, 28};
  std::vector<float> input(static_cast<size_t>(kiln::volume(input_shape)));
  if (argc > 3) {
    std::ifstream f(argv[3], std::ios::binary);
    f.read(reinterpret_cast<char*>(input.data()), static_cast<std::streamsize>(input.size() * sizeof(float)));
    if (!f) return fail("input", kiln::Status(kiln::StatusCode::kIoError, std::string("cannot read ") + argv[3]));
  } else {
    for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 37) % 255) / 255.0f - 0.5f;
  }

  // 4. The hot path: shapes and addresses are set once; execute() never allocates.
  auto created = engine->create_execution_context();
  if (!created.is_ok()) return fail("create_execution_context", created.status());
  std::unique_ptr<kiln::ExecutionContext> ctx = std::move(*created);
  if (auto s = ctx->set_input_shape(input_name, input_shape); !s.is_ok()) return fail("set_input_shape", s);
  auto output_shape = ctx->tensor_shape(output_name);
  if (!output_shape.is_ok()) return fail("tensor_shape", output_shape.status());
  std::vector<float> output(static_cast<size_t>(kiln::volume(*output_shape)));
  if (auto s = ctx->set_tensor_address(input_name, input.data()); !s.is_ok()) return fail("set_tensor_address", s);
  if (auto s = ctx->set_tensor_address(output_name, output.data()); !s.is_ok()) return fail("set_tensor_address", s);
  if (auto s = ctx->execute(); !s.is_ok()) return fail("execute", s);
  const int64_t classes = output_shape->back();
  const std::vector<int> by_execute = argmax_rows(output.data(), kBatch, classes);
  std::printf("%s shape %s\n", output_name.c_str(), kiln::dims_to_string(*output_shape).c_str());
  print_argmax("execute()", by_execute);

  // 5. The one-call path: infer() sets shapes from the inputs and returns owned outputs.
  auto results = ctx->infer({{input_name, kiln::HostTensor::from_floats(input_shape, input)}});
  if (!results.is_ok()) return fail("infer", results.status());
  const kiln::HostTensor& logits = results->at(output_name);
  const std::vector<int> by_infer = argmax_rows(logits.data<float>(), kBatch, classes);
  print_argmax("infer()  ", by_infer);

  if (by_infer != by_execute) {
    return fail("check", kiln::Status(kiln::StatusCode::kInternal, "execute() and infer() disagree"));
  }
  std::printf("ok\n");
  return 0;
}
