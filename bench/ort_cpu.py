#!/usr/bin/env python3
"""ONNX Runtime CPU peer for Kiln's CPU runtime, through the Python API.

    python3 bench/ort_cpu.py --model models/mlp.onnx --threads 1 --out ort_t1.json

Times session.run on models/mlp.onnx at batch 1 (100 warm-up, 2000 timed runs) and batch 8192 (5 warm-up,
50 timed runs), one perf_counter reading per run, and reports median, p99 and mean in milliseconds. The input
is np.random.seed(123) randn float32, never zeros. --threads sets intra_op_num_threads (0 = every core this
process may use). For one thread, OMP_NUM_THREADS and MKL_NUM_THREADS are set to 1 before onnxruntime is
imported, so no library under it starts a pool of its own (the shell that runs it should set them too).
"""
import argparse
import json
import os
import platform
import sys
import time


def percentile(sorted_vals, p):
    # Same rule as trtexec and kiln: drop the top (1 - p/100) fraction and take the largest of the rest.
    n = len(sorted_vals)
    i = max(0, min(n - 1, int(n * p / 100.0 + 0.5) - 1))
    return sorted_vals[i]


def stats_ms(seconds):
    v = sorted(s * 1e3 for s in seconds)
    n = len(v)
    median = v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])
    return {"count": n, "min_ms": v[0], "max_ms": v[-1], "mean_ms": sum(v) / n, "median_ms": median,
            "p90_ms": percentile(v, 90), "p99_ms": percentile(v, 99)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "models", "mlp.onnx"))
    ap.add_argument("--threads", type=int, default=1, help="intra_op_num_threads; 0 = all cores")
    ap.add_argument("--batches", default="1,8192", help="comma-separated batch sizes")
    ap.add_argument("--out", help="write results as JSON here")
    args = ap.parse_args()

    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads if args.threads > 0 else nproc
    if threads == 1:
        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(args.model, sess_options=so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    out_name = sess.get_outputs()[0].name

    # (warm-up, timed runs) per batch, as in the issue.
    plan = {1: (100, 2000), 8192: (5, 50)}
    results = []
    for batch in [int(b) for b in args.batches.split(",")]:
        warmup, iters = plan.get(batch, (10, 200))
        np.random.seed(123)
        x = np.random.randn(batch, 1, 28, 28).astype(np.float32)
        feeds = {in_name: x}
        for _ in range(warmup):
            y = sess.run([out_name], feeds)[0]
        if not np.all(np.isfinite(y)) or y.shape != (batch, 10):
            sys.exit(f"ort_cpu.py: bad output {y.shape} at batch {batch}")
        samples = []
        run = sess.run
        for _ in range(iters):
            t0 = time.perf_counter()
            run([out_name], feeds)
            samples.append(time.perf_counter() - t0)
        s = stats_ms(samples)
        s.update({"batch": batch, "threads": threads, "warmup": warmup,
                  "throughput_qps": batch * 1e3 / s["median_ms"]})
        results.append(s)

    doc = {"peer": "onnxruntime-cpu-python", "onnxruntime_version": ort.__version__, "numpy_version": np.__version__,
           "python_version": platform.python_version(), "model": os.path.abspath(args.model), "threads": threads,
           "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ},
           "providers": sess.get_providers(), "input": "np.random.seed(123); randn float32", "results": results}

    print(f"ONNX Runtime {ort.__version__} CPU (Python API), intra_op_num_threads={threads}")
    print(f"{'batch':>6} {'runs':>6} {'median ms':>12} {'p99 ms':>12} {'mean ms':>12} {'qps':>12}")
    for r in results:
        print(f"{r['batch']:>6} {r['count']:>6} {r['median_ms']:>12.5f} {r['p99_ms']:>12.5f} {r['mean_ms']:>12.5f} "
              f"{r['throughput_qps']:>12.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=2)


if __name__ == "__main__":
    main()
