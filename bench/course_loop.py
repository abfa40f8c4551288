"""The course's own loop (TrtRunner.infer_once on pageable numpy: memcpy_htod_async, execute_async_v3,
memcpy_dtoh_async, synchronize), timed apart: A/B rows alternated in one process, so that the course table's
Kiln rows can be explained and moved.

- batch 1: the course's engine (profile 1/1/1) against the 1/8192/8192 engine compare.py's extended rows use,
  through the course's loop and through the simple API (engine.infer); the loop's parts alone (the copy in,
  execute + synchronize, the copy out).
- batch 8192: memcpy_htod_async of the 25.7 MB input through Kiln's staging threads (the default) against the
  driver's own staging (KILN_PAGEABLE_COPY=driver); the copies alone, each with a synchronize.

Prints a markdown section (stdout); --json writes the rows. Usage: python3 bench/course_loop.py [--json F]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import compare  # noqa: E402  (TrtRunner, KilnCtx, time_loop, make_input: the course's loop as compare.py runs it)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(compare.ROOT, "models", "mlp.onnx"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="kiln-course-")
    kc = compare.KilnCtx(workdir)
    if kc.error:
        sys.exit(f"course_loop: {kc.error}")
    cuda = kc.kiln.cuda
    rows = []

    def row(what, batch, variant, r):
        rows.append({"what": what, "batch": batch, "variant": variant, **r})
        print(f"| {what} | {batch} | {variant} | {r['mean_ms']:.4f} | {r['median_ms']:.4f} | {r['p99_ms']:.4f} |", flush=True)

    def set_copy(mode):
        if mode == "driver":
            os.environ["KILN_PAGEABLE_COPY"] = "driver"
        else:
            os.environ.pop("KILN_PAGEABLE_COPY", None)

    print("## The course's loop, timed apart (bench/course_loop.py)\n")

    # ---- batch 1: the course's 1/1/1 engine against the 1/8192/8192 one, alternated.
    runners = {}
    for prof in ((1, 1, 1), (1, 8192, 8192)):
        path, _ = kc.engine_file(args.model, "fp16", *prof)
        runners[prof] = compare.TrtRunner(path, (1, 1, 28, 28))
    # The 1/1/1 engine's tactic chosen by CUDA graph replays alone (KILN_FUSED_MLP_TUNE_HOST=0 at build), as
    # before GPU run 33: per-layer cuBLASLt, four launches per call (src/backends/cuda/fused_mlp.cpp).
    tuned = {}
    path_host = os.path.join(workdir, "mlp_fp16_1_1_1_tune_graph.engine")
    os.environ["KILN_FUSED_MLP_TUNE_HOST"] = "0"
    try:
        shp = {"input": (1, 1, 28, 28)}
        kc.kiln.build(args.model, device="cuda", fp16=True, tf32=True, min_shapes=shp, opt_shapes=shp,
                      max_shapes=shp, save=path_host)
        tuned["1/1/1 tuned by graph replays alone"] = compare.TrtRunner(path_host, (1, 1, 28, 28))
    except Exception as e:  # noqa: BLE001  (report and go on)
        print(f"(1/1/1 engine with KILN_FUSED_MLP_TUNE_HOST=0 not built: {e})")
    finally:
        os.environ.pop("KILN_FUSED_MLP_TUNE_HOST", None)
    # Which tactic each engine's builder picked (kiln inspect, bundled beside libkiln as compare.py's benchmarks).
    kiln_exe = os.path.join(os.environ.get("KILN_BENCH_BIN", ""), "kiln")
    if os.path.exists(kiln_exe):
        files = {f"{p[0]}/{p[1]}/{p[2]}": kc.engine_file(args.model, "fp16", *p)[0] for p in runners}
        if tuned:
            files["1/1/1 tuned by graph replays alone"] = path_host
        for name, f in files.items():
            out = subprocess.run([kiln_exe, "inspect", "--loadEngine", f], capture_output=True, text=True, timeout=60)
            print(f"kiln inspect, FP16 engine {name} (exit {out.returncode}):\n```")
            print("\n".join((out.stdout + out.stderr).splitlines()[:40]))
            print("```\n")
    print("Mean = (t1 - t0) / iterations around the loop, as the course; median and p99 of the same iterations (ms).\n")
    print("| what | batch | variant | mean | median | p99 |\n|---|--:|---|--:|--:|--:|")
    x1 = compare.make_input(1)
    for rep in range(args.reps):
        for prof, runner in runners.items():
            r = compare.time_loop(lambda: runner.infer_once(x1), 100, 1000, 1, final_sync=cuda.Context.synchronize)
            row("infer_once", 1, f"FP16 engine {prof[0]}/{prof[1]}/{prof[2]}, rep {rep + 1}", r)
        for name, runner in tuned.items():
            r = compare.time_loop(lambda: runner.infer_once(x1), 100, 1000, 1, final_sync=cuda.Context.synchronize)
            row("infer_once", 1, f"FP16 engine {name}, rep {rep + 1}", r)
    engines = {prof: kc.kiln.load(kc.engine_file(args.model, "fp16", *prof)[0]) for prof in runners}
    for rep in range(args.reps):  # the simple API (engine.infer on numpy), as the course table's second row
        for prof, eng in engines.items():
            feeds = {"input": x1}
            eng.infer(feeds)
            r = compare.time_loop(lambda: eng.infer(feeds), 100, 1000, 1)
            row("engine.infer", 1, f"FP16 engine {prof[0]}/{prof[1]}/{prof[2]}, rep {rep + 1}", r)
    # engine.set_low_latency(): the simple API's small batches through the resident kernel (a second engine
    # object, so that the rows above keep the standard path).
    ll_engines = {}
    for prof in runners:
        eng = kc.kiln.load(kc.engine_file(args.model, "fp16", *prof)[0])
        eng.set_low_latency()
        eng.infer({"input": x1})
        if not eng.last_infer_low_latency:
            print(f"(engine {prof}: set_low_latency() did not take infer() to the resident kernel)")
        ll_engines[prof] = eng
    for rep in range(args.reps):
        for prof, eng in ll_engines.items():
            feeds = {"input": x1}
            r = compare.time_loop(lambda: eng.infer(feeds), 100, 1000, 1)
            row("engine.infer, set_low_latency()", 1, f"FP16 engine {prof[0]}/{prof[1]}/{prof[2]}, rep {rep + 1}", r)
    for eng in ll_engines.values():
        eng.set_low_latency(False)
    ll_engines.clear()
    for prof, runner in runners.items():  # the parts alone, each ending in a synchronize
        name = f"{prof[0]}/{prof[1]}/{prof[2]}"
        y1 = runner.np.empty(runner.out_shape, dtype=runner.out_dtype)

        def htod(runner=runner):
            cuda.memcpy_htod_async(runner.d_in, x1, runner.stream)
            runner.stream.synchronize()

        def dtoh(runner=runner, y1=y1):
            cuda.memcpy_dtoh_async(y1, runner.d_out, runner.stream)
            runner.stream.synchronize()

        row("memcpy_htod_async + sync", 1, name, compare.time_loop(htod, 100, 1000, 1))
        row("execute_async_v3 + sync", 1, name, compare.time_loop(runner.compute_once, 100, 1000, 1))
        row("memcpy_dtoh_async + sync", 1, name, compare.time_loop(dtoh, 100, 1000, 1))

    # ---- batch 8192: Kiln's staging against the driver's, alternated.
    path, _ = kc.engine_file(args.model, "fp16", 1, 8192, 8192)
    runner = compare.TrtRunner(path, (8192, 1, 28, 28))
    x = compare.make_input(8192)
    y = runner.np.empty(runner.out_shape, dtype=runner.out_dtype)
    ref = None
    for rep in range(args.reps):
        for mode in ("driver", "staged"):
            set_copy(mode)
            out = runner.infer_once(x)
            if ref is None:
                ref = out.copy()
            elif not (out == ref).all():
                sys.exit(f"course_loop: batch 8192 output differs with KILN_PAGEABLE_COPY={mode}")
            r = compare.time_loop(lambda: runner.infer_once(x), 5, 50, 8192, final_sync=cuda.Context.synchronize)
            row("infer_once", 8192, f"{mode} staging, rep {rep + 1}", r)

            def htod():
                cuda.memcpy_htod_async(runner.d_in, x, runner.stream)
                runner.stream.synchronize()

            def dtoh():
                cuda.memcpy_dtoh_async(y, runner.d_out, runner.stream)
                runner.stream.synchronize()

            row("memcpy_htod_async + sync", 8192, f"{mode} staging, rep {rep + 1}", compare.time_loop(htod, 5, 50, 8192))
            row("memcpy_dtoh_async + sync", 8192, f"{mode} staging, rep {rep + 1}", compare.time_loop(dtoh, 5, 50, 8192))
    set_copy("staged")
    # The staged upload's 0.68 ms against the pinned copy's 0.48 (run 32): the staging threads' rate. The
    # copy in alone at several thread counts (KILN_PAGEABLE_COPY_THREADS, the caller included; default 8).
    for rep in range(2):
        for threads in (2, 3, 4, 6, 8):
            os.environ["KILN_PAGEABLE_COPY_THREADS"] = str(threads)

            def htod():
                cuda.memcpy_htod_async(runner.d_in, x, runner.stream)
                runner.stream.synchronize()

            row("memcpy_htod_async + sync", 8192, f"staged, {threads} threads, rep {rep + 1}",
                compare.time_loop(htod, 5, 50, 8192))
    os.environ.pop("KILN_PAGEABLE_COPY_THREADS", None)
    print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": kc.device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
