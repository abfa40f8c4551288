"""Tests of the Python package `kiln` (ctypes over the C ABI) on the course MLP.

Run by ctest (label "python") with KILN_LIBRARY set to the built libkiln and, when the CLI is built,
KILN_CLI set to the `kiln` executable; or by hand:
    KILN_LIBRARY=build/src/libkiln.so PYTHONPATH=python python3 -m unittest discover -s tests/python
"""
import ctypes
import json
import os
import subprocess
import tempfile
import unittest

import numpy as np

import kiln
import kiln.cuda as cuda
import kiln.cuda.autoinit  # noqa: F401  (a no-op, importable everywhere)
import kiln.trt as trt
from kiln import _capi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MLP = os.path.join(ROOT, "models", "mlp.onnx")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
COURSE = os.path.join(ROOT, "tests", "python", "course")
SHAPE = (1, 1, 28, 28)


def first64():
    x = np.fromfile(os.path.join(FIXTURES, "mlp_first64_input.bin"), dtype=np.float32).reshape(64, 1, 28, 28)
    y = np.fromfile(os.path.join(FIXTURES, "mlp_first64_logits.bin"), dtype=np.float32).reshape(64, 10)
    return x, y


class TrtRunner:
    """The course's tensorrt_infer.py runner logic with host buffers instead of pycuda."""

    def __init__(self, engine_path, input_shape):
        self.input_shape = tuple(input_shape)
        with open(engine_path, "rb") as f, trt.Runtime(trt.Logger(trt.Logger.ERROR)) as rt:
            self.engine = rt.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("Failed to deserialize engine")
        self.ctx = self.engine.create_execution_context()
        inputs, outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        assert len(inputs) == 1 and len(outputs) == 1, f"IO not 1/1: {inputs}, {outputs}"
        self.in_name, self.out_name = inputs[0], outputs[0]
        assert self.ctx.set_input_shape(self.in_name, self.input_shape)
        self.out_shape = tuple(self.ctx.get_tensor_shape(self.out_name))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out_name)))
        self.h_in = np.empty(self.input_shape, dtype=np.float32)
        self.h_out = np.empty(self.out_shape, dtype=self.out_dtype)
        self.ctx.set_tensor_address(self.in_name, self.h_in.ctypes.data)
        self.ctx.set_tensor_address(self.out_name, self.h_out.ctypes.data)

    def infer_once(self, x_np):
        self.h_in[...] = x_np
        if not self.ctx.execute_async_v3(0):
            raise RuntimeError("Kiln execution failed: " + trt.last_error())
        return self.h_out.copy()


class MlpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.engine_path = os.path.join(cls.tmp.name, "mlp.engine")
        cls.engine = kiln.build(MLP, min_shapes={"input": (1, 1, 28, 28)}, opt_shapes={"input": (8, 1, 28, 28)},
                                max_shapes={"input": (64, 1, 28, 28)}, save=cls.engine_path)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def test_engine_description(self):
        e = kiln.load(self.engine_path)
        self.assertEqual([i.name for i in e.inputs], ["input"])
        self.assertEqual([o.name for o in e.outputs], ["logits"])
        self.assertEqual(e.inputs[0].dtype, np.float32)
        self.assertEqual(e.inputs[0].shape, (-1, 1, 28, 28))
        self.assertEqual(e.outputs[0].shape, (-1, 10))
        self.assertEqual(e.profile_shape("input"), ((1, 1, 28, 28), (8, 1, 28, 28), (64, 1, 28, 28)))
        self.assertEqual(e.device, "cpu")
        self.assertIsInstance(e.metadata, dict)

    def test_infer_matches_pytorch_logits(self):
        x, ref = first64()
        y = self.engine.infer({"input": x})
        self.assertEqual(list(y), ["logits"])
        self.assertEqual(y["logits"].shape, (64, 10))
        np.testing.assert_allclose(y["logits"], ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(y["logits"].argmax(1), ref.argmax(1))
        # A single array is accepted when there is one input; results are bit-identical.
        np.testing.assert_array_equal(self.engine.infer(x)["logits"], y["logits"])

    def test_infer_matches_cli_bit_for_bit(self):
        # The C++ side of the comparison: `kiln run` binds host buffers through the C++ API
        # (set_input_shape/set_tensor_address/execute) and exports the outputs as JSON. nlohmann
        # prints doubles round-trip exactly, so the float32 values survive bit for bit.
        cli = os.environ.get("KILN_CLI")
        if not cli or not os.path.exists(cli):
            self.skipTest("KILN_CLI not set (the kiln CLI is not built)")
        x, _ = first64()
        x = np.ascontiguousarray(x[:8])
        inp = os.path.join(self.tmp.name, "in8.bin")
        out = os.path.join(self.tmp.name, "out8.json")
        x.tofile(inp)
        subprocess.run([cli, "run", "--loadEngine", self.engine_path, "--shapes", "input:8x1x28x28",
                        "--loadInputs", f"input:{inp}", "--exportOutput", out, "--iterations", "1",
                        "--warmUp", "0", "--duration", "0"], check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            doc = json.load(f)
        ref = np.array(doc[0]["values"], dtype=np.float32).reshape(8, 10)
        y = kiln.load(self.engine_path).infer(x)["logits"]
        np.testing.assert_array_equal(y.view(np.uint32), ref.view(np.uint32))

    def test_trt_runner_matches_infer(self):
        x, _ = first64()
        for batch in (1, 8):
            xb = np.ascontiguousarray(x[:batch])
            runner = TrtRunner(self.engine_path, xb.shape)
            self.assertEqual(runner.out_shape, (batch, 10))
            self.assertEqual(runner.out_dtype, np.float32)
            y = runner.infer_once(xb)
            np.testing.assert_array_equal(y, self.engine.infer(xb)["logits"])

    def test_trt_api_details(self):
        with open(self.engine_path, "rb") as f:
            engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(f.read())
        self.assertEqual(engine.num_io_tensors, 2)
        self.assertEqual(engine.get_tensor_mode("input"), trt.TensorIOMode.INPUT)
        self.assertEqual(engine.get_tensor_mode("logits"), trt.TensorIOMode.OUTPUT)
        self.assertEqual(engine.get_tensor_dtype("logits"), trt.DataType.FLOAT)
        self.assertIs(trt.nptype(trt.DataType.FLOAT), np.float32)
        ctx = engine.create_execution_context()
        self.assertTrue(ctx.set_input_shape("input", SHAPE))
        self.assertFalse(ctx.set_input_shape("input", (65, 1, 28, 28)))  # outside the profile
        self.assertTrue(trt.last_error())
        self.assertFalse(ctx.execute_async_v3(12345))  # CPU engines need stream 0
        self.assertIn("stream", trt.last_error())

    def test_wrong_dtype(self):
        with self.assertRaises(TypeError):
            self.engine.infer(np.zeros(SHAPE, dtype=np.float64))
        with self.assertRaises(TypeError):
            self.engine.infer([[0.0]])

    def test_wrong_shape(self):
        with self.assertRaises(ValueError):
            self.engine.infer(np.zeros((1, 784), dtype=np.float32))  # wrong rank
        with self.assertRaises(ValueError) as cm:
            self.engine.infer(np.zeros((65, 1, 28, 28), dtype=np.float32))  # outside the profile
        self.assertIsInstance(cm.exception, kiln.KilnError)
        self.assertIn("input", str(cm.exception))
        with self.assertRaises(ValueError):
            self.engine.infer({"nope": np.zeros(SHAPE, dtype=np.float32)})

    def test_infer_follows_shape_changes(self):
        # infer() sets shapes only when they change: every batch, in any order and after a refused shape,
        # gives the bits of a fresh engine's first call at that batch (kernels may differ between batches).
        x, _ = first64()
        eng = kiln.load(self.engine_path)
        for batch in (1, 1, 7, 64, 1, 7):
            xb = np.ascontiguousarray(x[:batch])
            y = eng.infer(xb)["logits"]
            self.assertEqual(y.shape, (batch, 10))
            np.testing.assert_array_equal(y, kiln.load(self.engine_path).infer(xb)["logits"])
            if batch == 64:
                with self.assertRaises(ValueError):
                    eng.infer(np.zeros((65, 1, 28, 28), dtype=np.float32))
        self.assertEqual(len(eng.inputs), 1)
        eng.inputs.clear()  # callers get a copy of the engine's list
        self.assertEqual(len(eng.inputs), 1)

    def test_low_latency_needs_a_cuda_engine(self):
        with self.assertRaises(TypeError):
            self.engine.set_low_latency()
        self.engine.set_low_latency(False)  # off is always fine
        self.engine.infer(first64()[0][:1])
        self.assertFalse(self.engine.last_infer_low_latency)

    def test_non_contiguous(self):
        x = np.zeros((2, 1, 28, 56), dtype=np.float32)[..., ::2]
        with self.assertRaises(ValueError):
            self.engine.infer(x)

    def test_missing_file(self):
        with self.assertRaises(kiln.KilnError) as cm:
            kiln.load(os.path.join(self.tmp.name, "does_not_exist.engine"))
        self.assertIn("does_not_exist.engine", str(cm.exception))
        with self.assertRaises(kiln.KilnError):
            kiln.build(os.path.join(self.tmp.name, "missing.onnx"))

    def test_corrupt_engine(self):
        with open(self.engine_path, "rb") as f:
            data = bytearray(f.read())
        for bad in (b"", b"not an engine", bytes(data[: len(data) // 2])):
            with self.assertRaises(kiln.KilnError):
                kiln.deserialize(bad)
        data[len(data) // 2] ^= 0xFF
        with self.assertRaises(kiln.KilnError):
            kiln.deserialize(bytes(data))
        self.assertIsNone(trt.Runtime(None).deserialize_cuda_engine(b"garbage"))

    def test_int8_build_from_cache(self):
        cache = os.path.join(ROOT, "bench", "mlp_int8.cache")
        eng = kiln.build(MLP, int8=True, calib_cache=cache, min_shapes={"input": (1, 1, 28, 28)},
                         opt_shapes={"input": (64, 1, 28, 28)}, max_shapes={"input": (64, 1, 28, 28)})
        x, ref = first64()
        y = eng.infer({"input": x})["logits"]
        agree = (y.argmax(1) == ref.argmax(1)).mean()
        self.assertGreaterEqual(agree, 0.95)  # INT8 vs PyTorch FP32 on the first 64 test images
        with self.assertRaises(kiln.KilnError) as cm:
            kiln.build(MLP, int8=True)  # neither data nor cache
        self.assertIn("calibData", str(cm.exception))

    def test_bf16_build_on_cpu(self):
        prof = dict(min_shapes={"input": (1, 1, 28, 28)}, opt_shapes={"input": (64, 1, 28, 28)},
                    max_shapes={"input": (64, 1, 28, 28)})
        eng = kiln.build(MLP, bf16=True, **prof)
        x, ref = first64()
        y = eng.infer({"input": x})["logits"]
        y32 = kiln.build(MLP, **prof).infer({"input": x})["logits"]
        err = np.linalg.norm(y.astype(np.float64) - y32) / np.linalg.norm(y32)
        self.assertLess(err, 1e-2)   # bf16 operands, float32 accumulation
        self.assertGreater(err, 1e-5)  # and not the FP32 path
        self.assertGreaterEqual((y.argmax(1) == ref.argmax(1)).mean(), 0.95)
        with self.assertRaises(kiln.KilnError) as cm:
            kiln.build(MLP, bf16=True, device="cuda")
        self.assertIn("CPU backend only", str(cm.exception))

    def test_fp16_needs_cuda(self):
        with self.assertRaises(kiln.KilnError) as cm:
            kiln.build(MLP, fp16=True)
        self.assertIsInstance(cm.exception, NotImplementedError)
        self.assertIn("cuda", str(cm.exception).lower())

    def test_cuda_build_without_gpu(self):
        if cuda.is_available():
            self.skipTest("a GPU is present (test_gpu.py covers CUDA builds)")
        with self.assertRaises(kiln.KilnError):
            kiln.build(MLP, device="cuda", fp16=True)

    def test_version_check(self):
        self.assertEqual(kiln.c_api_version, _capi.C_API_VERSION)
        self.assertEqual(_capi.C_API_VERSION, 7)
        kiln.check_version(_capi.C_API_VERSION)
        kiln.check_version(1)  # versions 2 to 6 only added functions and appended struct fields
        with self.assertRaises(kiln.VersionMismatchError) as cm:
            kiln.check_version(_capi.C_API_VERSION + 1)
        self.assertIn("newer than the library", str(cm.exception))
        with self.assertRaises(kiln.VersionMismatchError):
            kiln.check_version(0)

    def test_c_abi_small_capacity_and_null(self):
        lib = _capi.lib
        dims = (ctypes.c_int64 * 1)()
        rank = ctypes.c_int()
        code = lib.kiln_engine_tensor_shape(self.engine._h, b"input", dims, 1, ctypes.byref(rank))
        self.assertEqual(code, 7)  # KILN_OUT_OF_RANGE
        self.assertEqual(rank.value, 4)
        self.assertEqual(lib.kiln_engine_load(None, b"x", None), 1)  # KILN_INVALID_ARGUMENT, no crash
        self.assertIsNone(lib.kiln_engine_tensor_name(self.engine._h, 99))

    def test_target_and_cuda_graph_on_cpu(self):
        self.assertTrue(self.engine.target)
        ctx = self.engine.create_execution_context()
        ctx.set_cuda_graph(True)  # no effect on CPU engines
        x = np.zeros(SHAPE, np.float32)
        y = np.empty((1, 10), np.float32)
        ctx.set_input_shape("input", SHAPE)
        ctx.set_tensor_address("input", x.ctypes.data)
        ctx.set_tensor_address("logits", y.ctypes.data)
        ctx.enqueue(None)
        np.testing.assert_array_equal(y, self.engine.infer(x)["logits"])
        self.assertEqual(ctx.host_io_f16_inputs, 0)  # CPU engines never convert on the host

    def test_device_tensors_need_a_cuda_engine(self):
        x = FakeDeviceArray(SHAPE)
        with self.assertRaises(TypeError) as cm:
            self.engine.infer(x, outputs={"logits": FakeDeviceArray((1, 10))})
        self.assertIn("CUDA engine", str(cm.exception))
        with self.assertRaises(TypeError) as cm:
            self.engine.infer(DlpackOnly())
        self.assertIn("__cuda_array_interface__", str(cm.exception))
        with open(self.engine_path, "rb") as f:
            ctx = trt.Runtime(None).deserialize_cuda_engine(f.read()).create_execution_context()
        with self.assertRaises(ValueError):
            ctx.set_tensor_address("input", x)
        with self.assertRaises(TypeError):
            ctx.set_tensor_address("input", object())


class FakeDeviceArray:
    """Describes (never dereferenced) device memory through __cuda_array_interface__, as CuPy and PyTorch
    do; the pointer is bogus, so only checks that fail before any copy may use it."""

    def __init__(self, shape, typestr="<f4", strides=None, ptr=0x7F0000000000):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "strides": strides,
                                         "data": (ptr, False), "version": 3}


class DlpackOnly:
    def __dlpack__(self, stream=None):
        raise AssertionError("not to be called")


class CudaModuleTest(unittest.TestCase):
    """kiln.cuda without a GPU (the CI machine): importable, clear errors, argument checks first."""

    def test_describe(self):
        self.assertIsInstance(cuda.is_available(), bool)
        self.assertTrue(cuda.describe_device())
        kiln.cuda.autoinit.context  # noqa: B018  (pycuda.autoinit's name exists)

    def test_calls_without_gpu_raise_kiln_error(self):
        if cuda.is_available():
            self.skipTest("a GPU is present")
        calls = [lambda: cuda.mem_alloc(16), lambda: cuda.pagelocked_empty((4,)), cuda.Stream, cuda.Context.synchronize,
                 lambda: cuda.memcpy_htod_async(0x1000, np.zeros(4, np.float32)),
                 lambda: cuda.memcpy_dtoh(np.zeros(4, np.float32), 0x1000)]
        for call in calls:
            with self.assertRaises(kiln.UnsupportedError) as cm:
                call()
            self.assertIn("no usable", str(cm.exception))
        self.assertEqual(_capi.lib.kiln_gpu_free(None), 0)

    def test_array_checks(self):
        dev = FakeDeviceArray((4,))
        with self.assertRaises(TypeError):
            cuda.memcpy_htod_async(dev, [1.0, 2.0])  # not a numpy array
        with self.assertRaises(ValueError):
            cuda.memcpy_htod_async(dev, np.zeros(8, np.float32)[::2])  # not contiguous
        with self.assertRaises(ValueError):
            cuda.memcpy_htod_async(dev, np.zeros(5, np.float32))  # 20 bytes into 16
        with self.assertRaises(ValueError):
            cuda.memcpy_dtoh_async(np.zeros(5, np.float32), dev)
        ro = np.zeros(4, np.float32)
        ro.flags.writeable = False
        with self.assertRaises(ValueError):
            cuda.memcpy_dtoh_async(ro, dev)
        with self.assertRaises(TypeError):
            cuda.memcpy_htod_async(np.zeros(4, np.float32), np.zeros(4, np.float32))  # host as device
        with self.assertRaises(TypeError):
            cuda.memcpy_htod_async("0x1000", np.zeros(4, np.float32))
        with self.assertRaises(TypeError):
            cuda.memcpy_htod_async(dev, np.zeros(4, np.float32), stream="default")

    def test_cuda_array_interface_parsing(self):
        a = cuda.cuda_array(FakeDeviceArray((2, 3)))
        self.assertEqual((a.shape, a.dtype, a.c_contiguous, a.nbytes), ((2, 3), np.float32, True, 24))
        self.assertTrue(cuda.cuda_array(FakeDeviceArray((2, 3), strides=(12, 4))).c_contiguous)
        self.assertTrue(cuda.cuda_array(FakeDeviceArray((1, 3), strides=(999, 4))).c_contiguous)
        transposed = FakeDeviceArray((3, 2), strides=(4, 12))
        self.assertFalse(cuda.cuda_array(transposed).c_contiguous)
        with self.assertRaises(ValueError):
            cuda.device_pointer(transposed)
        self.assertEqual(cuda.device_pointer(FakeDeviceArray((2,), ptr=4096)), 4096)
        self.assertIsNone(cuda.cuda_array(np.zeros(3)))
        self.assertEqual(cuda.stream_handle(None), 0)
        self.assertEqual(cuda.stream_handle(7), 7)


class CourseCopiesTest(unittest.TestCase):
    """tests/python/course/*.py are the course's scripts (kept verbatim in course/original/) with only
    their imports switched to kiln; test_gpu.py runs them."""

    def test_only_imports_differ(self):
        for name in ("tensorrt_infer.py", "tensorrt_fp16_b8192.py"):
            with open(os.path.join(COURSE, "original", name), encoding="utf-8") as f:
                original = f.read().splitlines()
            with open(os.path.join(COURSE, name), encoding="utf-8") as f:
                ours = f.read().splitlines()
            self.assertEqual(len(ours), len(original), name)
            changed = [(a, b) for a, b in zip(original, ours) if a != b]
            self.assertEqual(len(changed), 3, name)  # tensorrt, pycuda.driver, pycuda.autoinit
            for a, b in changed:
                self.assertTrue(a.startswith("import ") and b.startswith("import "), (name, a, b))
                self.assertTrue("tensorrt" in a or "pycuda" in a, (name, a))
                self.assertNotIn("tensorrt", b.split("#")[0])
                self.assertNotIn("pycuda", b)
                self.assertIn("kiln.", b)


if __name__ == "__main__":
    unittest.main()
