"""GPU tests of the Python package: CUDA engines built with kiln.build(device="cuda"), the simple API, the
TensorRT-shaped API with kiln.cuda (the pycuda stand-in), PyTorch CUDA tensors bound without copies,
and the course's two TensorRT scripts run unchanged but for their imports.

Skipped without a usable GPU, unless KILN_TEST_CUDA=require (then that fails); KILN_TEST_CUDA=off skips.
ctest runs it as `python.gpu` (label gpu, KILN_TEST_CUDA=require), which CI excludes; the CPU-only
discovery of python.api imports it and skips it. By hand on a GPU machine:
    KILN_LIBRARY=build/src/libkiln.so PYTHONPATH=python python3 tests/python/test_gpu.py -v
"""
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import kiln
import kiln.cuda as cuda
import kiln.trt as trt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MLP = os.path.join(ROOT, "models", "mlp.onnx")
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
COURSE = os.path.join(ROOT, "tests", "python", "course")
MODE = os.environ.get("KILN_TEST_CUDA", "auto")
SHAPE1 = (1, 1, 28, 28)

_tmp = None
ENGINES = {}  # name -> path


def _profile(opt):
    return dict(min_shapes={"input": SHAPE1}, opt_shapes={"input": (opt, 1, 28, 28)},
                max_shapes={"input": (8192, 1, 28, 28)})


def setUpModule():
    global _tmp
    if MODE == "off":
        raise unittest.SkipTest("KILN_TEST_CUDA=off")
    if not cuda.is_available():
        if MODE == "require":
            raise RuntimeError(f"KILN_TEST_CUDA=require but no GPU can be used: {cuda.describe_device()}")
        raise unittest.SkipTest(cuda.describe_device())
    _tmp = tempfile.TemporaryDirectory()
    cache = os.path.join(_tmp.name, "timing.cache")
    # The course's engine files: batch 1 (tensorrt_infer.py) and batch 8192 (tensorrt_fp16_b8192.py).
    for name, opt, kw in (("mlp_fp16.engine", 1, {"fp16": True}), ("mlp_fp16_b8192.engine", 8192, {"fp16": True}),
                          ("mlp_tf32.engine", 64, {"tf32": True})):
        path = os.path.join(_tmp.name, name)
        kiln.build(MLP, device="cuda", save=path, timing_cache=cache, **_profile(opt), **kw)
        ENGINES[name] = path


def tearDownModule():
    if _tmp is not None:
        _tmp.cleanup()


# -- float64 reference of the MLP, from the ONNX initializers (a few lines of protobuf wire format, so that
#    the test needs neither onnx nor torch) --

def _varint(b, i):
    r = shift = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return r, i


def _fields(b):
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        wt = key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt in (1, 5):
            n = 8 if wt == 1 else 4
            v, i = b[i:i + n], i + n
        else:
            raise ValueError(f"protobuf wire type {wt}")
        yield key >> 3, wt, v


def float_initializers(path):
    """{name: float64 array} of an ONNX file's float initializers, in graph order."""
    with open(path, "rb") as f:
        model = f.read()
    graph = next(v for f, _, v in _fields(model) if f == 7)  # ModelProto.graph
    out = {}
    for f, _, t in _fields(graph):
        if f != 5:  # GraphProto.initializer
            continue
        dims, name, data = [], None, None
        for tf, wt, v in _fields(t):
            if tf == 1:  # TensorProto.dims, packed or not
                if wt == 0:
                    dims.append(v)
                else:
                    j = 0
                    while j < len(v):
                        d, j = _varint(v, j)
                        dims.append(d)
            elif tf == 8:
                name = v.decode()
            elif tf in (4, 9):  # float_data (packed) or raw_data
                data = np.frombuffer(v, dtype="<f4")
        out[name] = data.astype(np.float64).reshape(dims)
    return out


_WEIGHTS = None


def reference(x):
    """Flatten -> (Linear, ReLU) x2 -> Linear in float64."""
    global _WEIGHTS
    if _WEIGHTS is None:
        _WEIGHTS = float_initializers(MLP)
    mats = [v for v in _WEIGHTS.values() if v.ndim == 2]
    biases = [v for v in _WEIGHTS.values() if v.ndim == 1]
    h = x.astype(np.float64).reshape(len(x), -1)
    for i, (w, b) in enumerate(zip(mats, biases)):
        h = h @ (w.T if w.shape[1] == h.shape[1] else w) + b
        if i + 1 < len(mats):
            h = np.maximum(h, 0)
    return h


def rel_l2(y, ref):
    return float(np.linalg.norm(y.astype(np.float64) - ref) / np.linalg.norm(ref))


def first64():
    return np.fromfile(os.path.join(FIXTURES, "mlp_first64_input.bin"), dtype=np.float32).reshape(64, 1, 28, 28)


def random_input(batch, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 1, 28, 28)).astype(np.float32)


class SimpleApiTest(unittest.TestCase):
    def test_reference_matches_pytorch_logits(self):
        ref = np.fromfile(os.path.join(FIXTURES, "mlp_first64_logits.bin"), dtype=np.float32).reshape(64, 10)
        self.assertLess(rel_l2(ref, reference(first64())), 1e-5)

    def test_engines_describe_the_gpu(self):
        e = kiln.load(ENGINES["mlp_fp16.engine"])
        self.assertEqual(e.device, "cuda")
        self.assertIn("sm_", e.target)
        self.assertEqual(e.inputs[0].dtype, np.float32)  # FP16 layers, FP32 IO
        self.assertEqual(e.outputs[0].dtype, np.float32)

    def test_fp16_and_tf32_vs_float64(self):
        for name, tol in (("mlp_fp16.engine", 1e-2), ("mlp_fp16_b8192.engine", 1e-2), ("mlp_tf32.engine", 1e-3)):
            e = kiln.load(ENGINES[name])
            # Growing and shrinking batches reuse and grow infer()'s device buffers.
            for x in (first64(), random_input(1), random_input(8192, 1), random_input(3, 2)):
                with self.subTest(engine=name, batch=len(x)):
                    y = e.infer(x)["logits"]
                    self.assertEqual(y.shape, (len(x), 10))
                    self.assertLessEqual(rel_l2(y, reference(x)), tol)

    def test_errors(self):
        e = kiln.load(ENGINES["mlp_fp16.engine"])
        with self.assertRaises(TypeError):
            e.infer(np.zeros(SHAPE1, dtype=np.float64))
        with self.assertRaises(ValueError):
            e.infer(np.zeros((8193, 1, 28, 28), dtype=np.float32))
        y = e.infer(np.zeros(SHAPE1, dtype=np.float32))["logits"]  # still usable after errors
        self.assertLessEqual(rel_l2(y, reference(np.zeros(SHAPE1, np.float32))), 1e-2)


class HostMemoryTest(unittest.TestCase):
    """execute() on host memory (Kiln copies, chunked at large batches) and the low-latency mode."""

    def _bind(self, ctx, x, pinned):
        if pinned:
            xp = cuda.pagelocked_empty(x.shape, np.float32)
            xp[...] = x
            y = cuda.pagelocked_empty((len(x), 10), np.float32)
        else:
            xp, y = x, np.empty((len(x), 10), np.float32)
        y.fill(np.nan)  # poison
        ctx.set_input_shape("input", x.shape)
        ctx.set_tensor_address("input", xp.ctypes.data)
        ctx.set_tensor_address("logits", y.ctypes.data)
        return xp, y

    def test_execute_on_host_memory(self):
        e = kiln.load(ENGINES["mlp_fp16_b8192.engine"])
        ctx = e.create_execution_context()
        for pinned in (False, True):
            for b in (1, 777, 8192):
                with self.subTest(pinned=pinned, batch=b):
                    x = random_input(b, b + 11)
                    keep = self._bind(ctx, x, pinned)
                    ctx.execute()
                    self.assertLessEqual(rel_l2(keep[1], reference(x)), 1e-2)
                    # the FP16 engine's input is converted on the host from 1 MiB of input (pinned: >= 4 threads)
                    want = 1 if b * 784 * 4 >= 1 << 20 and (not pinned or min(os.cpu_count() // 2, 8) >= 4) else 0
                    self.assertEqual(ctx.host_io_f16_inputs, want)

    def test_low_latency(self):
        e = kiln.load(ENGINES["mlp_tf32.engine"])
        ctx = e.create_execution_context()
        x = random_input(1, 5)
        keep = self._bind(ctx, x, False)
        ctx.execute()  # the normal path first (loads every kernel before a resident one runs)
        ctx.set_low_latency(True, 4)
        for b in (1, 4, 1):
            x = random_input(b, 40 + b)
            keep = self._bind(ctx, x, b == 4)
            ctx.execute()
            self.assertLessEqual(rel_l2(keep[1], reference(x)), 1e-3)
        with self.assertRaises(kiln.KilnError):
            self._bind(ctx, random_input(5, 3), False)
            ctx.execute()  # more rows than it was started for
        # Device buffers in and out: the resident kernel reads and writes device memory itself.
        d_in, d_out = cuda.mem_alloc(4 * 784 * 4), cuda.mem_alloc(4 * 10 * 4)
        for b in (1, 4):
            x = random_input(b, 60 + b)
            y = np.full((b, 10), np.nan, np.float32)
            cuda.memcpy_htod(d_in, x)
            cuda.memcpy_htod(d_out, y)
            ctx.set_input_shape("input", x.shape)
            ctx.set_tensor_address("input", int(d_in))
            ctx.set_tensor_address("logits", int(d_out))
            ctx.execute()
            cuda.memcpy_dtoh(y, d_out)
            self.assertLessEqual(rel_l2(y, reference(x)), 1e-3)
        ctx.set_low_latency(False)
        del ctx, keep, d_in, d_out


    def test_engine_set_low_latency(self):
        # Engine.set_low_latency(): infer() on numpy at small batches through the resident kernel, larger
        # batches the standard way; each on a fresh random input against float64.
        e = kiln.load(ENGINES["mlp_fp16_b8192.engine"])
        e.set_low_latency()
        for b, want in ((1, True), (16, True), (17, False), (8192, False), (3, True)):
            with self.subTest(batch=b):
                x = random_input(b, 70 + b)
                y = e.infer(x)["logits"]
                self.assertEqual(e.last_infer_low_latency, want)
                self.assertEqual(y.shape, (b, 10))
                self.assertLessEqual(rel_l2(y, reference(x)), 1e-2)
        std = kiln.load(ENGINES["mlp_fp16_b8192.engine"])
        x = random_input(2, 99)
        self.assertLessEqual(rel_l2(e.infer(x)["logits"], std.infer(x)["logits"].astype(np.float64)), 1e-2)
        e.set_low_latency(False)
        e.infer(x)
        self.assertFalse(e.last_infer_low_latency)
        e.set_low_latency()
        with self.assertRaises(ValueError):  # a wrong shape is refused before the mode starts
            e.infer(np.zeros((1, 1, 28, 29), np.float32))
        e.infer(x)
        self.assertTrue(e.last_infer_low_latency)
        with self.assertRaises(ValueError):  # and by the low-latency context once it runs
            e.infer(np.zeros((1, 1, 28, 29), np.float32))


class KilnCudaTest(unittest.TestCase):
    def test_pagelocked_round_trip(self):
        x = random_input(3)
        h = cuda.pagelocked_empty(x.shape, np.float32)
        self.assertEqual((h.shape, h.dtype), (x.shape, np.dtype(np.float32)))
        h[...] = x
        d = cuda.mem_alloc(x.nbytes)
        out = cuda.pagelocked_empty(x.shape, np.float32)
        out.fill(np.nan)  # poison
        stream = cuda.Stream()
        cuda.memcpy_htod_async(d, h, stream)
        cuda.memcpy_dtoh_async(out, d, stream)
        stream.synchronize()
        np.testing.assert_array_equal(out, x)
        self.assertEqual(cuda.pagelocked_empty(5, np.int8).shape, (5,))
        del h, out  # frees the pinned memory (kiln_gpu_host_free) without error

    def test_round_trip(self):
        x = random_input(4)
        d = cuda.mem_alloc(x.nbytes)
        d2 = cuda.mem_alloc(x.nbytes)
        self.assertNotEqual(int(d), 0)
        self.assertEqual(int(d) % 256, 0)
        stream = cuda.Stream()
        self.assertIsInstance(stream.handle, int)
        self.assertNotEqual(stream.handle, 0)
        cuda.memcpy_htod_async(d, x, stream)
        cuda.memcpy_dtod_async(d2, d, x.nbytes, stream)
        y = np.empty_like(x)
        cuda.memcpy_dtoh_async(y, d2, stream)
        stream.synchronize()
        np.testing.assert_array_equal(x, y)
        z = np.empty_like(x)
        cuda.memcpy_htod(d, x[::-1].copy())
        cuda.memcpy_dtoh(z, d)
        cuda.Context.synchronize()
        np.testing.assert_array_equal(z, x[::-1])
        with self.assertRaises(ValueError):
            cuda.memcpy_htod_async(d, np.zeros(x.size + 1, np.float32), stream)  # larger than the allocation
        d.free()
        with self.assertRaises(ValueError):
            int(d)
        del d2  # freed by garbage collection

    def test_large_pageable_round_trip(self):
        """The course's batch-8192 input (25.7 MB of numpy) goes through Kiln's staging threads: byte-exact,
        the source reusable on return, the pageable destination filled on return."""
        x = random_input(8192)
        keep = x.copy()
        d = cuda.mem_alloc(x.nbytes)
        stream = cuda.Stream()
        cuda.memcpy_htod_async(d, x, stream)
        x.fill(np.nan)  # reusable once memcpy_htod_async returned
        y = np.full_like(keep, np.nan)
        cuda.memcpy_dtoh_async(y, d, stream)  # pageable: filled on return
        np.testing.assert_array_equal(y, keep)
        stream.synchronize()


class TrtApiTest(unittest.TestCase):
    """The course's runner, written against kiln.trt and kiln.cuda."""

    def run_course_runner(self, path, x, graph=False):
        with open(path, "rb") as f, trt.Runtime(trt.Logger(trt.Logger.ERROR)) as rt:
            engine = rt.deserialize_cuda_engine(f.read())
        ctx = engine.create_execution_context()
        self.assertTrue(ctx.set_input_shape("input", x.shape))
        out_shape = tuple(ctx.get_tensor_shape("logits"))
        out_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype("logits")))
        stream = cuda.Stream()
        d_in = cuda.mem_alloc(x.nbytes)
        d_out = cuda.mem_alloc(int(np.prod(out_shape)) * out_dtype.itemsize)
        self.assertTrue(ctx.set_tensor_address("input", int(d_in)))
        self.assertTrue(ctx.set_tensor_address("logits", d_out))  # a DeviceAllocation works as well
        if graph:
            self.assertTrue(ctx.set_cuda_graph(True))
        ys = []
        for _ in range(3):  # graph capture on the first run, replays after
            cuda.memcpy_htod_async(d_in, x, stream)
            self.assertTrue(ctx.execute_async_v3(stream.handle), trt.last_error())
            y = np.empty(out_shape, dtype=out_dtype)
            cuda.memcpy_dtoh_async(y, d_out, stream)
            stream.synchronize()
            ys.append(y)
        return ys

    def test_runner_matches_infer_and_reference(self):
        x = first64()
        for graph in (False, True):
            with self.subTest(cuda_graph=graph):
                ys = self.run_course_runner(ENGINES["mlp_fp16.engine"], x, graph)
                for y in ys:
                    self.assertLessEqual(rel_l2(y, reference(x)), 1e-2)
                    np.testing.assert_allclose(y, ys[0], rtol=1e-3, atol=1e-3)
                np.testing.assert_allclose(ys[0], kiln.load(ENGINES["mlp_fp16.engine"]).infer(x)["logits"],
                                           rtol=1e-3, atol=1e-3)

    def test_failures_are_reported(self):
        with open(ENGINES["mlp_fp16.engine"], "rb") as f:
            engine = trt.Runtime(None).deserialize_cuda_engine(f.read())
        ctx = engine.create_execution_context()
        self.assertFalse(ctx.set_input_shape("input", (8193, 1, 28, 28)))
        d = cuda.mem_alloc(64)
        self.assertFalse(ctx.set_tensor_address("input", int(d) + 4))  # not 16-byte aligned
        self.assertIn("aligned", trt.last_error())
        with self.assertRaises(TypeError):
            ctx.set_tensor_address("input", np.zeros(SHAPE1, np.float32))  # host memory


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


class TorchTest(unittest.TestCase):
    def setUp(self):
        self.torch = _torch_cuda()
        if self.torch is None:
            self.skipTest("PyTorch with CUDA is not installed")
        self.engine = kiln.load(ENGINES["mlp_fp16.engine"])

    def test_infer_binds_cuda_tensors(self):
        torch = self.torch
        x = first64()
        xt = torch.from_numpy(x).cuda()
        out = torch.full((64, 10), float("nan"), device="cuda")
        got = self.engine.infer({"input": xt}, outputs={"logits": out})
        self.assertIs(got["logits"], out)
        self.assertLessEqual(rel_l2(out.cpu().numpy(), reference(x)), 1e-2)
        # On a stream of PyTorch's, ordered after its own work there.
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            xt2 = xt * 2
            out2 = torch.empty((64, 10), device="cuda")
            self.engine.infer(xt2, outputs={"logits": out2}, stream=s)
        self.assertLessEqual(rel_l2(out2.cpu().numpy(), reference(2 * x)), 1e-2)

    def test_infer_checks_tensors(self):
        torch = self.torch
        xt = torch.zeros(SHAPE1, device="cuda")
        out = torch.empty((1, 10), device="cuda")
        with self.assertRaises(TypeError):
            self.engine.infer(xt)  # no outputs= to write into
        with self.assertRaises(TypeError):
            self.engine.infer(xt.half(), outputs={"logits": out})
        with self.assertRaises(ValueError):
            self.engine.infer(torch.zeros((1, 1, 56, 28), device="cuda")[:, :, ::2], outputs={"logits": out})
        with self.assertRaises(ValueError):
            self.engine.infer(xt, outputs={"logits": torch.empty((2, 10), device="cuda")})
        with self.assertRaises(TypeError):
            self.engine.infer(xt.cpu(), outputs={"logits": out})  # CPU tensor: only __dlpack__

    def test_trt_binds_cuda_tensors(self):
        torch = self.torch
        x = random_input(16)
        with open(ENGINES["mlp_fp16.engine"], "rb") as f:
            engine = trt.Runtime(None).deserialize_cuda_engine(f.read())
        ctx = engine.create_execution_context()
        xt, out = torch.from_numpy(x).cuda(), torch.empty((16, 10), device="cuda")
        self.assertTrue(ctx.set_input_shape("input", x.shape))
        self.assertTrue(ctx.set_tensor_address("input", xt))
        self.assertTrue(ctx.set_tensor_address("logits", out))
        self.assertTrue(ctx.execute_async_v3(torch.cuda.current_stream().cuda_stream), trt.last_error())
        torch.cuda.synchronize()
        self.assertLessEqual(rel_l2(out.cpu().numpy(), reference(x)), 1e-2)
        with self.assertRaises(TypeError):
            ctx.set_tensor_address("input", xt.double())
        with self.assertRaises(ValueError):
            ctx.set_tensor_address("logits", torch.empty((10, 16), device="cuda").t())


class CourseScriptsTest(unittest.TestCase):
    """tests/python/course/*.py: the course's scripts with only their imports changed, run as they are
    in a directory holding the engines they load."""

    def run_script(self, name):
        env = dict(os.environ, PYTHONIOENCODING="utf-8")
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(kiln.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        r = subprocess.run([sys.executable, os.path.join(COURSE, name)], cwd=_tmp.name, env=env,
                           capture_output=True, timeout=600)
        out = r.stdout.decode("utf-8", "replace")
        self.assertEqual(r.returncode, 0, f"{name} failed:\n{out}\n{r.stderr.decode('utf-8', 'replace')}")
        print(f"\n--- {name}\n{out}", end="", file=sys.stderr)
        return out

    def test_tensorrt_infer(self):
        out = self.run_script("tensorrt_infer.py")
        self.assertIn("out shape: (1, 10)", out)
        self.assertIn("out[0][:10]:", out)
        self.assertIn("平均延迟", out)
        self.assertIn("(batch=1)", out)

    def test_tensorrt_fp16_b8192(self):
        out = self.run_script("tensorrt_fp16_b8192.py")
        self.assertIn("[TensorRT FP16] batch=8192", out)
        self.assertIn("平均延迟", out)
        self.assertIn("samples/s", out)


if __name__ == "__main__":
    unittest.main()
