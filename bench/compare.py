#!/usr/bin/env python3
"""Kiln beside its peers on models/mlp.onnx, the course's way first, then every system in every mode (issue 7).

    python3 bench/compare.py [--quick] [--out DIR] [--commit TEXT] [--model models/mlp.onnx]

Run on the GPU machine from the bundle scripts/gpu-test.sh makes (scripts/remote-gpu.sh, step "compare",
sets LD_LIBRARY_PATH, KILN_LIBRARY, PYTHONPATH and KILN_BENCH_BIN). Writes to --out (default ./out):
<date>-<gpu tag>-compare.md (tables), .json (every number) and -sweep.png (latency and throughput vs batch).
Time-boxed by design: every timing point runs for a fixed time (at least 10 iterations) and the extended part
stops at its budget (7 minutes in all; --quick: batch 1 and 8192 only, no torch.compile, under 2 minutes);
points past the budget are reported as skipped.

1. The course's method: np.random.seed(123), randn float32 input, batch 1 with 100 warm-up / 1000 timed
   iterations, batch 8192 with 5 / 20; mean latency = (t1 - t0) / ITERS around the whole loop, as the course's
   scripts compute it (plus median and p99 of the same iterations, one perf_counter reading after each).
   ONNX Runtime runs in a child process started with OMP_NUM_THREADS=MKL_NUM_THREADS=1 (set before
   onnxruntime is imported), as the course's scripts set them. Kiln FP16 runs through kiln.trt + kiln.cuda
   exactly as the course's TensorRT scripts do (pageable numpy, memcpy_htod_async, execute_async_v3,
   memcpy_dtoh_async, stream.synchronize per iteration), and through engine.infer ("simple API").
2. Extended, at every batch 1, 2, 4 ... 8192 (batch 1 and 8192 also in tables): Kiln CUDA FP32/FP16/INT8 with
   and without CUDA graphs, device-resident (inputs rotated through buffers larger than the 50 MB L2), end to
   end from pinned and from pageable host memory; PyTorch eager, CUDA graph (FP32/FP16, same three modes) and
   torch.compile max-autotune (device-resident, batch 1 and 8192); ORT CUDA EP (reported unavailable when it
   is); CPU, one thread and all threads: Kiln FP32/INT8/BF16, ONNX Runtime, the bare oneDNN matmul chain (C++).
   Limits measured in the same run: launch + sync, graph replay + sync, HBM bandwidth, cuBLAS FP32/FP16/INT8
   matmul rates, the copies of input and output (pinned, pageable) at every batch, oneDNN's sgemm rate on one
   and all threads, and one core's L2 read bandwidth. Each row gets its floor and, for Kiln, its ratio to the
   best peer in the same group.
3. Accuracy: top-1 on the Fashion-MNIST test set (KILN_FASHION_MNIST or Debian's dataset) for every Kiln
   precision on CPU and CUDA and for the PyTorch model, with argmax agreement against Kiln CPU FP32.
Every system is wrapped: a missing peer or a failure is reported in its row with the reason, never dropped.
"""
import argparse
import contextlib
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
        fp32, tf32, fp16, int8 (scales from bench/mlp_int8.cache, a TensorRT-format calibration cache) or bf16
        (CPU: kiln build --bf16)."""
        key = (precision, mn, opt, mx, device)
        if key not in self.engines:
            path = os.path.join(self.workdir, f"mlp_{device}_{precision}_{mn}_{opt}_{mx}.engine")
            shp = lambda b: {"input": (b, 1, 28, 28)}  # noqa: E731
            t0 = time.perf_counter()
            int8 = precision == "int8"
            self.kiln.build(model, device=device, fp16=(precision == "fp16"), tf32=(precision != "fp32"),
                            min_shapes=shp(mn), opt_shapes=shp(opt), max_shapes=shp(mx), save=path,
                            timing_cache=os.path.join(self.workdir, "timing.cache") if device == "cuda" else None,
                            int8=int8, calib_cache=INT8_CACHE if int8 else None, bf16=(precision == "bf16"))
            self.engines[key] = (path, time.perf_counter() - t0)
        return self.engines[key]


class TrtRunner:
    """The course's TrtRunner on kiln.trt + kiln.cuda (tests/python/course/original/tensorrt_infer.py)."""

    def __init__(self, engine, input_shape):
        """engine: a path (deserialized here, as the course does) or an already deserialized ICudaEngine."""
        import numpy as np
        import kiln.cuda as cuda
        import kiln.trt as trt
        self.np, self.cuda = np, cuda
        self.input_shape = tuple(input_shape)
        if isinstance(engine, str):
            with open(engine, "rb") as f, trt.Runtime(trt.Logger(trt.Logger.WARNING)) as rt:
                engine = rt.deserialize_cuda_engine(f.read())
        self.engine = engine
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
    """(graph, output): model(static_input) captured into a CUDA graph (warmed up on a side stream first, as
    PyTorch's documentation does); replay() reruns it and refreshes output."""
    import torch
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(static_input)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.inference_mode():
        out = model(static_input)  # lives in the graph's memory pool
    return g, out


# ---------------------------------------------------------------- the run

class Report:
    def __init__(self):
        self.course = {1: [], 8192: []}
        self.points = []  # extended rows: one per system, mode and batch
        self.limits = []
        self.accuracy = []
        self.notes = []

    def course_row(self, method, batch, stats=None, note="", reason=None):
        r = {"method": method, "batch": batch, "note": note}
        if stats:
            r.update(stats)
        if reason:
            r["reason"] = reason
        self.course[batch].append(r)
        self._echo(method, batch, r)

    def add_point(self, r):
        self.points.append(r)
        self._echo(f"{r['system']} [{r['mode']}]", r["batch"], r)

    @staticmethod
    def _echo(name, batch, r):
        if "reason" in r:
            print(f"  {name:<52} b{batch:<5} -- {r['reason']}", flush=True)
        else:
            print(f"  {name:<52} b{batch:<5} mean {r['mean_ms']:.4f} median {r['median_ms']:.4f} "
                  f"p99 {r['p99_ms']:.4f} ms  {r['samples_per_s']:,.0f} samples/s", flush=True)


def guarded(report, rows, fn):
    """Runs fn(); on failure reports each (name, batch) of rows in the course tables with the reason."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        reason = f"failed: {short_error(e)}"
        report.notes.append(f"{rows[0][0] if rows else '?'}: {traceback.format_exc(limit=3).strip()[-600:]}")
        for name, batch in rows:
            report.course_row(name, batch, reason=reason)


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
    ap.add_argument("--quick", action="store_true", help="batch 1 and 8192 only, shorter points, no "
                    "torch.compile (< 2 min)")
    ap.add_argument("--render", metavar="JSON", help="rewrite the .md and -sweep.png from a run's .json (no timing)")
    ap.add_argument("--child-ort", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-compile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--child-threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--child-providers", default="CPUExecutionProvider", help=argparse.SUPPRESS)
    ap.add_argument("--child-plan", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.model = os.path.abspath(args.model)
    if args.child_ort:
        return ort_child(args)
    if args.child_compile:
        return compile_child(args)
    if args.render:
        return render(args)
    if args.commit and os.path.isfile(args.commit):
        args.commit = open(args.commit).read().strip()

    t_start = time.perf_counter()
    info = system_info(args)
    print(f"compare.py: {info['gpu']} (driver {info['driver']}), {info['cpu']}, {info['cores']} cores", flush=True)
    rep = Report()
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
        if batch == 8192:  # kiln.cuda.memcpy_htod_async stages pageable arrays of >= 1 MiB on Kiln's threads
            note += ", pageable copies through Kiln's staging threads"
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
        guarded(rep, [("Kiln FP16", batch)], course_trt)

        def course_simple(batch=batch, warm=warm, iters=iters, prof=prof):
            path, _ = kc.engine_file(args.model, "fp16", *prof)
            eng = kc.kiln.load(path)
            x = make_input(batch)
            feeds = {"input": x}
            eng.infer(feeds)
            rep.course_row("Kiln FP16 (simple API)", batch, time_loop(lambda: eng.infer(feeds), warm, iters, batch),
                           "engine.infer({'input': x}), numpy in and out")
        guarded(rep, [("Kiln FP16 (simple API)", batch)], course_simple)

    # ---- 2. extended: every system at batch 1 and 8192 first, then the rest of the sweep
    torch_model = extended(args, info, kc, rep, t_start)
    accuracy(args, kc, rep, torch_model)
    info["elapsed_s"] = round(time.perf_counter() - t_start, 1)
    write_outputs(args, info, rep)


# ---------------------------------------------------------------- extended rows, sweep, limits

SWEEP_BATCHES = [2 ** i for i in range(14)]  # 1 ... 8192
ROTATE_BYTES = 64 << 20  # device-resident inputs rotate through more than the H100's 50 MB L2...
MAX_BUFFERS = 64  # ...or through 64 buffers when the input is too small for that
GROUPS = [  # (key, title): rows are compared within a group (same place of the data, same threads)
    ("gpu-resident", "GPU, device-resident (input already on the GPU, rotated; per inference + synchronize)"),
    ("gpu-pinned", "GPU, end to end from pinned host memory (H2D, compute, D2H, synchronize)"),
    ("gpu-pageable", "GPU, end to end from pageable host memory (numpy arrays, as the course)"),
    ("cpu-1", "CPU, one thread (host memory)"),
    ("cpu-all", "CPU, all threads (host memory)"),
]
MODE_OF_GROUP = {"gpu-resident": "device-resident", "gpu-pinned": "e2e pinned", "gpu-pageable": "e2e pageable",
                 "cpu-1": "host", "cpu-all": "host"}
FLOP_PER_SAMPLE = 2 * (784 * 256 + 256 * 128 + 128 * 10)
WEIGHT_BYTES = {"fp32": 235146 * 4, "tf32": 235146 * 4, "fp16": 235146 * 2, "int8": 233856 + 1290 * 4,
                "bf16": 233856 * 2 + 1290 * 4}


def rotation(nbytes):
    return int(min(MAX_BUFFERS, max(2, -(-ROTATE_BYTES // max(1, nbytes)))))


class Line:
    """One system in one mode: make(batch) returns a callable running one inference (ending in a synchronize),
    or raises; the driver times it at every batch of `batches`."""

    def __init__(self, system, group, precision, make, kind="peer", note="", batches=None, timer="perf_counter/iter"):
        self.system, self.group, self.precision, self.make = system, group, precision, make
        self.kind, self.note, self.timer = kind, note, timer
        self.batches = batches or SWEEP_BATCHES
        self.failed = None

    @property
    def mode(self):
        return MODE_OF_GROUP[self.group]


def measure(once, batch, point_s, quick):
    """Warm-up, then as many iterations as fit in point_s (at least 10): time-boxed by design."""
    once()
    t0 = time.perf_counter()
    once()
    t1 = max(1e-6, time.perf_counter() - t0)
    iters = int(max(10, min(3000 if quick else 20000, point_s / t1)))
    return time_loop(once, max(3, min(200, iters // 10)), iters, batch)


class Budget:
    def __init__(self, t_start, total_s):
        self.t_start, self.total_s = t_start, total_s

    def left(self):
        return self.total_s - (time.perf_counter() - self.t_start)


def run_lines(lines, batches_first, rep, budget, args):
    """Times every line at batches_first (the extended table's), then at the remaining sweep batches."""
    done = set()
    for phase in ("table", "sweep"):
        for ln in lines:
            for b in ln.batches:
                if (phase == "table") != (b in batches_first) or (ln.system, ln.mode, b) in done:
                    continue
                done.add((ln.system, ln.mode, b))
                row = {"system": ln.system, "group": ln.group, "mode": ln.mode, "precision": ln.precision,
                       "kind": ln.kind, "timer": ln.timer, "note": ln.note, "batch": b}
                if ln.failed:
                    row["reason"] = ln.failed
                elif budget.left() < 0:
                    row["reason"] = f"skipped: the run's time budget ({budget.total_s:.0f} s) was used up"
                else:
                    try:
                        once = ln.make(b)
                        point = (0.5 if b in batches_first else 0.12) * (0.3 if args.quick else 1.0)
                        row.update(measure(once, b, point, args.quick))
                    except Exception as e:  # noqa: BLE001
                        row["reason"] = f"failed: {short_error(e)}"
                        ln.failed = f"failed at batch {b}: {short_error(e)}"
                        rep.notes.append(f"{ln.system} [{ln.mode}] b{b}: {traceback.format_exc(limit=4).strip()[-700:]}")
                    finally:
                        once = None
                rep.add_point(row)


def kiln_gpu_lines(args, kc, prec):
    """Kiln CUDA engines (profile 1/8192/8192, the course's b8192 engine) through kiln.trt: device-resident
    with and without a CUDA graph, end to end from pinned and pageable host memory."""
    name = f"Kiln CUDA {prec.upper()}"
    cache = {}

    def engine():
        if "e" not in cache:
            import kiln.trt as trt
            path, _ = kc.engine_file(args.model, prec, 1, 8192, 8192)
            with open(path, "rb") as f, trt.Runtime(trt.Logger(trt.Logger.WARNING)) as rt:
                cache["e"] = rt.deserialize_cuda_engine(f.read())
        return cache["e"]

    def resident(graph):
        def make(b):
            import numpy as np
            cuda = kc.kiln.cuda
            x = make_input(b)
            n = rotation(x.nbytes)
            if graph:  # a context (and its captured graph) per input buffer: no copy added to the graph
                runners = [TrtRunner(engine(), x.shape) for _ in range(n)]
                for r in runners:
                    cuda.memcpy_htod(r.d_in, x)
                    r.ctx.set_cuda_graph(True)
                    r.compute_once()
            else:
                r0 = TrtRunner(engine(), x.shape)
                bufs = [cuda.mem_alloc(x.nbytes) for _ in range(n)]
                for d in bufs:
                    cuda.memcpy_htod(d, x)
                runners = None
            y = np.empty((b, 10), np.float32)
            i = [0]

            def once():
                k = i[0] % n
                i[0] += 1
                if graph:
                    runners[k].compute_once()
                else:
                    r0.ctx.set_tensor_address(r0.in_name, int(bufs[k]))
                    r0.compute_once()
            once()
            cuda.memcpy_dtoh(y, (runners[0] if graph else r0).d_out)
            if not np.all(np.isfinite(y)):
                raise RuntimeError("non-finite output")
            return once
        return make

    def e2e(pinned, graph):
        def make(b):
            cuda = kc.kiln.cuda
            r = TrtRunner(engine(), (b, 1, 28, 28))
            if graph:
                r.ctx.set_cuda_graph(True)
            x = make_input(b)
            if not pinned:
                return lambda: r.infer_once(x)
            xp = cuda.pagelocked_empty(x.shape, np.float32)
            xp[...] = x
            yp = cuda.pagelocked_empty((b, 10), np.float32)

            def once():
                cuda.memcpy_htod_async(r.d_in, xp, r.stream)
                if not r.ctx.execute_async_v3(r.stream.handle):
                    raise RuntimeError("execution failed")
                cuda.memcpy_dtoh_async(yp, r.d_out, r.stream)
                r.stream.synchronize()
            return once
        return make

    def native():  # kiln's own API (host addresses for execute(), low-latency mode)
        if "n" not in cache:
            path, _ = kc.engine_file(args.model, prec, 1, 8192, 8192)
            cache["n"] = kc.kiln.load(path)
        return cache["n"]

    def host_io(pinned, graph, low_latency=False):
        """execute() handed host memory: Kiln copies in and out (chunks overlapped with compute; pageable
        input staged by threads), or, with low_latency, a resident kernel answers from host memory."""
        def make(b):
            import numpy as np
            cuda = kc.kiln.cuda
            ctx = native().create_execution_context()
            x = make_input(b)
            if pinned:
                xp = cuda.pagelocked_empty(x.shape, np.float32)
                xp[...] = x
                y = cuda.pagelocked_empty((b, 10), np.float32)
            else:
                xp, y = x, np.empty((b, 10), np.float32)
            ctx.set_input_shape("input", x.shape)
            ctx.set_tensor_address("input", xp.ctypes.data)
            ctx.set_tensor_address("logits", y.ctypes.data)
            if graph:
                ctx.set_cuda_graph(True)
            if low_latency:
                ctx.set_low_latency(True, b)
            y[...] = np.nan
            ctx.execute()
            if not np.all(np.isfinite(y)):
                raise RuntimeError("non-finite output")
            keep = (ctx, xp, y)  # alive as long as the closure

            def once():
                keep[0].execute()
            return once
        return make

    def resident_low_latency(b):
        """Device-resident input (rotated buffers) and output: the resident kernel reads and writes device
        memory itself; execute() returns once the output is written (the per-inference synchronize)."""
        import numpy as np
        cuda = kc.kiln.cuda
        ctx = native().create_execution_context()
        x = make_input(b)
        n = rotation(x.nbytes)
        bufs = [cuda.mem_alloc(x.nbytes) for _ in range(n)]
        for d in bufs:
            cuda.memcpy_htod(d, x)
        d_out = cuda.mem_alloc(b * 10 * 4)
        ctx.set_input_shape("input", x.shape)
        ctx.set_tensor_address("input", int(bufs[0]))
        ctx.set_tensor_address("logits", int(d_out))
        ctx.set_low_latency(True, b)
        y = np.full((b, 10), np.nan, np.float32)
        cuda.memcpy_htod(d_out, y)
        ctx.execute()
        cuda.memcpy_dtoh(y, d_out)
        if not np.all(np.isfinite(y)):
            raise RuntimeError("non-finite output")
        i = [0]
        keep = (ctx, bufs, d_out)  # alive as long as the closure

        def once():
            k = i[0] % n
            i[0] += 1
            keep[0].set_tensor_address("input", int(keep[1][k]))
            keep[0].execute()
        return once

    import numpy as np  # noqa: F401  (used by the closures)
    out = []
    if prec in ("fp32", "fp16"):
        out.append(Line(f"{name} low-latency", "gpu-resident", prec, resident_low_latency, "kiln",
                        "set_low_latency(True, batch); execute() on device buffers (input address rotated): the "
                        "resident kernel reads and writes device memory",
                        batches=[b for b in SWEEP_BATCHES if b <= 16]))
    for pinned in (True, False):
        group = "gpu-pinned" if pinned else "gpu-pageable"
        mem = "kiln.cuda.pagelocked_empty" if pinned else "numpy"
        for graph in (False, True):
            g = " + CUDA graph" if graph else ""
            # FP16 / INT8 engines: from 1 MiB of input the staging threads send it as float16 / int8 (the engine
            # rounds or quantizes it first anyway; ctx.host_io_f16_inputs), so a half / a quarter of the bytes cross
            # PCIe: say so beside the figure.
            cast = {"fp16": "; input converted to float16 on the host from 1 MiB (half the bytes across PCIe)",
                    "int8": "; input quantized to int8 on the host from 1 MiB (a quarter of the bytes across PCIe)"
                    }.get(prec, "")
            out.append(Line(f"{name} host IO{g}", group, prec, host_io(pinned, graph), "kiln",
                            f"execute() on {mem} in/out: Kiln's chunked, overlapped copies{cast}"))
        if prec in ("fp32", "fp16"):  # the resident kernel serves float chains, not INT8 engines
            out.append(Line(f"{name} low-latency", group, prec, host_io(pinned, False, True), "kiln",
                            f"set_low_latency(True, batch); execute() on {mem} in/out (resident kernel)",
                            batches=[b for b in SWEEP_BATCHES if b <= 16]))
    for graph in (False, True):
        g = " + CUDA graph" if graph else ""
        out.append(Line(f"{name}{g}", "gpu-resident", prec, resident(graph), "kiln",
                        "execute_async_v3 + synchronize" + ("; one context per rotated buffer, each with its "
                                                            "captured graph" if graph else "; input address rotated")))
        out.append(Line(f"{name}{g}", "gpu-pinned", prec, e2e(True, graph), "kiln",
                        "kiln.cuda.pagelocked_empty in/out, memcpy_htod_async, execute_async_v3, memcpy_dtoh_async"))
        out.append(Line(f"{name}{g}", "gpu-pageable", prec, e2e(False, graph), "kiln",
                        "the course's infer_once on numpy arrays"))
    return out


@contextlib.contextmanager
def scoped_env(name, value):
    """Sets (or, value None, leaves alone) one environment variable for the block, then restores it."""
    if value is None:
        yield
        return
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def kiln_cpu_lines(args, kc, prec):
    def make_for(threads):
        def make(b):
            import numpy as np
            path, _ = kc.engine_file(args.model, prec, 1, 8192, 8192, device="cpu")
            # TF32: split BF16 (bf16x3) is not the default (it beat FP32 only while the host's AMX ran at full rate),
            # so this row forces it, read when the engine loads, to keep it measured beside FP32 in every run.
            with scoped_env("KILN_FUSED_MLP_TACTIC", "bf16x3" if prec == "tf32" else None):
                ctx = kc.kiln.load(path).create_execution_context()
            ctx.set_num_threads(threads)
            x, y = make_input(b), np.full((b, 10), np.nan, dtype=np.float32)
            ctx.set_input_shape("input", x.shape)
            ctx.set_tensor_address("input", x.ctypes.data)
            ctx.set_tensor_address("logits", y.ctypes.data)
            ctx.execute()
            if not np.all(np.isfinite(y)):
                raise RuntimeError("non-finite output")
            ctx._keep = (x, y)
            return ctx.execute
        return make
    note = "context.execute() on numpy buffers" + (", scales from bench/mlp_int8.cache" if prec == "int8" else "") + \
        (", TF32 allowed, split BF16 (bf16x3) forced: KILN_FUSED_MLP_TACTIC=bf16x3 (not the default)" if prec == "tf32"
         else "")
    # Forced bf16x3 runs the oneDNN chain at every batch, where the engine's own choice below 2 rows is the direct
    # FP32 kernel: the TF32 rows are about the large-batch method, so they start at 64 rows (as its old rule did).
    batches = [b for b in SWEEP_BATCHES if b >= 64] if prec == "tf32" else None
    return [Line(f"Kiln CPU {prec.upper()} 1 thread", "cpu-1", prec, make_for(1), "kiln", note, batches=batches),
            Line(f"Kiln CPU {prec.upper()} all threads", "cpu-all", prec, make_for(0), "kiln", note, batches=batches)]


def ort_cpu_lines(args):
    sessions = {}

    def make_for(threads):
        def make(b):
            import onnxruntime as ort
            if threads not in sessions:
                so = ort.SessionOptions()
                if threads:
                    so.intra_op_num_threads = threads
                sessions[threads] = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
            sess, feeds = sessions[threads], {"input": make_input(b)}
            return lambda: sess.run(None, feeds)
        return make
    return [Line("ORT CPU 1 thread", "cpu-1", "fp32", make_for(1), note="sess.run, intra_op_num_threads=1"),
            Line("ORT CPU all threads", "cpu-all", "fp32", make_for(0), note="sess.run, default threads")]


def torch_lines(model):
    """PyTorch as its users call it. Every row takes the FP32 input Kiln takes; FP16 rows convert on the GPU
    (inside the graph/compiled function where there is one) and return FP32 logits."""
    import copy
    import torch
    out = []
    for prec, dt in (("fp32", torch.float32), ("fp16", torch.float16)):
        m = model if prec == "fp32" else copy.deepcopy(model).half()

        def fwd(x, m=m, dt=dt):
            with torch.inference_mode():
                return m(x.to(dt)).float()

        def eager(mode, fwd=fwd):
            def make(b):
                x = make_input(b)
                if mode == "pageable":
                    return lambda: fwd(torch.from_numpy(x).cuda()).cpu()
                if mode == "pinned":
                    xp = torch.from_numpy(x).pin_memory()
                    yp = torch.empty((b, 10)).pin_memory()

                    def once():
                        yp.copy_(fwd(xp.cuda(non_blocking=True)), non_blocking=True)
                        torch.cuda.synchronize()
                    return once
                xs = [torch.from_numpy(x).cuda() for _ in range(rotation(x.nbytes))]
                i = [0]

                def once():
                    fwd(xs[i[0] % len(xs)])
                    i[0] += 1
                    torch.cuda.synchronize()
                return once
            return make

        def graphed(mode, fwd=fwd):
            def make(b):
                x = make_input(b)
                if mode == "resident":  # one graph per rotated input buffer
                    xs = [torch.from_numpy(x).cuda() for _ in range(rotation(x.nbytes))]
                    gs = [torch_cuda_graph(fwd, xi)[0] for xi in xs]
                    i = [0]

                    def once():
                        gs[i[0] % len(gs)].replay()
                        i[0] += 1
                        torch.cuda.synchronize()
                    return once
                static = torch.from_numpy(x).cuda()
                g, y = torch_cuda_graph(fwd, static)
                src = torch.from_numpy(x).pin_memory() if mode == "pinned" else torch.from_numpy(x)
                yh = torch.empty((b, 10)).pin_memory() if mode == "pinned" else torch.empty((b, 10))

                def once():
                    static.copy_(src, non_blocking=mode == "pinned")
                    g.replay()
                    yh.copy_(y, non_blocking=mode == "pinned")
                    torch.cuda.synchronize()
                return once
            return make

        P = prec.upper()
        out += [Line(f"PyTorch eager {P}", "gpu-resident", prec, eager("resident"), note="model(x) + synchronize"),
                Line(f"PyTorch eager {P}", "gpu-pinned", prec, eager("pinned"),
                     note="x_pinned.cuda(non_blocking) ... y_pinned.copy_(non_blocking), synchronize"),
                Line(f"PyTorch eager {P}", "gpu-pageable", prec, eager("pageable"),
                     note="torch.from_numpy(x).cuda(); out.cpu()"),
                Line(f"PyTorch CUDA graph {P}", "gpu-resident", prec, graphed("resident"),
                     note="g.replay() + synchronize; one graph per rotated buffer"),
                Line(f"PyTorch CUDA graph {P}", "gpu-pinned", prec, graphed("pinned"),
                     note="static.copy_(pinned), replay, copy out to pinned, synchronize"),
                Line(f"PyTorch CUDA graph {P}", "gpu-pageable", prec, graphed("pageable"),
                     note="static.copy_(numpy), replay, copy out, synchronize")]
    return out


def copy_limit_lines(kc):
    """H2D of the input + D2H of the output with one synchronize, at every batch: the floor of the end-to-end
    rows. Through kiln.cuda (ctypes straight onto cudaMemcpyAsync, the thinnest Python path here) when it has
    a GPU, else through torch."""
    def make_for(pinned):
        def make(b):
            x = make_input(b)
            if not kc.error:
                import numpy as np
                cuda = kc.kiln.cuda
                s = cuda.Stream()
                d_in, d_out = cuda.mem_alloc(x.nbytes), cuda.mem_alloc(b * 40)
                cuda.memcpy_htod(d_out, np.random.randn(b, 10).astype(np.float32))
                if pinned:
                    xp = cuda.pagelocked_empty(x.shape, np.float32)
                    xp[...] = x
                    x, y = xp, cuda.pagelocked_empty((b, 10), np.float32)
                else:
                    y = np.empty((b, 10), np.float32)

                def once():
                    cuda.memcpy_htod_async(d_in, x, s)
                    cuda.memcpy_dtoh_async(y, d_out, s)
                    s.synchronize()
                return once
            import torch
            xt = torch.from_numpy(x)
            xt = xt.pin_memory() if pinned else xt
            d = torch.empty_like(xt, device="cuda")
            yo = torch.randn(b, 10, device="cuda")
            yh = torch.empty(b, 10).pin_memory() if pinned else torch.empty(b, 10)

            def once():
                d.copy_(xt, non_blocking=pinned)
                yh.copy_(yo, non_blocking=pinned)
                torch.cuda.synchronize()
            return once
        return make
    via = "kiln.cuda memcpy_htod_async + memcpy_dtoh_async + stream synchronize" if not kc.error else \
        "torch copies + synchronize"
    return [Line("limit: H2D input + D2H output, pinned", "gpu-pinned", "-", make_for(True), "limit",
                 f"{via}, pinned buffers: the floor of the end-to-end rows from pinned memory"),
            Line("limit: H2D input + D2H output, pageable", "gpu-pageable", "-", make_for(False), "limit",
                 f"{via}, numpy arrays")]


def gpu_limits(rep, quick):
    """Batch-independent GPU limits: launch + sync, graph replay + sync, HBM copy bandwidth, cuBLAS matmul
    peaks (FP32 without TF32, FP16, INT8), and the four batch-8192 copies on their own."""
    import torch
    point = 0.15 if quick else 0.4

    def lim(name, value, unit, how):
        rep.limits.append({"name": name, "value": value, "unit": unit, "how": how})
        print(f"  limit {name:<44} {value:,.4g} {unit}", flush=True)

    t = torch.zeros(1, device="cuda")

    def launch():
        t.add_(1)
        torch.cuda.synchronize()
    lim("tiny kernel launch + synchronize", measure(launch, 1, point, quick)["median_ms"] * 1e3, "µs",
        "torch: t.add_(1) on one element, torch.cuda.synchronize(), from Python")
    g, _ = torch_cuda_graph(lambda x: x.add_(1), t)

    def replay():
        g.replay()
        torch.cuda.synchronize()
    lim("CUDA graph replay + synchronize", measure(replay, 1, point, quick)["median_ms"] * 1e3, "µs",
        "torch: a one-kernel graph, g.replay(), torch.cuda.synchronize(), from Python")
    n = 256 << 20
    a, bb = torch.empty(n, dtype=torch.uint8, device="cuda"), torch.empty(n, dtype=torch.uint8, device="cuda")
    a.random_(0, 255)

    def d2d():
        bb.copy_(a)
        torch.cuda.synchronize()
    st = measure(d2d, 1, point, quick)
    lim("HBM bandwidth (device copy, read + write)", 2 * n / st["median_ms"] / 1e6, "GB/s",
        "torch: 256 MiB device-to-device copy, bytes read + written / median time")
    s = 8192
    for name, dt, kind in (("cuBLAS FP32 matmul (TF32 off)", torch.float32, "f"), ("cuBLAS FP16 matmul", torch.float16, "f"),
                           ("cuBLAS INT8 matmul (torch._int_mm)", torch.int8, "i")):
        try:
            prev = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = False
            if kind == "f":
                x, w = torch.randn(s, s, device="cuda", dtype=dt), torch.randn(s, s, device="cuda", dtype=dt)
                fn = lambda: torch.matmul(x, w)  # noqa: E731
            else:
                x = torch.randint(-100, 100, (s, s), device="cuda", dtype=torch.int8)
                w = torch.randint(-100, 100, (s, s), device="cuda", dtype=torch.int8)
                fn = lambda: torch._int_mm(x, w)  # noqa: E731

            def mm(fn=fn):
                fn()
                torch.cuda.synchronize()
            st = measure(mm, 1, point, quick)
            lim(name, 2 * s ** 3 / st["median_ms"] / 1e9, "TFLOP/s" if kind == "f" else "TOP/s",
                f"torch, {s}x{s}x{s}, median of {st['iters']}")
        except Exception as e:  # noqa: BLE001
            rep.limits.append({"name": name, "reason": f"failed: {short_error(e)}"})
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
    x = torch.from_numpy(make_input(8192))
    xp = x.pin_memory()
    d = torch.empty_like(x, device="cuda")
    yo = torch.randn(8192, 10, device="cuda")
    yh, yhp = torch.empty(8192, 10), torch.empty(8192, 10).pin_memory()
    for name, fn, nbytes in (("H2D pageable, batch-8192 input", lambda: d.copy_(x), x.numel() * 4),
                             ("H2D pinned, batch-8192 input", lambda: d.copy_(xp, non_blocking=True), x.numel() * 4),
                             ("D2H pageable, batch-8192 output", lambda: yh.copy_(yo), yo.numel() * 4),
                             ("D2H pinned, batch-8192 output", lambda: yhp.copy_(yo, non_blocking=True), yo.numel() * 4)):
        def once(fn=fn):
            fn()
            torch.cuda.synchronize()
        st = measure(once, 8192, point, quick)
        lim(name, st["median_ms"] * 1e3, "µs", f"torch copy + synchronize, {nbytes / 1e6:.2f} MB, "
            f"{nbytes / st['median_ms'] / 1e6:.2f} GB/s")


def native_peers(args, info, rep, budget):
    """The bare oneDNN chain (1 and all threads, every sweep batch), oneDNN's sgemm rate and one core's L2
    read bandwidth, from the C++ benchmarks bundled beside libkiln (KILN_BENCH_BIN or the bundle's bin/)."""
    bindir = os.environ.get("KILN_BENCH_BIN", "")
    chain = os.path.join(bindir, "bench_onednn_chain")
    l2 = os.path.join(bindir, "bench_l2_stream")
    cores = info["cores"]
    batches = [1, 8192] if args.quick else SWEEP_BATCHES
    min_time = "0.05" if args.quick else "0.15"

    def gbench(exe, threads, extra, min_time=min_time):
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        p = subprocess.run([exe, *extra, f"--benchmark_min_time={min_time}", "--benchmark_format=json"], env=env,
                           capture_output=True, text=True, timeout=max(30, min(200, budget.left())))
        if p.returncode != 0:
            raise RuntimeError(f"{os.path.basename(exe)} exit {p.returncode}: {p.stderr.strip()[-300:]}")
        return json.loads(p.stdout)

    for threads, group, tname in ((1, "cpu-1", "1 thread"), (cores, "cpu-all", "all threads")):
        system = f"oneDNN matmul chain {tname}"
        note = "C++ (Google Benchmark, steady_clock per iteration, no Python), three dnnl::matmul with bias+ReLU"
        try:
            if not os.path.isfile(chain):
                raise RuntimeError(f"not bundled: no {chain} (set KILN_BENCH_BIN)")
            d = gbench(chain, threads, ["--batches=" + ",".join(map(str, batches)), "--benchmark_filter=BM_chain_sweep"])
            info.setdefault("onednn", d.get("context", {}).get("onednn_version"))
            # GEMM rates: a longer run of their own (the first iterations of a 25 ms matmul are slower), rate
            # from the median iteration
            rates = gbench(chain, threads, ["--benchmark_filter=gemm_layer1"], min_time="0.2" if args.quick else "0.6")
            for bm in rates["benchmarks"]:
                kind = ("INT8 (s8 x s8 -> s32)" if bm["name"].startswith("BM_s8gemm")
                        else "BF16 (bf16 x bf16 -> f32)" if bm["name"].startswith("BM_bf16gemm") else "sgemm (f32)")
                rep.limits.append({"name": f"oneDNN {kind} rate, {tname}", "value": bm["flop"] / bm["p50_us"] / 1e6,
                                   "unit": "TOP/s" if "INT8" in kind else "TFLOP/s",
                                   "how": f"one matmul 8192x784x256, OMP_NUM_THREADS={threads}, median of "
                                          f"{int(bm['samples'])}" + (f"; {bm['label']}" if bm.get("label") else ""),
                                   "threads": threads})
            for bm in d["benchmarks"]:
                b = int(bm["batch"])
                st = {"batch": b, "median_ms": bm["p50_us"] / 1e3, "p99_ms": bm["p99_us"] / 1e3,
                      "mean_ms": bm["mean_us"] / 1e3, "min_ms": bm["min_us"] / 1e3, "iters": int(bm["samples"]),
                      "samples_per_s": b * 1e6 / bm["mean_us"], "samples_per_s_median": b * 1e6 / bm["p50_us"]}
                rep.add_point({"system": system, "group": group, "mode": "host", "precision": "fp32", "kind": "peer",
                               "timer": "C++ steady_clock/iter", "note": note, **st})
        except Exception as e:  # noqa: BLE001
            for b in (1, 8192):
                rep.add_point({"system": system, "group": group, "mode": "host", "precision": "fp32", "kind": "peer",
                               "timer": "C++", "note": note, "batch": b, "reason": f"failed: {short_error(e)}"})
    try:
        if not os.path.isfile(l2):
            raise RuntimeError(f"not bundled: no {l2}")
        d = gbench(l2, 1, ["--benchmark_filter=BM_l2_stream/bytes:940584"])
        bm = d["benchmarks"][0]
        rep.limits.append({"name": "L2 read bandwidth, one core", "value": bm["bytes"] / bm["p50_us"] / 1e3,
                           "unit": "GB/s", "how": "AVX-512 sum over the MLP's 940,584 weight bytes, median "
                           f"{bm['p50_us']:.2f} µs"})
    except Exception as e:  # noqa: BLE001
        rep.limits.append({"name": "L2 read bandwidth, one core", "reason": f"failed: {short_error(e)}"})


def extended(args, info, kc, rep, t_start):
    """Builds the line list (Kiln and every peer in every mode), measures limits, runs the lines; returns the
    PyTorch model (for the accuracy table) or None."""
    import numpy as np
    print("== extended (median/p99 of per-iteration timings; every iteration ends in a synchronize)", flush=True)
    budget = Budget(t_start, 100 if args.quick else 420)
    lines = []
    torch_err, model = None, None
    try:
        import torch
        if not torch.cuda.is_available():
            torch_err = f"torch {torch.__version__}: CUDA not available"
        else:
            model, shapes = torch_mlp(args.model)
            info["torch_model"] = f"Flatten, Linear {' -> '.join(str(s) for s in shapes)} with ReLU"
            xv = make_input(8)
            with torch.no_grad():
                yt = model(torch.from_numpy(xv)).numpy()
            try:
                import onnxruntime as ort
                yr = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"]).run(None, {"input": xv})[0]
                err = float(np.max(np.abs(yt - yr)))
                info["torch_model_check"] = f"max |torch FP32 - onnxruntime CPU| = {err:.2e} on 8 inputs"
                if err > 1e-3:
                    torch_err = f"rebuilt torch model disagrees with onnxruntime: max abs diff {err:.3g}"
            except ImportError:
                pass
            model = model.cuda()
    except Exception as e:  # noqa: BLE001
        torch_err = f"torch not usable: {short_error(e)}"

    if torch_err:
        rep.limits.append({"name": "GPU limits (torch)", "reason": torch_err})
    else:
        try:
            gpu_limits(rep, args.quick)
        except Exception as e:  # noqa: BLE001
            rep.limits.append({"name": "GPU limits (torch)", "reason": f"failed: {short_error(e)}"})
    native_peers(args, info, rep, budget)

    for prec in ("fp32", "fp16", "int8"):
        lines += kiln_gpu_lines(args, kc, prec)
    if kc.error:
        for ln in lines:
            ln.failed = kc.error
    if torch_err:
        pt = [Line(f"PyTorch {k} {p}", g, p.lower(), None) for k in ("eager", "CUDA graph") for p in ("FP32", "FP16")
              for g in ("gpu-resident", "gpu-pinned", "gpu-pageable")]
        for ln in pt:
            ln.failed = torch_err
        lines += pt
    else:
        lines += torch_lines(model)
    lines += copy_limit_lines(kc)
    ort_cuda = Line("ORT CUDA EP", "gpu-pageable", "fp32", None, batches=[1, 8192])
    ort_cuda.failed = (f"not available: onnxruntime {info.get('onnxruntime')} has no CUDAExecutionProvider here "
                       f"(providers {info.get('onnxruntime_providers')})")
    lines.append(ort_cuda)
    for prec in ("fp32", "tf32", "int8", "bf16"):
        cpu = kiln_cpu_lines(args, kc, prec)
        for ln in cpu if not kc.version else []:
            ln.failed = kc.error
        lines += cpu
    lines += ort_cpu_lines(args)
    if args.quick:
        for ln in lines:
            ln.batches = [b for b in ln.batches if b in (1, 8192)]
    run_lines(lines, (1, 8192), rep, budget, args)
    compile_rows(args, rep, budget, torch_err)
    return model


def compile_rows(args, rep, budget, torch_err):
    """torch.compile(mode="max-autotune") FP32 and FP16, device-resident, batch 1 and 8192, each precision in
    a child process: compiling leaves dynamo state behind that breaks eager PyTorch in the same process."""
    for prec in ("fp32", "fp16"):
        base = {"system": f"PyTorch torch.compile max-autotune {prec.upper()}", "group": "gpu-resident",
                "mode": "device-resident", "precision": prec, "kind": "peer", "timer": "perf_counter/iter",
                "note": "torch.compile(nn.Module, mode='max-autotune', dynamic=False) per batch, in a child "
                        "process, under torch.no_grad(); input rotated as the other rows"}
        reason = ("skipped in --quick (compiling takes minutes)" if args.quick else torch_err
                  or (f"skipped: {budget.left():.0f} s of the time budget left, compiling needs more"
                      if budget.left() < 150 else None))
        rows = {}
        if not reason:
            cmd = [sys.executable, os.path.abspath(__file__), "--child-compile", "--model", args.model,
                   "--child-plan", json.dumps({"precision": prec, "batches": [1, 8192], "point_s": 0.5})]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(60, budget.left() - 30))
                for ln in p.stdout.splitlines():
                    if ln.startswith("{"):
                        r = json.loads(ln)
                        rows[r["batch"]] = r
                        print(f"  torch.compile {prec} b{r['batch']}: compiled in {r.get('compile_s', 0):.1f} s",
                              flush=True)
                if not rows:
                    reason = f"failed: child exit {p.returncode}: {p.stderr.strip()[-300:]}"
            except subprocess.TimeoutExpired:
                reason = "failed: the compile child ran past the time budget"
        for b in (1, 8192):
            r = rows.get(b)
            if r is None:
                rep.add_point({**base, "batch": b, "reason": reason or "no result from the compile child"})
            elif "error" in r:
                rep.add_point({**base, "batch": b, "reason": f"failed: {r['error']}"})
            else:
                rep.add_point({**base, **r, "note": base["note"] + f"; compiled in {r['compile_s']:.0f} s"})


def compile_child(args):
    """Child of compile_rows: prints one JSON line per batch."""
    import torch
    plan = json.loads(args.child_plan)
    dt = torch.float16 if plan["precision"] == "fp16" else torch.float32
    model, _ = torch_mlp(args.model)
    model = model.cuda().to(dt)

    class Fp32IO(torch.nn.Module):  # same input and output as every other row
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x.to(dt)).float()
    for b in plan["batches"]:
        out = {"batch": b}
        try:
            torch._dynamo.reset()
            f = torch.compile(Fp32IO(model).eval(), mode="max-autotune", dynamic=False)
            x = make_input(b)
            xs = [torch.from_numpy(x).cuda() for _ in range(rotation(x.nbytes))]
            with torch.no_grad():
                t0 = time.perf_counter()
                y = f(xs[0])
                torch.cuda.synchronize()
                out["compile_s"] = time.perf_counter() - t0
                if tuple(y.shape) != (b, 10) or not bool(torch.isfinite(y).all()):
                    raise RuntimeError(f"bad output {tuple(y.shape)}")
                i = [0]

                def once():
                    f(xs[i[0] % len(xs)])
                    i[0] += 1
                    torch.cuda.synchronize()
                out.update(measure(once, b, plan["point_s"], False))
        except Exception as e:  # noqa: BLE001
            out["error"] = short_error(e)
        print(json.dumps(out), flush=True)


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
    systems = [(f"Kiln CPU {p.upper()}", "cpu", p) for p in ("fp32", "tf32", "int8", "bf16")] + \
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


# ---------------------------------------------------------------- floors, ratios, output

def limit_value(rep, prefix):
    r = next((r for r in rep.limits if r["name"].startswith(prefix) and "value" in r), None)
    return r["value"] if r else None


def compute_floors(rep, info):
    """Per-row floors from the limits measured in this run (see the report's Floors section)."""
    F = {"launch_us": min([v for v in (limit_value(rep, "tiny kernel launch"), limit_value(rep, "CUDA graph replay"))
                           if v is not None], default=None),
         "hbm": limit_value(rep, "HBM bandwidth"), "fp32": limit_value(rep, "cuBLAS FP32"),
         "fp16": limit_value(rep, "cuBLAS FP16"), "int8": limit_value(rep, "cuBLAS INT8"),
         "sgemm1": limit_value(rep, "oneDNN sgemm (f32) rate, 1 thread"),
         "sgemm_all": limit_value(rep, "oneDNN sgemm (f32) rate, all threads"),
         "s8gemm1": limit_value(rep, "oneDNN INT8 (s8 x s8 -> s32) rate, 1 thread"),
         "s8gemm_all": limit_value(rep, "oneDNN INT8 (s8 x s8 -> s32) rate, all threads"),
         "bf16gemm1": limit_value(rep, "oneDNN BF16 (bf16 x bf16 -> f32) rate, 1 thread"),
         "bf16gemm_all": limit_value(rep, "oneDNN BF16 (bf16 x bf16 -> f32) rate, all threads"),
         "l2": limit_value(rep, "L2 read bandwidth"), "cores": info["cores"]}
    F["copies"] = {(r["group"], r["batch"]): r["median_ms"] for r in rep.points
                   if r["kind"] == "limit" and "median_ms" in r}
    return F


def floor_of(r, F):
    """(floor ms, what bounds it) for a row, or (None, why not)."""
    b, p, g = r["batch"], r["precision"], r["group"]
    if p not in WEIGHT_BYTES:
        return None, ""
    flop = FLOP_PER_SAMPLE * b
    parts = []
    if g.startswith("gpu"):
        if F["launch_us"]:
            parts.append((F["launch_us"] / 1e3, "launch+sync"))
        if F["hbm"]:
            parts.append(((b * 784 * 4 + b * 40 + WEIGHT_BYTES[p]) / F["hbm"] / 1e6, "HBM"))
        peak = F.get({"tf32": "fp16"}.get(p, p))
        if peak:
            parts.append((flop / peak / 1e9, "tensor/SIMT peak"))
        if g != "gpu-resident":
            c = F["copies"].get((g, b))
            if c:
                parts.append((c, "copies"))
    else:
        cores = 1 if g == "cpu-1" else F["cores"]
        # TF32 on the CPU: float32 FMA or three bf16 products per multiply-add (bf16x3, the row forces it), so its
        # floor is the faster of the sgemm rate and a third of the bf16 rate.
        rate = F[{"int8": "s8gemm", "bf16": "bf16gemm"}.get(p, "sgemm") + ("1" if g == "cpu-1" else "_all")]
        x3 = F["bf16gemm" + ("1" if g == "cpu-1" else "_all")] if p == "tf32" else None
        if F["l2"]:
            parts.append((WEIGHT_BYTES[p] / (F["l2"] * cores) / 1e6, "L2 weight stream"))
        if x3 and (not rate or x3 / 3 > rate):
            parts.append((3 * flop / x3 / 1e9, "oneDNN BF16 GEMM rate / 3 (bf16x3)"))
        elif rate:
            parts.append((flop / rate / 1e9, {"int8": "oneDNN INT8 GEMM rate", "bf16": "oneDNN BF16 GEMM rate"}.get(
                p, "oneDNN sgemm rate")))
    if not parts:
        return None, "limits not measured"
    return max(parts)


def best_peer(rep, group, batch):
    peers = [r for r in rep.points if r["group"] == group and r["batch"] == batch and r["kind"] == "peer"
             and "median_ms" in r]
    return min(peers, key=lambda r: r["median_ms"]) if peers else None


def fms(v):
    return "–" if v is None else (f"{v:.4f}" if v < 1 else f"{v:.3f}" if v < 100 else f"{v:.1f}")


def write_outputs(args, info, rep):
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{info['date_utc'][:10]}-{info['gpu_tag']}-compare")
    F = compute_floors(rep, info)
    for r in rep.points:
        if "median_ms" in r and r["kind"] != "limit":
            fl, why = floor_of(r, F)
            if fl:
                r["floor_ms"], r["floor_bound"], r["x_floor"] = fl, why, r["median_ms"] / fl
            bp = best_peer(rep, r["group"], r["batch"]) if r["kind"] == "kiln" else None
            if bp:
                r["best_peer"], r["vs_best_peer"] = f"{bp['system']}", bp["median_ms"] / r["median_ms"]
    L = [f"# Kiln vs peers on models/mlp.onnx: {info['gpu']}", "",
         f"- date: {info['date_utc']} UTC, commit: {info['commit'] or 'unknown'}",
         f"- GPU: {info['gpu']}, driver {info['driver']}; clocks seen (sm, mem, max sm, power, temp): "
         f"{info['gpu_clocks_seen'] or 'n/a'} (not set by us)",
         f"- CPU: {info['cpu']}, {info['cores']} cores; threads: ORT course child {info.get('ort_child_env')}, "
         "extended rows name their threads (OMP_NUM_THREADS for the oneDNN chain, intra_op_num_threads for ORT, "
         "set_num_threads for Kiln)",
         f"- Python {info['python']}, numpy {info['numpy']}, onnxruntime {info.get('onnxruntime')} "
         f"(providers {info.get('onnxruntime_providers')}), torch {info['torch']}, oneDNN {info.get('onednn')}, "
         f"kiln {info.get('kiln')} ({info.get('kiln_device')})",
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
    L += summary_lines(rep)
    L += ["## Limits measured in this run", "", "| limit | value | how |", "|---|--:|---|"]
    for r in rep.limits:
        L.append(f"| {r['name']} | " + (f"{r['value']:,.4g} {r['unit']} | {r['how']} |" if "value" in r
                                        else f"– | {r['reason']} |"))
    L += ["", "Floors per row: the largest of the bounds that apply, each from the limits above. GPU: launch+sync "
          "(the cheaper of the two), bytes (FP32 input + output + weights of the row's precision) / HBM bandwidth, "
          "FLOPs (3.85 GFLOP at batch 8192) / the cuBLAS peak of the row's precision, and for end-to-end rows the "
          "copies of input and output measured at the same batch. CPU: weight bytes / L2 read bandwidth (per core "
          "x cores for all threads) and FLOPs / oneDNN's GEMM rate of the row's precision on as many threads (f32, "
          "s8 x s8 -> s32 for INT8, bf16 x bf16 -> f32 for BF16, one 8192x784x256 matmul). `x floor` = median / floor; `vs best peer` = best peer median / Kiln "
          "median in the same group (> 1: Kiln faster).", ""]
    L += ["## Extended", "",
          "Each iteration timed on its own and ending in a synchronize; iterations fill a fixed time per point "
          f"(at least 10); device-resident inputs rotate through >= {ROTATE_BYTES >> 20} MiB of buffers (at most "
          f"{MAX_BUFFERS}). Kiln CUDA engines have the course's batch-8192 profile (1/8192/8192); Kiln CPU engines "
          "the same profile. PyTorch rows take the same FP32 input and return FP32 logits.", ""]
    for batch in (1, 8192):
        L += [f"### Batch {batch}", ""]
        for key, title in GROUPS:
            rows = [r for r in rep.points if r["group"] == key and r["batch"] == batch and r["kind"] != "limit"]
            if not rows:
                continue
            L += [f"**{title}**", "",
                  "| system | prec | median ms | p99 ms | mean ms | samples/s | floor ms (bound) | x floor | "
                  "vs best peer | note |", "|---|---|--:|--:|--:|--:|---|--:|---|---|"]
            for r in sorted(rows, key=lambda r: r.get("median_ms", 1e30)):
                if "reason" in r:
                    L.append(f"| {r['system']} | {r['precision']} | – | – | – | – | – | – | – | {r['reason']} |")
                    continue
                vs = (f"{r['vs_best_peer']:.2f}x ({r['best_peer']})" if "vs_best_peer" in r else "")
                fl = f"{fms(r['floor_ms'])} ({r['floor_bound']})" if "floor_ms" in r else "–"
                xf = f"{r['x_floor']:.1f}" if "x_floor" in r else "–"
                L.append(f"| {'**' + r['system'] + '**' if r['kind'] == 'kiln' else r['system']} | {r['precision']} | "
                         f"{fms(r['median_ms'])} | {fms(r['p99_ms'])} | {fms(r['mean_ms'])} | "
                         f"{r['samples_per_s_median']:,.0f} | {fl} | {xf} | {vs} | {r['note']} |")
            L.append("")
    keys = []
    for r in rep.points:
        if (r["system"], r["group"]) not in keys:
            keys.append((r["system"], r["group"]))
    batches = sorted({r["batch"] for r in rep.points})
    L += ["## Batch sweep (median ms per batch)", "",
          "| system | mode | " + " | ".join(str(b) for b in batches) + " |", "|---|---|" + "--:|" * len(batches)]
    for sysname, group in keys:
        cells = []
        for b in batches:
            r = next((r for r in rep.points if (r["system"], r["group"], r["batch"]) == (sysname, group, b)), None)
            cells.append("" if r is None else "–" if "reason" in r else f"{r['median_ms']:.3g}")
        L.append(f"| {sysname} | {MODE_OF_GROUP[group]} | " + " | ".join(cells) + " |")
    L.append("")
    png = stem + "-sweep.png"
    chart = make_sweep_chart(png, rep)
    L += [f"![latency and throughput vs batch]({os.path.basename(png)})" if chart is True
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
    if rep.notes:
        L += ["## Failures (tracebacks)", "", "```"] + rep.notes + ["```", ""]
    with open(stem + ".md", "w") as f:
        f.write("\n".join(L))
    with open(stem + ".json", "w") as f:
        json.dump({"info": info, "course_method": {str(k): v for k, v in rep.course.items()},
                   "course_figures": {str(k): [dict(zip(("method", "mean_ms", "samples_per_s", "note"), r))
                                               for r in v] for k, v in COURSE.items()},
                   "limits": rep.limits, "floors_from": {k: v for k, v in F.items() if k != "copies"},
                   "points": rep.points, "accuracy": rep.accuracy}, f, indent=2)
    print(f"compare.py: wrote {stem}.md, .json" + (", -sweep.png" if chart is True else "") +
          f" in {info['elapsed_s']} s", flush=True)


def render(args):
    with open(args.render) as f:
        d = json.load(f)
    rep = Report()
    rep.course = {int(k): v for k, v in d["course_method"].items()}
    rep.points, rep.limits, rep.accuracy = d["points"], d["limits"], d["accuracy"]
    write_outputs(args, d["info"], rep)


def summary_lines(rep):
    """Per group and batch: Kiln's fastest row and its fastest row at the best peer's precision, against the
    best peer, and Kiln's distance to its floor."""
    L = ["## Summary: Kiln against the best peer, per group", "",
         "| batch | group | best peer | median ms | Kiln fastest | median ms | vs peer | x floor | "
         "Kiln at the peer's precision | median ms | vs peer |", "|--:|---|---|--:|---|--:|--:|--:|---|--:|--:|"]
    for batch in (1, 8192):
        for key, title in GROUPS:
            kiln = [r for r in rep.points if r["group"] == key and r["batch"] == batch and r["kind"] == "kiln"
                    and "median_ms" in r]
            peer = best_peer(rep, key, batch)
            if not kiln:
                continue
            k = min(kiln, key=lambda r: r["median_ms"])
            same = [r for r in kiln if peer and r["precision"] == peer["precision"]]
            ks = min(same, key=lambda r: r["median_ms"]) if same else None
            ratio = (lambda r: f"{peer['median_ms'] / r['median_ms']:.2f}x" if peer and r else "–")
            L.append(f"| {batch} | {title.split(' (')[0]} | {peer['system'] if peer else '–'} | "
                     f"{fms(peer['median_ms']) if peer else '–'} | {k['system']} | {fms(k['median_ms'])} | {ratio(k)} | "
                     f"{k['x_floor']:.1f} | " if "x_floor" in k else "– | ")
            L[-1] += (f"{ks['system']} | {fms(ks['median_ms'])} | {ratio(ks)} |" if ks else "– | – | – |")
    return L + ["", "vs peer: best peer median / Kiln median (> 1: Kiln faster). x floor: Kiln's median over the "
                "row's floor (see Floors).", ""]


def make_sweep_chart(png, rep):
    """Latency (top) and throughput (bottom) vs batch, log-log, one line per system; a panel per place of the
    data (GPU device-resident, GPU end to end, CPU); the copy limits dashed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception as e:  # noqa: BLE001
        return f"matplotlib not available ({type(e).__name__})"
    try:
        panels = [("GPU, device-resident", ("gpu-resident",)), ("GPU, end to end (pinned —, pageable ··)",
                                                                ("gpu-pinned", "gpu-pageable")),
                  ("CPU (1 thread —, all threads ··)", ("cpu-1", "cpu-all"))]
        fig, axes = plt.subplots(2, 3, figsize=(21, 11))
        names = []  # one colour per system across the panels (tab20: enough for every line of a panel)
        for r in rep.points:
            if r["system"] not in names and not r["system"].startswith("limit"):
                names.append(r["system"])
        cmap = plt.get_cmap("tab20")
        color = {n: cmap(i % 20) for i, n in enumerate(names)}
        for col, (title, groups) in enumerate(panels):
            keys = []
            for r in rep.points:
                if r["group"] in groups and (r["system"], r["group"]) not in keys:
                    keys.append((r["system"], r["group"]))
            for sysname, group in keys:
                pts = [(r["batch"], r["median_ms"]) for r in rep.points
                       if (r["system"], r["group"]) == (sysname, group) and "median_ms" in r]
                if len(pts) < 2:
                    continue
                b, ms = zip(*sorted(pts))
                dotted = group in ("gpu-pageable", "cpu-all")
                if sysname.startswith("limit"):
                    style = dict(linestyle="--" if not dotted else ":", color="black", linewidth=1.5)
                else:
                    style = dict(marker="o", markersize=3, linestyle=":" if dotted else "-", color=color[sysname],
                                 linewidth=2.2 if sysname.startswith("Kiln") else 1)
                label = sysname if len(groups) == 1 else f"{sysname} [{MODE_OF_GROUP[group]}]"
                axes[0][col].plot(b, ms, label=label, **style)
                axes[1][col].plot(b, [bb * 1e3 / m for bb, m in zip(b, ms)], label=label, **style)
            for row, yl in ((0, "median latency (ms)"), (1, "samples/s (from the median)")):
                ax = axes[row][col]
                ax.set_xscale("log", base=2)
                ax.set_yscale("log")
                ax.set_xlabel("batch")
                ax.set_ylabel(yl)
                ax.set_title(f"{title}: {'latency' if row == 0 else 'throughput'}", fontsize=10)
                ax.grid(True, which="both", alpha=0.3)
            axes[1][col].legend(fontsize=6, loc="upper left")
        fig.suptitle("models/mlp.onnx: Kiln (thick) and peers vs batch", fontsize=12)
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)
        return True
    except Exception as e:  # noqa: BLE001
        return f"chart failed: {short_error(e)}"


if __name__ == "__main__":
    main()
