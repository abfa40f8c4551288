#!/usr/bin/env python3
"""Kiln beside its peers on models/mlp.onnx, the course's way first (issue 7, first cut).

    python3 bench/compare.py [--quick] [--out DIR] [--commit TEXT] [--model models/mlp.onnx]

Run on the GPU machine from the bundle scripts/gpu-test.sh makes (scripts/remote-gpu.sh, step "compare",
sets LD_LIBRARY_PATH, KILN_LIBRARY and PYTHONPATH). Writes to --out (default ./out):
<date>-<gpu tag>-compare.md (the course's two tables, then the extended one), <date>-<gpu tag>-compare.json
(every number) and <date>-<gpu tag>-compare.png (batch-8192 samples/s per system; needs matplotlib).

1. The course's method: np.random.seed(123), randn float32 input, batch 1 with 100 warm-up / 1000 timed
   iterations, batch 8192 with 5 / 20; mean latency = (t1 - t0) / ITERS around the whole loop, as the course's
   scripts compute it (plus median and p99 of the same iterations, one perf_counter reading after each).
   ONNX Runtime runs in a child process started with OMP_NUM_THREADS=MKL_NUM_THREADS=1 (set before
   onnxruntime is imported), as the course's scripts set them. Kiln FP16 runs through kiln.trt + kiln.cuda
   exactly as the course's TensorRT scripts do (pageable numpy, memcpy_htod_async, execute_async_v3,
   memcpy_dtoh_async, stream.synchronize per iteration), and through engine.infer ("simple API").
2. Extended (subset): ORT CPU all threads, PyTorch eager FP32/FP16 end to end from pageable numpy, PyTorch
   CUDA graph FP32/FP16 device-resident, Kiln CUDA FP16/TF32/INT8 device-resident with and without CUDA
   graph, Kiln CPU FP32/INT8 on one and all threads (INT8 scales from bench/mlp_int8.cache), and the copy limits (pageable and pinned H2D of the batch-8192 input, D2H of its output). Every row:
   median and p99 over many iterations, each timed with perf_counter around a synchronize (the `timer`
   column says so).
3. Accuracy: top-1 on the Fashion-MNIST test set (KILN_FASHION_MNIST or Debian's dataset) for every Kiln
   precision on CPU and CUDA and for the PyTorch model, with argmax agreement against Kiln CPU FP32.
Every system is wrapped: a missing peer or a failure is reported in its row with the reason, never dropped.
"""
import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

COURSE_HW = "from the course, other hardware (RTX 2080 Ti)"
# The course's own tables (seed text, day 4): batch 1 has latency only.
COURSE = {
    1: [("ORT CPU", 0.012, None, "OMP/MKL=1"), ("ORT CUDA EP", 0.050, None, "end to end (H2D/D2H)"),
        ("TensorRT FP16", 0.040, None, "FP16 engine, end to end")],
    8192: [("ORT CPU", 2.915, 2810563, "OMP/MKL=1"), ("ORT CUDA EP", 2.368, 3459472, "onnxruntime-gpu"),
           ("TensorRT FP16", 2.260, 3624212, "mlp_fp16_b8192.engine")],
}
COURSE_PLAN = {1: (100, 1000), 8192: (5, 20)}  # (warm-up, iterations), the course's
INT8_CACHE = os.path.join(HERE, "mlp_int8.cache")  # percentile 99.99 over 2048 Fashion-MNIST training images
FASHION_MNIST = os.environ.get("KILN_FASHION_MNIST", "/usr/share/datasets/fashion-mnist")


# ---------------------------------------------------------------- timing

def percentile(sorted_vals, p):
    # Same rule as trtexec, kiln and bench/ort_cpu.py.
    n = len(sorted_vals)
    i = max(0, min(n - 1, int(n * p / 100.0 + 0.5) - 1))
    return sorted_vals[i]


def time_loop(fn, warmup, iters, batch, final_sync=None):
    """The course's loop: warm-up, then t0, iterations, t1; mean = (t1 - t0) / iters. One perf_counter reading
    after each iteration gives the per-iteration times for median and p99."""
    for _ in range(warmup):
        fn()
    ts = [0.0] * iters
    pc = time.perf_counter
    t0 = pc()
    for i in range(iters):
        fn()
        ts[i] = pc()
    if final_sync is not None:
        final_sync()
    t1 = pc()
    per = sorted((ts[i] - (ts[i - 1] if i else t0)) * 1e3 for i in range(iters))
    n = len(per)
    median = per[n // 2] if n % 2 else 0.5 * (per[n // 2 - 1] + per[n // 2])
    mean = (t1 - t0) * 1e3 / iters
    return {"batch": batch, "warmup": warmup, "iters": iters, "mean_ms": mean, "median_ms": median,
            "p99_ms": percentile(per, 99), "min_ms": per[0], "max_ms": per[-1],
            "samples_per_s": batch * 1e3 / mean, "samples_per_s_median": batch * 1e3 / median}


def make_input(batch):
    import numpy as np
    np.random.seed(123)
    return np.random.randn(batch, 1, 28, 28).astype(np.float32)


def short_error(e):
    msg = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return msg[:300]


# ---------------------------------------------------------------- ONNX Runtime (child process)

def ort_child(args):
    """Runs in a child whose environment already has OMP/MKL_NUM_THREADS when --threads 1. Prints one JSON
    line: {"rows": [...], "version": ..., "providers": ...}."""
    out = {"rows": []}
    try:
        import numpy as np
        import onnxruntime as ort
    except Exception as e:  # noqa: BLE001
        print(json.dumps({"error": f"onnxruntime not importable: {short_error(e)}"}))
        return
    out["version"] = ort.__version__
    out["available_providers"] = ort.get_available_providers()
    out["env"] = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    plan = json.loads(args.child_plan)
    for provider in args.child_providers.split(","):
        for batch_s, (warm, iters) in plan.items():
            batch = int(batch_s)
            row = {"provider": provider, "batch": batch, "threads": args.child_threads}
            try:
                if provider not in ort.get_available_providers():
                    row["unavailable"] = f"onnxruntime {ort.__version__} has no {provider} on this machine"
                    out["rows"].append(row)
                    continue
                so = ort.SessionOptions()
                if args.child_threads > 0:
                    so.intra_op_num_threads = args.child_threads
                # threads 0 = ORT's default (every core), as a user who sets nothing gets
                sess = ort.InferenceSession(args.model, sess_options=so, providers=[provider])
                name = sess.get_inputs()[0].name
                x = make_input(batch)
                y = sess.run(None, {name: x})[0]
                if y.shape != (batch, 10) or not np.all(np.isfinite(y)):
                    raise RuntimeError(f"bad output {y.shape}")
                row.update(time_loop(lambda: sess.run(None, {name: x}), warm, iters, batch))
                row["session_providers"] = sess.get_providers()
            except Exception as e:  # noqa: BLE001
                row["error"] = short_error(e)
            out["rows"].append(row)
    print(json.dumps(out))


def run_ort(model, threads, providers, plan, timeout):
    env = dict(os.environ)
    if threads == 1:
        env["OMP_NUM_THREADS"] = "1"
        env["MKL_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)
        env.pop("MKL_NUM_THREADS", None)
    cmd = [sys.executable, os.path.abspath(__file__), "--child-ort", "--model", model, "--child-threads",
           str(threads), "--child-providers", ",".join(providers), "--child-plan", json.dumps(plan)]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"ORT child timed out after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": f"ORT child exit {p.returncode}: {p.stderr.strip()[-300:]}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------- Kiln

class KilnCtx:
    """Imports kiln lazily; .error says why it cannot run CUDA engines."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.error = None
        self.engines = {}
        try:
            try:
                import kiln
            except ImportError:  # not on PYTHONPATH: the repository's own python/kiln
                sys.path.insert(0, os.path.join(ROOT, "python"))
                import kiln
            import kiln.cuda
            self.kiln = kiln
            self.version = kiln.__version__
            if not kiln.cuda.is_available():
                self.error = f"kiln {kiln.__version__}: no CUDA: {kiln.cuda.describe_device()}"
            else:
                self.device = kiln.cuda.describe_device()
        except Exception as e:  # noqa: BLE001
            self.error = f"kiln not importable: {short_error(e)}"
            self.version = None

    def engine_file(self, model, precision, mn, opt, mx, device="cuda"):
        """Builds (once) an engine with profile batch mn/opt/mx; returns (path, build seconds). precision:
        fp32, tf32, fp16 or int8 (scales from bench/mlp_int8.cache, a TensorRT-format calibration cache)."""
        key = (precision, mn, opt, mx, device)
        if key not in self.engines:
            path = os.path.join(self.workdir, f"mlp_{device}_{precision}_{mn}_{opt}_{mx}.engine")
            shp = lambda b: {"input": (b, 1, 28, 28)}  # noqa: E731
            t0 = time.perf_counter()
            int8 = precision == "int8"
            self.kiln.build(model, device=device, fp16=(precision == "fp16"), tf32=(precision != "fp32"),
                            min_shapes=shp(mn), opt_shapes=shp(opt), max_shapes=shp(mx), save=path,
                            timing_cache=os.path.join(self.workdir, "timing.cache") if device == "cuda" else None,
                            int8=int8, calib_cache=INT8_CACHE if int8 else None)
            self.engines[key] = (path, time.perf_counter() - t0)
        return self.engines[key]


class TrtRunner:
    """The course's TrtRunner on kiln.trt + kiln.cuda (tests/python/course/original/tensorrt_infer.py)."""

    def __init__(self, engine_path, input_shape):
        import numpy as np
        import kiln.cuda as cuda
        import kiln.trt as trt
        self.np, self.cuda = np, cuda
        self.input_shape = tuple(input_shape)
        with open(engine_path, "rb") as f, trt.Runtime(trt.Logger(trt.Logger.WARNING)) as rt:
            self.engine = rt.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError("Failed to deserialize engine")
        self.ctx = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) != trt.TensorIOMode.INPUT]
        assert len(ins) == 1 and len(outs) == 1, f"IO not 1/1: {ins}, {outs}"
        self.in_name, self.out_name = ins[0], outs[0]
        self.ctx.set_input_shape(self.in_name, self.input_shape)
        self.out_shape = tuple(self.ctx.get_tensor_shape(self.out_name))
        self.out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.out_name)))
        self.stream = cuda.Stream()
        self.d_in = cuda.mem_alloc(int(np.prod(self.input_shape)) * 4)
        self.d_out = cuda.mem_alloc(int(np.prod(self.out_shape)) * self.out_dtype.itemsize)
        self.ctx.set_tensor_address(self.in_name, int(self.d_in))
        self.ctx.set_tensor_address(self.out_name, int(self.d_out))

    def infer_once(self, x_np):
        cuda = self.cuda
        cuda.memcpy_htod_async(self.d_in, x_np, self.stream)
        if not self.ctx.execute_async_v3(self.stream.handle):
            raise RuntimeError("execution failed")
        y = self.np.empty(self.out_shape, dtype=self.out_dtype)
        cuda.memcpy_dtoh_async(y, self.d_out, self.stream)
        self.stream.synchronize()
        return y

    def compute_once(self):
        """Device-resident: the engine only, input already on the device."""
        if not self.ctx.execute_async_v3(self.stream.handle):
            raise RuntimeError("execution failed")
        self.stream.synchronize()


# ---------------------------------------------------------------- PyTorch

def onnx_linears(model_path):
    """[(weight [out, in], bias)] of the MLP's three linear layers, from Gemm (transB) or MatMul+Add nodes in
    graph order."""
    import onnx
    from onnx import numpy_helper
    m = onnx.load(model_path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    linears, pending = [], None
    for node in m.graph.node:
        if node.op_type == "Gemm":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            w = inits[node.input[1]]
            if not attrs.get("transB", 0):
                w = w.T
            if attrs.get("transA", 0) or attrs.get("alpha", 1.0) != 1.0 or attrs.get("beta", 1.0) != 1.0:
                raise RuntimeError("Gemm with transA/alpha/beta not handled")
            b = inits[node.input[2]] if len(node.input) > 2 else None
            linears.append((w, b))
        elif node.op_type == "MatMul":
            pending = inits[node.input[1]].T
        elif node.op_type == "Add" and pending is not None:
            b = inits.get(node.input[1], inits.get(node.input[0]))
            linears.append((pending, b))
            pending = None
    if len(linears) != 3:
        raise RuntimeError(f"expected 3 linear layers in {model_path}, found {len(linears)}")
    return linears


def torch_mlp(model_path):
    """The MLP rebuilt in torch from the ONNX initializers: Flatten, Linear 784->256, ReLU, 256->128, ReLU,
    128->10."""
    import torch
    linears = onnx_linears(model_path)
    layers = [torch.nn.Flatten()]
    for i, (w, b) in enumerate(linears):
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.copy()))
            if b is not None:
                lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
        if i < 2:
            layers.append(torch.nn.ReLU())
    shapes = [tuple(w.shape[::-1]) for w, _ in linears]
    return torch.nn.Sequential(*layers).eval(), shapes


def torch_cuda_graph(model, static_input):
    """The model captured into a CUDA graph reading static_input (warmed up on a side stream first, as
    PyTorch's documentation does); replay() reruns it."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(static_input)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.inference_mode():
        model(static_input)  # its output lives in the graph's memory pool
    return g


# ---------------------------------------------------------------- the run

class Report:
    def __init__(self):
        self.course = {1: [], 8192: []}
        self.ext = []
        self.accuracy = []
        self.sweep = []
        self.notes = []

    def course_row(self, method, batch, stats=None, note="", reason=None):
        r = {"method": method, "batch": batch, "note": note}
        if stats:
            r.update(stats)
        if reason:
            r["reason"] = reason
        self.course[batch].append(r)
        self._echo(method, batch, r)

    def ext_row(self, system, batch, mode, timer, stats=None, note="", reason=None):
        r = {"system": system, "batch": batch, "mode": mode, "timer": timer, "note": note}
        if stats:
            r.update(stats)
        if reason:
            r["reason"] = reason
        self.ext.append(r)
        self._echo(f"{system} [{mode}]", batch, r)

    @staticmethod
    def _echo(name, batch, r):
        if "reason" in r:
            print(f"  {name:<44} b{batch:<5} -- {r['reason']}", flush=True)
        else:
            print(f"  {name:<44} b{batch:<5} mean {r['mean_ms']:.4f} median {r['median_ms']:.4f} "
                  f"p99 {r['p99_ms']:.4f} ms  {r['samples_per_s']:,.0f} samples/s", flush=True)


def guarded(report, rows, fn):
    """Runs fn(); on failure reports each (kind, name, batch, mode) of rows with the reason."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        reason = f"failed: {short_error(e)}"
        report.notes.append(f"{rows[0][1] if rows else '?'}: {traceback.format_exc(limit=3).strip()[-600:]}")
        for kind, name, batch, mode, timer in rows:
            if kind == "course":
                report.course_row(name, batch, reason=reason)
            else:
                report.ext_row(name, batch, mode, timer, reason=reason)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa: BLE001
        return ""


def system_info(args):
    gpu = sh("nvidia-smi --query-gpu=name --format=csv,noheader | head -1")
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "commit": args.commit or "",
        "gpu": gpu or "none (nvidia-smi gave nothing)",
        "driver": sh("nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1"),
        "gpu_clocks_seen": sh("nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,power.draw,temperature.gpu "
                              "--format=csv,noheader | head -1"),
        "cpu": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
        "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")},
        "quick": args.quick,
    }
    g = gpu.upper()
    info["gpu_tag"] = "h100" if "H100" in g else "h200" if "H200" in g else ("gpu" if gpu else "nogpu")
    for mod in ("numpy", "torch", "onnx", "matplotlib"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception as e:  # noqa: BLE001
            info[mod] = f"not available ({type(e).__name__})"
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "mlp.onnx"))
    ap.add_argument("--out", default="out")
    ap.add_argument("--commit", default=None, help="commit text, or a file holding it (the bundle's COMMIT)")
    ap.add_argument("--quick", action="store_true", help="fewer iterations in the extended rows (< 2 min)")
    ap.add_argument("--child-ort", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child-providers", default="CPUExecutionProvider", help=argparse.SUPPRESS)
    ap.add_argument("--child-plan", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    if args.child_ort:
        return ort_child(args)
    if args.commit and os.path.isfile(args.commit):
        args.commit = open(args.commit).read().strip()

    t_start = time.perf_counter()
    info = system_info(args)
    print(f"compare.py: {info['gpu']} (driver {info['driver']}), {info['cpu']}, {info['cores']} cores", flush=True)
    rep = Report()
    # extended plan: (warm-up, iterations) per batch
    ext_plan = {1: (50, 300), 8192: (5, 30)} if args.quick else {1: (200, 2000), 8192: (20, 200)}
    workdir = tempfile.mkdtemp(prefix="kiln-compare-")

    # ---- 1. the course's method
    print("== course method (perf_counter around the whole loop, as the course's scripts)", flush=True)
    ort1 = run_ort(args.model, 1, ["CPUExecutionProvider", "CUDAExecutionProvider"],
                   {str(b): p for b, p in COURSE_PLAN.items()}, timeout=180)
    info["onnxruntime"] = ort1.get("version", ort1.get("error"))
    info["onnxruntime_providers"] = ort1.get("available_providers")
    info["ort_child_env"] = ort1.get("env")
    for batch in (1, 8192):
        for prov, name, note in (("CPUExecutionProvider", "ORT CPU", "OMP/MKL=1, child process"),
                                 ("CUDAExecutionProvider", "ORT CUDA EP", "end to end from pageable numpy")):
            if "error" in ort1:
                rep.course_row(name, batch, reason=ort1["error"])
                continue
            r = next((r for r in ort1["rows"] if r["provider"] == prov and r["batch"] == batch), None)
            if r is None:
                rep.course_row(name, batch, reason="no result from the ORT child")
            elif "unavailable" in r:
                rep.course_row(name, batch, reason="not available: onnxruntime has no CUDAExecutionProvider on "
                               f"this machine (onnxruntime {ort1.get('version')}, providers "
                               f"{ort1.get('available_providers')})" if prov.startswith("CUDA") else r["unavailable"])
            elif "error" in r:
                rep.course_row(name, batch, reason=f"failed: {r['error']}")
            else:
                rep.course_row(name, batch, {k: r[k] for k in r if k.endswith("_ms") or k.startswith("samples")
                                             or k in ("warmup", "iters")}, note)

    kc = KilnCtx(workdir)
    info["kiln"] = kc.version
    info["kiln_device"] = getattr(kc, "device", kc.error)
    # The course's engines: mlp_fp16.engine (trtexec --fp16, no shapes: batch 1) and mlp_fp16_b8192.engine
    # (--minShapes 1 --optShapes 8192 --maxShapes 8192).
    course_profiles = {1: (1, 1, 1), 8192: (1, 8192, 8192)}
    for batch in (1, 8192):
        warm, iters = COURSE_PLAN[batch]
        prof = course_profiles[batch]
        note = f"kiln.trt + kiln.cuda, pageable numpy, engine profile {prof[0]}/{prof[1]}/{prof[2]}"
        if kc.error:
            rep.course_row("Kiln FP16", batch, reason=kc.error)
            rep.course_row("Kiln FP16 (simple API)", batch, reason=kc.error)
            continue

        def course_trt(batch=batch, warm=warm, iters=iters, prof=prof, note=note):
            path, secs = kc.engine_file(args.model, "fp16", *prof)
            runner = TrtRunner(path, (batch, 1, 28, 28))
            x = make_input(batch)
            y = runner.infer_once(x)
            assert y.shape == (batch, 10)
            rep.course_row("Kiln FP16", batch, time_loop(lambda: runner.infer_once(x), warm, iters, batch,
                                                         final_sync=runner.cuda.Context.synchronize),
                           note + f" (built in {secs:.1f} s)")
        guarded(rep, [("course", "Kiln FP16", batch, "", "")], course_trt)

        def course_simple(batch=batch, warm=warm, iters=iters, prof=prof):
            path, _ = kc.engine_file(args.model, "fp16", *prof)
            eng = kc.kiln.load(path)
            x = make_input(batch)
            feeds = {"input": x}
            eng.infer(feeds)
            rep.course_row("Kiln FP16 (simple API)", batch, time_loop(lambda: eng.infer(feeds), warm, iters, batch),
                           "engine.infer({'input': x}), numpy in and out")
        guarded(rep, [("course", "Kiln FP16 (simple API)", batch, "", "")], course_simple)

    # ---- 2. extended
    print("== extended (median/p99 of per-iteration perf_counter, each iteration ends in a synchronize)", flush=True)
    PC = "perf_counter/iter"
    ortn = run_ort(args.model, 0, ["CPUExecutionProvider"], {str(b): p for b, p in ext_plan.items()}, timeout=180)
    for batch in (1, 8192):
        name = f"ORT CPU all threads ({info['cores']} cores)"
        r = next((r for r in ortn.get("rows", []) if r["batch"] == batch), None)
        if r is None or "error" in r or "unavailable" in r:
            rep.ext_row(name, batch, "e2e pageable", PC,
                        reason=(ortn.get("error") or (r or {}).get("error") or (r or {}).get("unavailable")
                                or "no result"))
        else:
            rep.ext_row(name, batch, "e2e pageable", PC, {k: r[k] for k in r if k.endswith("_ms")
                        or k.startswith("samples") or k in ("warmup", "iters")}, "intra_op default")
    # the course-method ORT CPU 1-thread rows again in the extended table, with their median/p99
    for r in rep.course[1] + rep.course[8192]:
        if r["method"] == "ORT CPU":
            rep.ext.append({**r, "system": "ORT CPU 1 thread", "mode": "e2e pageable", "timer": PC,
                            "note": "course-method run (warm-up/iterations as the course)"})

    # Kiln CUDA device-resident, with and without CUDA graph
    for prec in ("fp16", "tf32", "int8"):
        for batch in (1, 8192):
            for graph in (False, True):
                name = f"Kiln CUDA {prec.upper()}"
                mode = "device-resident" + (" + CUDA graph" if graph else "")
                if kc.error:
                    rep.ext_row(name, batch, mode, PC, reason=kc.error)
                    continue

                def kiln_dev(prec=prec, batch=batch, graph=graph, name=name, mode=mode):
                    prof = (batch, batch, batch)
                    path, _ = kc.engine_file(args.model, prec, *prof)
                    runner = TrtRunner(path, (batch, 1, 28, 28))
                    runner.infer_once(make_input(batch))  # input stays on the device
                    if graph:
                        runner.ctx.set_cuda_graph(True)
                    warm, iters = ext_plan[batch]
                    rep.ext_row(name, batch, mode, PC, time_loop(runner.compute_once, warm, iters, batch),
                                f"kiln.trt execute_async_v3 + synchronize, profile {batch}/{batch}/{batch}, "
                                "one input buffer (not rotated)")
                guarded(rep, [("ext", name, batch, mode, PC)], kiln_dev)
    # Kiln FP16 end to end through the TensorRT-shaped API with the ext iteration counts
    for batch in (1, 8192):
        name, mode = "Kiln CUDA FP16", "e2e pageable"
        if kc.error:
            rep.ext_row(name, batch, mode, PC, reason=kc.error)
            continue

        def kiln_e2e(batch=batch, name=name, mode=mode):
            path, _ = kc.engine_file(args.model, "fp16", batch, batch, batch)
            runner = TrtRunner(path, (batch, 1, 28, 28))
            x = make_input(batch)
            warm, iters = ext_plan[batch]
            rep.ext_row(name, batch, mode, PC, time_loop(lambda: runner.infer_once(x), warm, iters, batch),
                        "the course's infer_once (H2D, execute, D2H, synchronize)")
        guarded(rep, [("ext", name, batch, mode, PC)], kiln_e2e)

    # Kiln CPU (the same Python API, a CPU engine): FP32 and INT8, one thread and all threads
    for prec in ("fp32", "int8"):
        for threads in (1, 0):
            for batch in (1, 8192):
                name = f"Kiln CPU {prec.upper()} {'1 thread' if threads == 1 else 'all threads'}"

                def kiln_cpu(prec=prec, threads=threads, batch=batch, name=name):
                    path, _ = kc.engine_file(args.model, prec, 1, batch, 8192, device="cpu")
                    eng = kc.kiln.load(path)
                    ctx = eng.create_execution_context()
                    ctx.set_num_threads(threads)
                    x = make_input(batch)
                    y = __import__("numpy").empty((batch, 10), dtype="float32")
                    ctx.set_input_shape("input", x.shape)
                    ctx.set_tensor_address("input", x.ctypes.data)
                    ctx.set_tensor_address("logits", y.ctypes.data)
                    warm, iters = ext_plan[batch]
                    rep.ext_row(name, batch, "e2e pageable", PC, time_loop(ctx.execute, warm, iters, batch),
                                "context.execute() on numpy buffers" + (", scales from bench/mlp_int8.cache"
                                                                         if prec == "int8" else ""))
                guarded(rep, [("ext", name, batch, "e2e pageable", PC)], kiln_cpu)

    # PyTorch
    torch_rows = [(f"PyTorch eager {p}", b, "e2e pageable") for p in ("FP32", "FP16") for b in (1, 8192)] + \
                 [(f"PyTorch CUDA graph {p}", b, "device-resident") for p in ("FP32", "FP16") for b in (1, 8192)]
    torch_err = None
    try:
        import numpy as np
        import torch
        if not torch.cuda.is_available():
            torch_err = f"torch {torch.__version__}: CUDA not available"
        else:
            model, shapes = torch_mlp(args.model)
            info["torch_model"] = f"Flatten, Linear {' -> '.join(str(s) for s in shapes)} with ReLU"
            # verify against ONNX Runtime (CPU) when it is importable here, else against numpy
            xv = make_input(8)
            with torch.no_grad():
                yt = model(torch.from_numpy(xv)).numpy()
            try:
                import onnxruntime as ort
                yr = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, {"input": xv})[0]
                ref = "onnxruntime CPU"
            except Exception:  # noqa: BLE001
                yr, ref = None, None
            if yr is not None:
                err = float(np.max(np.abs(yt - yr)))
                info["torch_model_check"] = f"max |torch FP32 - {ref}| = {err:.2e} on 8 inputs"
                if err > 1e-3:
                    torch_err = f"rebuilt torch model disagrees with {ref}: max abs diff {err:.3g}"
            model = model.cuda()
    except Exception as e:  # noqa: BLE001
        torch_err = f"torch not usable: {short_error(e)}"
    if torch_err:
        for name, b, mode in torch_rows:
            rep.ext_row(name, b, mode, PC, reason=torch_err)
    else:
        for prec, dt in (("FP32", torch.float32), ("FP16", torch.float16)):
            m = model if prec == "FP32" else __import__("copy").deepcopy(model).half()
            for batch in (1, 8192):
                warm, iters = ext_plan[batch]
                name = f"PyTorch eager {prec}"

                def eager(m=m, dt=dt, batch=batch, warm=warm, iters=iters, name=name):
                    x = make_input(batch)

                    def once():
                        with torch.inference_mode():
                            return m(torch.from_numpy(x).cuda().to(dt)).float().cpu()
                    rep.ext_row(name, batch, "e2e pageable", PC, time_loop(once, warm, iters, batch),
                                "torch.from_numpy(x).cuda(); out.cpu()")
                guarded(rep, [("ext", name, batch, "e2e pageable", PC)], eager)
                name = f"PyTorch CUDA graph {prec}"

                def graphed(m=m, dt=dt, batch=batch, warm=warm, iters=iters, name=name):
                    g = torch_cuda_graph(m, torch.from_numpy(make_input(batch)).cuda().to(dt))

                    def once():
                        g.replay()
                        torch.cuda.synchronize()
                    rep.ext_row(name, batch, "device-resident", PC, time_loop(once, warm, iters, batch),
                                "g.replay(); torch.cuda.synchronize()")
                guarded(rep, [("ext", name, batch, "device-resident", PC)], graphed)

    # Limits: copies of the batch-8192 input (25.7 MB) and output
    lim_rows = [("H2D pageable", 8192), ("H2D pinned", 8192), ("D2H pageable (output)", 8192),
                ("D2H pinned (output)", 8192)]
    if torch_err:
        for name, b in lim_rows:
            rep.ext_row(f"limit: {name}", b, "copy", PC, reason=torch_err)
    else:
        warm, iters = ext_plan[8192]
        iters = max(iters, 50)

        def copies():
            x = torch.from_numpy(make_input(8192))
            xp = x.pin_memory()
            d = torch.empty_like(x, device="cuda")
            yo = torch.randn(8192, 10, device="cuda")
            yh, yhp = torch.empty(8192, 10), torch.empty(8192, 10).pin_memory()
            for nm, fn in (("H2D pageable", lambda: d.copy_(x)), ("H2D pinned", lambda: d.copy_(xp, non_blocking=True)),
                           ("D2H pageable (output)", lambda: yh.copy_(yo)),
                           ("D2H pinned (output)", lambda: yhp.copy_(yo, non_blocking=True))):
                def once(fn=fn):
                    fn()
                    torch.cuda.synchronize()
                st = time_loop(once, warm, iters, 8192)
                nbytes = x.numel() * 4 if nm.startswith("H2D") else yo.numel() * 4
                rep.ext_row(f"limit: {nm}", 8192, "copy", PC, st,
                            f"{nbytes / 1e6:.2f} MB, {nbytes / st['median_ms'] / 1e6:.2f} GB/s (median)")
        guarded(rep, [("ext", f"limit: {n}", b, "copy", PC) for n, b in lim_rows], copies)

    sweep(args, kc, rep, ext_plan, None if torch_err else model)
    accuracy(args, kc, rep, None if torch_err else model)
    info["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    write_outputs(args, info, rep)


SWEEP_BATCHES = [2 ** i for i in range(14)]  # 1 ... 8192


def sweep(args, kc, rep, ext_plan, torch_model):
    """Latency and throughput over batch 1...8192 (powers of two) for the main systems, each with one engine
    or model over the whole range (Kiln: profile 1/8192/8192, shape set per batch). Device-resident rows
    rotate their inputs through buffers larger than the H100's 50 MB L2 in total, so no iteration reads an
    input another left in cache."""
    import numpy as np
    iters_for = lambda b: max(10, min(300, int(3e5 / (b * 40)) + 10))  # noqa: E731  fewer at large batches
    if args.quick:
        iters_for = lambda b: max(5, min(60, int(3e4 / (b * 40)) + 5))  # noqa: E731

    def run(system, mode, make_once):
        for b in SWEEP_BATCHES:
            try:
                once = make_once(b)
                st = time_loop(once, max(3, iters_for(b) // 5), iters_for(b), b)
                rep.sweep.append({"system": system, "mode": mode, **st})
            except Exception as e:  # noqa: BLE001
                rep.sweep.append({"system": system, "mode": mode, "batch": b, "reason": f"failed: {short_error(e)}"})
                break
        last = rep.sweep[-1]
        print(f"  sweep {system:<34} [{mode}] " + (f"b8192 median {last['median_ms']:.4f} ms" if "reason" not in last
                                                  else last["reason"]), flush=True)

    rotate_bytes = 64 << 20  # > 50 MB L2
    if not kc.error:
        for prec in ("fp16", "int8"):
            path, _ = kc.engine_file(args.model, prec, 1, 8192, 8192)

            def kiln_resident(b, path=path):
                r = TrtRunner(path, (b, 1, 28, 28))
                nbuf = max(2, -(-rotate_bytes // (b * 784 * 4)))
                bufs = [kc.kiln.cuda.mem_alloc(b * 784 * 4) for _ in range(nbuf)]
                x = make_input(b)
                for d in bufs:
                    kc.kiln.cuda.memcpy_htod(d, x)
                r._keep = bufs
                i = [0]

                def once():
                    r.ctx.set_tensor_address(r.in_name, int(bufs[i[0] % nbuf]))
                    i[0] += 1
                    r.compute_once()
                return once
            run(f"Kiln CUDA {prec.upper()}", "device-resident, rotated", kiln_resident)

            def kiln_e2e(b, path=path):
                r = TrtRunner(path, (b, 1, 28, 28))
                x = make_input(b)
                return lambda: r.infer_once(x)
            run(f"Kiln CUDA {prec.upper()}", "e2e pageable", kiln_e2e)
    for prec in ("fp32", "int8"):
        def kiln_cpu(b, prec=prec):
            path, _ = kc.engine_file(args.model, prec, 1, 8192, 8192, device="cpu")
            ctx = kc.kiln.load(path).create_execution_context()
            x, y = make_input(b), np.empty((b, 10), dtype=np.float32)
            ctx.set_input_shape("input", x.shape)
            ctx.set_tensor_address("input", x.ctypes.data)
            ctx.set_tensor_address("logits", y.ctypes.data)
            ctx._keep = (x, y)
            return ctx.execute
        run(f"Kiln CPU {prec.upper()} all threads", "e2e pageable", kiln_cpu)
    try:
        import onnxruntime as ort
        so = ort.SessionOptions()
        sess = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])

        def ort_cpu(b):
            feeds = {"input": make_input(b)}
            return lambda: sess.run(None, feeds)
        run("ORT CPU all threads", "e2e pageable", ort_cpu)
    except Exception as e:  # noqa: BLE001
        rep.sweep.append({"system": "ORT CPU all threads", "mode": "e2e pageable", "batch": 1,
                          "reason": f"not usable: {short_error(e)}"})
    if torch_model is not None:
        import torch
        m16 = __import__("copy").deepcopy(torch_model).half()

        def torch_graph(b):
            n = max(2, -(-rotate_bytes // (b * 784 * 2)))
            xs = [torch.from_numpy(make_input(b)).cuda().half() for _ in range(n)]
            static = torch.empty_like(xs[0])
            g = torch_cuda_graph(m16, static)
            i = [0]

            def once():  # the copy into the graph's static input is the rotation (device to device)
                static.copy_(xs[i[0] % n])
                i[0] += 1
                g.replay()
                torch.cuda.synchronize()
            return once
        run("PyTorch CUDA graph FP16", "device-resident, rotated (+ d2d copy)", torch_graph)

        def torch_eager(b):
            x = make_input(b)

            def once():
                with torch.inference_mode():
                    return m16(torch.from_numpy(x).cuda().half()).float().cpu()
            return once
        run("PyTorch eager FP16", "e2e pageable", torch_eager)

        def h2d_pinned(b):
            xp = torch.from_numpy(make_input(b)).pin_memory()
            d = torch.empty_like(xp, device="cuda")

            def once():
                d.copy_(xp, non_blocking=True)
                torch.cuda.synchronize()
            return once
        run("limit: H2D pinned copy of the input", "copy", h2d_pinned)

        def h2d_pageable(b):
            x = torch.from_numpy(make_input(b))
            d = torch.empty_like(x, device="cuda")

            def once():
                d.copy_(x)
                torch.cuda.synchronize()
            return once
        run("limit: H2D pageable copy of the input", "copy", h2d_pageable)


def read_idx(path):
    import gzip
    import numpy as np
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def accuracy(args, kc, rep, torch_model):
    """Top-1 on the Fashion-MNIST test set for every Kiln precision (CPU and CUDA) and the PyTorch model."""
    import numpy as np
    try:
        images = read_idx(os.path.join(FASHION_MNIST, "t10k-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(FASHION_MNIST, "t10k-labels-idx1-ubyte.gz"))
    except Exception as e:  # noqa: BLE001
        rep.accuracy.append({"system": "all", "reason": f"no Fashion-MNIST test set: {short_error(e)}"})
        return
    x = ((images.astype(np.float32) / 255.0 - 0.2860) / 0.3530).reshape(-1, 1, 28, 28).astype(np.float32)
    systems = [(f"Kiln CPU {p.upper()}", "cpu", p) for p in ("fp32", "int8")] + \
              [(f"Kiln CUDA {p.upper()}", "cuda", p) for p in ("fp32", "tf32", "fp16", "int8")]
    ref_pred = None
    for name, device, prec in systems:
        try:
            if kc.error and device == "cuda":
                raise RuntimeError(kc.error)
            path, _ = kc.engine_file(args.model, prec, 1, 1000, 1000, device=device)
            eng = kc.kiln.load(path)
            pred = np.concatenate([eng.infer({"input": x[i:i + 1000]})["logits"].argmax(1)
                                   for i in range(0, len(x), 1000)])
            row = {"system": name, "top1": float((pred == labels).mean() * 100), "correct": int((pred == labels).sum())}
            if ref_pred is None and prec == "fp32":
                ref_pred = pred
            if ref_pred is not None:
                row["agreement_with_fp32"] = float((pred == ref_pred).mean() * 100)
            rep.accuracy.append(row)
        except Exception as e:  # noqa: BLE001
            rep.accuracy.append({"system": name, "reason": f"failed: {short_error(e)}"})
    try:
        if torch_model is None:
            raise RuntimeError("torch not usable (see the PyTorch rows)")
        import torch
        m = __import__("copy").deepcopy(torch_model).cpu()
        with torch.inference_mode():
            pred = m(torch.from_numpy(x)).argmax(1).numpy()
        rep.accuracy.append({"system": "PyTorch FP32 (CPU)", "top1": float((pred == labels).mean() * 100),
                             "correct": int((pred == labels).sum())})
    except Exception as e:  # noqa: BLE001
        rep.accuracy.append({"system": "PyTorch FP32 (CPU)", "reason": short_error(e)})
    for r in rep.accuracy:
        print(f"  accuracy {r['system']:<24} " + (f"{r['top1']:.2f}%" if "top1" in r else r["reason"]), flush=True)


# ---------------------------------------------------------------- output

def fnum(v, fmt):
    return "" if v is None else format(v, fmt)


def write_outputs(args, info, rep):
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{info['date_utc'][:10]}-{info['gpu_tag']}-compare")
    L = [f"# Kiln vs peers on models/mlp.onnx: {info['gpu']}", "",
         f"- date: {info['date_utc']} UTC, commit: {info['commit'] or 'unknown'}",
         f"- GPU: {info['gpu']}, driver {info['driver']}; clocks seen (sm, mem, max sm, power, temp): "
         f"{info['gpu_clocks_seen'] or 'n/a'}",
         f"- CPU: {info['cpu']}, {info['cores']} cores; ORT child env {info.get('ort_child_env')}",
         f"- Python {info['python']}, numpy {info['numpy']}, onnxruntime {info.get('onnxruntime')} "
         f"(providers {info.get('onnxruntime_providers')}), torch {info['torch']}, kiln {info.get('kiln')} "
         f"({info.get('kiln_device')})",
         f"- torch model: {info.get('torch_model', 'n/a')}; {info.get('torch_model_check', '')}",
         f"- run: {'--quick, ' if info['quick'] else ''}{info['elapsed_s']} s", "",
         "Course method: np.random.seed(123) randn float32, mean = (t1 - t0) / ITERS around the loop "
         "(perf_counter), batch 1: 100 warm-up / 1000 iterations, batch 8192: 5 / 20. Median and p99 are of the "
         "same iterations. Rows marked *course* are the course's own figures, " + COURSE_HW + ".", ""]
    for batch in (1, 8192):
        L += [f"## Batch {batch} (course method)", "",
              "| method | mean latency (ms) | samples/s | median ms | p99 ms | note |", "|---|--:|--:|--:|--:|---|"]
        for r in rep.course[batch]:
            if "reason" in r:
                L.append(f"| {r['method']} | – | – | – | – | {r['reason']} |")
            else:
                L.append(f"| {r['method']} | {r['mean_ms']:.3f} | {r['samples_per_s']:,.0f} | {r['median_ms']:.4f} | "
                         f"{r['p99_ms']:.4f} | {r['note']} |")
        for m, ms, sps, note in COURSE[batch]:
            sps_s = f"{sps:,}" if sps else f"({batch * 1e3 / ms:,.0f})"
            L.append(f"| *course: {m}* | *{ms:.3f}* | *{sps_s}* | | | *{note}; {COURSE_HW}* |")
        L.append("")
    L += ["## Extended", "",
          "Each iteration timed with perf_counter and ends in a synchronize (timer column); median/p99 of the "
          "iterations; samples/s from the median.", "",
          "| system | batch | mode | median ms | p99 ms | samples/s | timer | note |", "|---|--:|---|--:|--:|--:|---|---|"]
    for r in sorted(rep.ext, key=lambda r: (r["batch"], r["system"], r["mode"])):
        if "reason" in r:
            L.append(f"| {r['system']} | {r['batch']} | {r['mode']} | – | – | – | {r['timer']} | {r['reason']} |")
        else:
            L.append(f"| {r['system']} | {r['batch']} | {r['mode']} | {r['median_ms']:.4f} | {r['p99_ms']:.4f} | "
                     f"{r['samples_per_s_median']:,.0f} | {r['timer']} | {r['note']} |")
    L.append("")
    systems = []
    for r in rep.sweep:
        key = (r["system"], r["mode"])
        if key not in systems:
            systems.append(key)
    if systems:
        L += ["## Batch sweep (median ms per batch; rotated device inputs > 50 MB L2)", "",
              "| system | mode | " + " | ".join(str(b) for b in SWEEP_BATCHES) + " |",
              "|---|---|" + "--:|" * len(SWEEP_BATCHES)]
        for sysname, mode in systems:
            cells = []
            for b in SWEEP_BATCHES:
                r = next((r for r in rep.sweep if (r["system"], r["mode"], r["batch"]) == (sysname, mode, b)), None)
                cells.append("–" if r is None or "reason" in r else f"{r['median_ms']:.4g}")
            L.append(f"| {sysname} | {mode} | " + " | ".join(cells) + " |")
        failures = [r for r in rep.sweep if "reason" in r]
        for r in failures:
            L.append(f"\n- {r['system']} [{r['mode']}] from batch {r['batch']}: {r['reason']}")
        L.append("")
        sweep_png = stem + "-sweep.png"
        chart = make_sweep_chart(sweep_png, rep)
        L += [f"![latency and throughput vs batch]({os.path.basename(sweep_png)})" if chart is True
              else f"(no sweep chart: {chart})", ""]
    L += ["## Accuracy (Fashion-MNIST test set, 10,000 images)", "",
          "| system | top-1 | correct | argmax agreement with Kiln CPU FP32 |", "|---|--:|--:|--:|"]
    for r in rep.accuracy:
        if "reason" in r:
            L.append(f"| {r['system']} | – | – | {r['reason']} |")
        else:
            agree = f"{r['agreement_with_fp32']:.2f}%" if "agreement_with_fp32" in r else ""
            L.append(f"| {r['system']} | {r['top1']:.2f}% | {r['correct']} | {agree} |")
    L.append("")
    png = stem + ".png"
    chart = make_chart(png, rep)
    if chart is True:
        L += [f"![batch-8192 samples/s]({os.path.basename(png)})", ""]
    else:
        L += [f"(no chart: {chart})", ""]
    if rep.notes:
        L += ["## Failures (tracebacks)", "", "```"] + rep.notes + ["```", ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(L))
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "course_method": {str(k): v for k, v in rep.course.items()},
                   "course_figures": {str(k): [dict(zip(("method", "mean_ms", "samples_per_s", "note"), r))
                                               for r in v] for k, v in COURSE.items()},
                   "extended": rep.ext, "accuracy": rep.accuracy, "sweep": rep.sweep}, f, indent=2)
    print(f"compare.py: wrote {stem}.md, .json" + (", .png" if chart is True else "") +
          f" in {info['elapsed_s']} s", flush=True)


def make_chart(png, rep):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"matplotlib not available ({type(e).__name__})"
    try:
        bars = [(f"{r['method']} (course method)", r["samples_per_s"]) for r in rep.course[8192] if "reason" not in r]
        bars += [(f"{r['system']} [{r['mode']}]", r["samples_per_s_median"]) for r in rep.ext
                 if r["batch"] == 8192 and "reason" not in r and not r["system"].startswith("limit")]
        bars += [(f"course: {m} (2080 Ti)", sps) for m, _, sps, _ in COURSE[8192]]
        if not bars:
            return "no batch-8192 results"
        fig, ax = plt.subplots(figsize=(10, 0.35 * len(bars) + 1.5))
        names, vals = zip(*bars)
        colors = ["tab:gray" if n.startswith("course:") else "tab:orange" if n.startswith("Kiln") else "tab:blue"
                  for n in names]
        ax.barh(range(len(vals)), vals, color=colors)
        ax.set_yticks(range(len(vals)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("samples/s (batch 8192, log scale)")
        ax.set_title("models/mlp.onnx, batch 8192")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
        return True
    except Exception as e:  # noqa: BLE001
        return f"chart failed: {short_error(e)}"


def make_sweep_chart(png, rep):
    """Latency and throughput vs batch, log-log, one line per system; copy limits dashed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"matplotlib not available ({type(e).__name__})"
    try:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 6))
        keys = []
        for r in rep.sweep:
            if (r["system"], r["mode"]) not in keys:
                keys.append((r["system"], r["mode"]))
        for sysname, mode in keys:
            pts = [(r["batch"], r["median_ms"]) for r in rep.sweep
                   if (r["system"], r["mode"]) == (sysname, mode) and "reason" not in r]
            if not pts:
                continue
            b, ms = zip(*pts)
            style = dict(linestyle="--", color="black" if "pinned" in sysname else "gray") if sysname.startswith("limit") \
                else dict(marker="o", markersize=3, linewidth=2 if sysname.startswith("Kiln") else 1)
            label = f"{sysname} [{mode}]"
            ax1.plot(b, ms, label=label, **style)
            ax2.plot(b, [bb * 1e3 / m for bb, m in pts], label=label, **style)
        for ax, title, yl in ((ax1, "latency vs batch", "median latency (ms)"),
                              (ax2, "throughput vs batch", "samples/s (from the median)")):
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("batch")
            ax.set_ylabel(yl)
            ax.set_title(f"models/mlp.onnx: {title}")
            ax.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        fig.savefig(png, dpi=110)
        plt.close(fig)
        return True
    except Exception as e:  # noqa: BLE001
        return f"chart failed: {short_error(e)}"


if __name__ == "__main__":
    main()
