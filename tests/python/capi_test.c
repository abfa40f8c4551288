/* The C ABI used from C: version check, build the MLP, describe it, run batch 2, check errors, and the
 * GPU plumbing (a round trip through device memory when a GPU is present, KILN_UNSUPPORTED otherwise).
 *   kiln_capi_test MODEL.onnx */
#include <kiln/kiln_c.h>

#include <stdio.h>
#include <stddef.h>
#include <string.h>

static int failures = 0;
#define EXPECT(cond)                                                                  \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: EXPECT(%s) failed; last error: %s\n", __FILE__, __LINE__, \
              #cond, kiln_last_error());                                              \
      ++failures;                                                                     \
    }                                                                                 \
  } while (0)

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MODEL.onnx\n", argv[0]);
    return 2;
  }
  EXPECT(kiln_check_version(KILN_C_API_VERSION) == KILN_OK);
  EXPECT(kiln_check_version(KILN_C_API_VERSION + 1) == KILN_VERSION_MISMATCH);
  EXPECT(strstr(kiln_last_error(), "newer") != NULL);
  EXPECT(kiln_c_api_version() == KILN_C_API_VERSION);
  EXPECT(KILN_C_API_VERSION == 7);
  EXPECT(kiln_check_version(1) == KILN_OK); /* versions 2 and 3 only added functions and struct fields */

  const char* names[] = {"input"};
  const int ranks[] = {4};
  const int64_t mn[] = {1, 1, 28, 28}, opt[] = {2, 1, 28, 28}, mx[] = {4, 1, 28, 28};
  void* blob = NULL;
  size_t size = 0;
  EXPECT(kiln_build_engine_from_file(argv[1], NULL, 1, names, ranks, mn, opt, mx, &blob, &size) == KILN_OK);
  EXPECT(blob != NULL && size > 0);
  kiln_free(blob);
  kiln_build_options_t options;
  kiln_build_options_init(&options);
  EXPECT(options.struct_size == sizeof options && options.tf32 == 1 && options.fp16 == 0);
  options.num_profiles = 1;
  options.profile_names = names;
  options.profile_ranks = ranks;
  options.profile_min = mn;
  options.profile_opt = opt;
  options.profile_max = mx;
  options.fp16 = 1; /* the CPU backend runs FP32 */
  EXPECT(kiln_build_engine(argv[1], &options, &blob, &size) == KILN_UNSUPPORTED && blob == NULL);
  options.fp16 = 0;
  /* A version-2 caller's shorter struct still builds (the INT8 fields keep their defaults). */
  options.struct_size = offsetof(kiln_build_options_t, int8);
  options.int8 = 1; /* beyond the declared size: must be ignored (no calibration data would be an error) */
  EXPECT(kiln_build_engine(argv[1], &options, &blob, &size) == KILN_OK);
  kiln_free(blob);
  options.struct_size = sizeof options; /* INT8 with neither data nor cache: a clear error */
  EXPECT(kiln_build_engine(argv[1], &options, &blob, &size) != KILN_OK && strstr(kiln_last_error(), "calibData"));
  options.int8 = 0;
  EXPECT(kiln_build_engine(argv[1], &options, &blob, &size) == KILN_OK);
  EXPECT(blob != NULL && size > 0);

  kiln_runtime_t* rt = NULL;
  kiln_engine_t* engine = NULL;
  kiln_context_t* ctx = NULL;
  EXPECT(kiln_runtime_create(&rt) == KILN_OK);
  EXPECT(kiln_engine_deserialize(rt, blob, size, &engine) == KILN_OK);
  kiln_free(blob);
  kiln_engine_t* bad = NULL;
  EXPECT(kiln_engine_deserialize(rt, "junk", 4, &bad) != KILN_OK && bad == NULL && kiln_last_error()[0] != '\0');
  EXPECT(kiln_engine_load(rt, "/nonexistent/x.engine", &bad) != KILN_OK && bad == NULL);
  EXPECT(kiln_engine_deserialize(rt, NULL, 0, &bad) != KILN_OK);
  EXPECT(kiln_engine_load(NULL, "x", &bad) == KILN_INVALID_ARGUMENT);
  kiln_runtime_destroy(rt); /* engines outlive their runtime */
  if (!engine) return 1;

  EXPECT(kiln_engine_num_io_tensors(engine) == 2);
  EXPECT(strcmp(kiln_engine_tensor_name(engine, 0), "input") == 0);
  EXPECT(strcmp(kiln_engine_device(engine), "cpu") == 0 && kiln_engine_target(engine)[0] != '\0');
  EXPECT(kiln_engine_tensor_mode(engine, "input") == KILN_TENSOR_INPUT);
  EXPECT(kiln_engine_tensor_mode(engine, "logits") == KILN_TENSOR_OUTPUT);
  EXPECT(kiln_engine_tensor_dtype(engine, "logits") == 1);
  int64_t dims[8];
  int rank = 0;
  EXPECT(kiln_engine_tensor_shape(engine, "input", dims, 8, &rank) == KILN_OK && rank == 4 && dims[0] == -1);

  EXPECT(kiln_context_create(engine, &ctx) == KILN_OK);
  const int64_t in_shape[] = {2, 1, 28, 28};
  EXPECT(kiln_context_set_input_shape(ctx, "input", in_shape, 4) == KILN_OK);
  const int64_t too_big[] = {5, 1, 28, 28};
  EXPECT(kiln_context_set_input_shape(ctx, "input", too_big, 4) != KILN_OK);
  EXPECT(kiln_context_set_input_shape(ctx, "input", in_shape, 4) == KILN_OK);
  EXPECT(kiln_context_tensor_shape(ctx, "logits", dims, 8, &rank) == KILN_OK && rank == 2 && dims[0] == 2 &&
         dims[1] == 10);
  static float x[2 * 784], y[2 * 10];
  for (int i = 0; i < 2 * 784; ++i) x[i] = (float)((i * 37) % 255) / 255.0f - 0.5f;
  EXPECT(kiln_context_set_tensor_address(ctx, "input", x) == KILN_OK);
  EXPECT(kiln_context_set_tensor_address(ctx, "logits", y) == KILN_OK);
  EXPECT(kiln_context_set_num_threads(ctx, 1) == KILN_OK);
  EXPECT(kiln_context_execute(ctx) == KILN_OK);
  float first[20];
  memcpy(first, y, sizeof first);
  EXPECT(kiln_context_enqueue(ctx, NULL) == KILN_OK);
  EXPECT(memcmp(first, y, sizeof first) == 0);
  EXPECT(kiln_context_enqueue(ctx, (void*)1) == KILN_INVALID_ARGUMENT);
  EXPECT(kiln_context_set_cuda_graph(ctx, 1) == KILN_OK); /* no effect on CPU engines */
  EXPECT(kiln_context_enqueue(ctx, NULL) == KILN_OK);
  EXPECT(kiln_context_set_cuda_graph(NULL, 1) == KILN_INVALID_ARGUMENT);
  int f16_inputs = -1;
  EXPECT(kiln_context_host_io_f16_inputs(ctx, &f16_inputs) == KILN_OK);
  EXPECT(f16_inputs == 0); /* CPU engines never convert */
  EXPECT(kiln_context_host_io_f16_inputs(ctx, NULL) == KILN_INVALID_ARGUMENT);
  EXPECT(kiln_context_host_io_f16_inputs(NULL, &f16_inputs) == KILN_INVALID_ARGUMENT);

  /* GPU plumbing. */
  void* d = NULL;
  void* stream = NULL;
  printf("gpu: %s\n", kiln_gpu_describe_device());
  EXPECT(kiln_gpu_free(NULL) == KILN_OK);
  if (kiln_gpu_available()) {
    float back[20];
    EXPECT(kiln_gpu_malloc(sizeof first, &d) == KILN_OK && d != NULL);
    EXPECT(kiln_gpu_stream_create(&stream) == KILN_OK && stream != NULL);
    EXPECT(kiln_gpu_memcpy_htod_async(d, first, sizeof first, stream) == KILN_OK);
    EXPECT(kiln_gpu_memcpy_dtod_async(d, d, sizeof first, stream) == KILN_OK);
    EXPECT(kiln_gpu_memcpy_dtoh_async(back, d, sizeof back, stream) == KILN_OK);
    EXPECT(kiln_gpu_stream_synchronize(stream) == KILN_OK);
    EXPECT(memcmp(first, back, sizeof back) == 0);
    EXPECT(kiln_gpu_device_synchronize() == KILN_OK);
    EXPECT(kiln_gpu_stream_destroy(stream) == KILN_OK);
    EXPECT(kiln_gpu_free(d) == KILN_OK);
  } else {
    EXPECT(kiln_gpu_malloc(16, &d) == KILN_UNSUPPORTED && d == NULL);
    EXPECT(strstr(kiln_last_error(), "no usable") != NULL);
    EXPECT(kiln_gpu_stream_create(&stream) == KILN_UNSUPPORTED && stream == NULL);
    EXPECT(kiln_gpu_memcpy_htod_async(NULL, first, 4, NULL) == KILN_UNSUPPORTED);
    EXPECT(kiln_gpu_stream_synchronize(NULL) == KILN_UNSUPPORTED);
    EXPECT(kiln_gpu_device_synchronize() == KILN_UNSUPPORTED);
  }

  kiln_context_destroy(ctx);
  kiln_engine_destroy(engine);
  if (failures) return 1;
  printf("capi ok\n");
  return 0;
}
