#!/usr/bin/env python3
"""Merge one bench/run_cpu_bench.sh run into a results page: <out>.md and <out>.json.

    python3 bench/summarize.py --raw RAW_DIR --out bench/results/2026-11-24-devbox-cpu --commit HASH

RAW_DIR holds what run_cpu_bench.sh wrote: lscpu.txt, system.txt, l2_stream.json, onednn_t<T>.json,
ort_t<T>.json, kiln_b<B>_t<T>.json and steps.tsv. Missing files become "not run" cells, never errors, so a
partial run still gives a page. Every time in the page is a median of per-run times; p99 beside it.

Kiln's JSON (kiln run --exportJSON): batch and threads come from the file name (and are checked against its
"batch" and "threads"); the latency statistics, in milliseconds, from its "latency_ms" object ("median",
"percentile99", "mean", "count"). See find_kiln_latency().
"""
import argparse
import glob
import json
import os
import re
import sys

WEIGHT_BYTES = 235146 * 4
# Goals and the peers' reference times from the issue, measured on the GPU machine's 16-core Sapphire Rapids
# Xeon on 2026-11-24 (ms). Shown for context; the comparison that counts is against the peers of this run.
ISSUE_GOAL_MS = {(1, 1): 0.010, (8192, 1): 26.0, (8192, 16): 2.0}
ISSUE_REF_MS = {"onednn": {(1, 1): 0.0150, (8192, 1): 29.4, (8192, 16): 3.73},
                "ort": {(1, 1): 0.0200, (8192, 1): 37.7, (8192, 16): 4.65}}
FLAGS_OF_NOTE = ["avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_int8",
                 "amx_bf16"]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_time(ms):
    if ms is None:
        return "—"
    if ms < 1.0:
        return f"{ms * 1e3:.2f} µs"
    return f"{ms:.3f} ms" if ms < 10 else f"{ms:.2f} ms"


def fmt_ratio(x):
    return "—" if x is None else f"{x:.2f}"


# ---- Google Benchmark JSON (bench_onednn_chain, bench_l2_stream) ------------------------------------------

def gbench_rows(doc):
    """{run_name: {counter: value}} from the 'median' aggregates (or plain runs when there are none)."""
    rows = {}
    if not doc:
        return rows
    for b in doc.get("benchmarks", []):
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        rows[b.get("run_name", b["name"])] = b
    return rows


def gbench_find(rows, prefix, arg):
    for name, b in rows.items():
        if name.startswith(prefix) and re.search(rf"/\w+:{arg}(/|$)", name):
            return b
    return None


def onednn_entry(doc, batch, bench="BM_chain/"):
    b = gbench_find(gbench_rows(doc), bench, batch)
    if not b:
        return None
    return {"median_ms": b["p50_us"] / 1e3, "p99_ms": b["p99_us"] / 1e3, "mean_ms": b["mean_us"] / 1e3,
            "omp_threads": int(b.get("omp_threads", 0)), "impl": b.get("label", ""), "samples": int(b["samples"])}


def kiln_api_entry(doc, batch, engine=0):
    """Kiln's engine timed by bench_kiln_engine: the same harness as the chain, no CLI loop around it. Its
    runs are named BM_kiln/batch:B/threads:T/engine:E; threads 0 is all of OMP_NUM_THREADS, which the script
    sets to the row's thread count. engine: 0 fused (default rule), 2 onednn_rows, 3 bf16."""
    rows = gbench_rows(doc)
    b = next((v for k, v in rows.items() if k.startswith(f"BM_kiln/batch:{batch}/threads:0/engine:{engine}")), None)
    if not b:
        return None
    return {"median_ms": b["p50_us"] / 1e3, "p99_ms": b["p99_us"] / 1e3, "mean_ms": b["mean_us"] / 1e3,
            "samples": int(b["samples"])}


def sgemm_entry(doc):
    b = gbench_find(gbench_rows(doc), "BM_sgemm_layer1/", 8192)
    if not b:
        return None
    ms = b["p50_us"] / 1e3
    return {"median_ms": ms, "flop": b["flop"], "gflops": b["flop"] / (ms * 1e-3) / 1e9}


def l2_entry(doc, nbytes=WEIGHT_BYTES):
    b = gbench_find(gbench_rows(doc), "BM_l2_stream/", nbytes)
    if not b:
        return None
    ms = b["p50_us"] / 1e3
    return {"bytes": nbytes, "median_ms": ms, "p99_ms": b["p99_us"] / 1e3, "gb_per_s": nbytes / (ms * 1e-3) / 1e9}


# ---- ONNX Runtime (bench/ort_cpu.py) ----------------------------------------------------------------------

def ort_entry(doc, batch):
    for r in (doc or {}).get("results", []):
        if r["batch"] == batch:
            return {k: r[k] for k in ("median_ms", "p99_ms", "mean_ms", "count")}
    return None


# ---- Kiln (kiln run --exportJSON) -------------------------------------------------------------------------

def _first_dict_with(doc, keys):
    if isinstance(doc, dict):
        if any(k in doc for k in keys):
            return doc
        if isinstance(doc.get("latency"), dict):
            return _first_dict_with(doc["latency"], keys)
        for v in doc.values():
            found = _first_dict_with(v, keys)
            if found is not None:
                return found
    elif isinstance(doc, list):
        for v in doc:
            found = _first_dict_with(v, keys)
            if found is not None:
                return found
    return None


def find_kiln_latency(doc):
    # kiln run --exportJSON (tools/kiln/run_cmd.cpp): {"batch", "threads", "iterations", "throughput_qps",
    # "latency_ms": {"min", "max", "mean", "median", "percentile90", "percentile95", "percentile99", ...}}.
    lat = None
    if isinstance(doc, dict):
        lat = next((doc[k] for k in ("latency_ms", "latency") if isinstance(doc.get(k), dict)), None)
    lat = lat or _first_dict_with(doc, ("median_ms", "median"))
    if lat is None:
        return None

    def pick(*names):
        for n in names:
            if isinstance(lat.get(n), (int, float)):
                return float(lat[n])
        return None

    out = {"median_ms": pick("median_ms", "median"), "p99_ms": pick("p99_ms", "percentile99", "p99"),
           "mean_ms": pick("mean_ms", "mean"), "count": pick("count", "runs")}
    return out if out["median_ms"] is not None else None


def kiln_entry(raw, batch, threads, prefix="kiln"):
    doc = load(os.path.join(raw, f"{prefix}_b{batch}_t{threads}.json"))
    if doc is None:
        return None
    lat = find_kiln_latency(doc)
    if lat is None:
        print(f"summarize.py: kiln_b{batch}_t{threads}.json has no latency statistics I recognise", file=sys.stderr)
        return None
    for key, want in (("batch", batch), ("threads", threads)):
        got = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(got, (int, float)) and int(got) != want:
            print(f"summarize.py: kiln_b{batch}_t{threads}.json says {key}={got}", file=sys.stderr)
    return lat


# ---- machine ----------------------------------------------------------------------------------------------

def machine_info(raw):
    info = {"model_name": "?", "cpus": None, "flags": {}}
    try:
        text = open(os.path.join(raw, "lscpu.txt")).read()
    except OSError:
        return info
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    info["model_name"] = fields.get("Model name", "?")
    info["cpus"] = int(fields["CPU(s)"]) if fields.get("CPU(s)", "").isdigit() else None
    for k in ("Thread(s) per core", "Core(s) per socket", "Socket(s)", "L2 cache", "L3 cache", "CPU max MHz",
              "Hypervisor vendor"):
        if k in fields:
            info[k] = fields[k]
    flags = set(fields.get("Flags", "").split())
    info["flags"] = {f: f in flags for f in FLAGS_OF_NOTE}
    return info


def read_kv(path):
    out = {}
    try:
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    except OSError:
        pass
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--raw", required=True, help="directory run_cpu_bench.sh wrote")
    ap.add_argument("--out", required=True, help="output path without extension (.md and .json are written)")
    ap.add_argument("--commit", default=None, help="git commit measured (default: system.txt's commit)")
    ap.add_argument("--date", default=None, help="date of the run (default: system.txt's date)")
    ap.add_argument("--note", action="append", default=[], help="a caveat to print under the table (repeatable)")
    args = ap.parse_args()

    raw = args.raw
    system = read_kv(os.path.join(raw, "system.txt"))
    commit = args.commit or system.get("commit", "unknown")
    date = args.date or system.get("date", "unknown")
    nproc = int(system.get("nproc", "0") or 0)
    machine = machine_info(raw)
    threads_all = nproc or machine["cpus"] or 1

    onednn = {t: load(os.path.join(raw, f"onednn_t{t}.json")) for t in sorted({1, threads_all})}
    ort = {t: load(os.path.join(raw, f"ort_t{t}.json")) for t in sorted({1, threads_all})}
    kiln_api = {t: load(os.path.join(raw, f"kiln_engine_t{t}.json")) for t in sorted({1, threads_all})}
    l2 = l2_entry(load(os.path.join(raw, "l2_stream.json")))
    sgemm = {t: sgemm_entry(d) for t, d in onednn.items()}
    chain_flop_per_sample = 2 * (784 * 256 + 256 * 128 + 128 * 10)

    rows = []
    for batch, threads in ((1, 1), (1, threads_all), (8192, 1), (8192, threads_all)):
        if any(r["batch"] == batch and r["threads"] == threads for r in rows):
            continue
        row = {"batch": batch, "threads": threads,
               "kiln": kiln_entry(raw, batch, threads),
               "onednn": onednn_entry(onednn.get(threads), batch),
               "ort": ort_entry(ort.get(threads), batch),
               "kiln_api": kiln_api_entry(kiln_api.get(threads), batch)}
        floor, floor_what = None, None
        if batch == 1 and threads == 1 and l2:
            floor, floor_what = l2["median_ms"], f"weights streamed from L2 ({l2['gb_per_s']:.0f} GB/s)"
        elif batch == 8192 and sgemm.get(threads):
            s = sgemm[threads]
            floor = chain_flop_per_sample * batch / (s["gflops"] * 1e9) * 1e3
            floor_what = f"chain FLOP at oneDNN sgemm rate ({s['gflops']:.0f} GFLOP/s); 95% of it: {fmt_time(floor / 0.95)}"
        row["floor_ms"], row["floor_what"] = floor, floor_what
        row["issue_goal_ms"] = ISSUE_GOAL_MS.get((batch, threads)) if threads in (1, 16) else None
        peers = [p["median_ms"] for p in (row["onednn"], row["ort"]) if p]
        row["best_peer_ms"] = min(peers) if peers else None
        k = row["kiln"]["median_ms"] if row["kiln"] else None
        row["kiln_over_best_peer"] = k / row["best_peer_ms"] if k and row["best_peer_ms"] else None
        row["kiln_over_onednn"] = k / row["onednn"]["median_ms"] if k and row["onednn"] else None
        row["kiln_over_floor"] = k / floor if k and floor else None
        ka = row["kiln_api"]["median_ms"] if row["kiln_api"] else None
        row["kiln_api_over_onednn"] = ka / row["onednn"]["median_ms"] if ka and row["onednn"] else None
        rows.append(row)

    # Issue 6's INT8 goals (same Xeon): b1 <= 3 µs; b8192 <= 2.0 ms on one thread, <= 0.4 ms on 16.
    int8_goal = {(1, 1): 0.003, (8192, 1): 2.0, (8192, 16): 0.4}
    int8_rows = []
    for r in rows:
        b, t = r["batch"], r["threads"]
        k8 = kiln_entry(raw, b, t, prefix="kiln_int8")
        o8 = onednn_entry(onednn.get(t), b, bench="BM_chain_int8/")
        int8_rows.append({"batch": b, "threads": t, "kiln_int8": k8, "onednn_int8": o8, "kiln_fp32": r["kiln"],
                          "issue_goal_ms": int8_goal.get((b, t)),
                          "ratio": k8["median_ms"] / o8["median_ms"] if k8 and o8 else None})

    # BF16 (kiln build --bf16): Kiln's BF16 engine beside the bare oneDNN bf16 chain and the FP32 peers.
    bf16_rows = []
    for r in rows:
        b, t = r["batch"], r["threads"]
        k16 = kiln_entry(raw, b, t, prefix="kiln_bf16")
        o16 = onednn_entry(onednn.get(t), b, bench="BM_chain_bf16/")
        fp32_peers = [p["median_ms"] for p in (r["onednn"], r["ort"]) if p]
        bf16_rows.append({"batch": b, "threads": t, "kiln_bf16": k16, "onednn_bf16": o16, "kiln_fp32": r["kiln"],
                          "kiln_bf16_api": kiln_api_entry(kiln_api.get(t), b, engine=3),
                          "best_fp32_peer_ms": min(fp32_peers) if fp32_peers else None,
                          "ratio": k16["median_ms"] / o16["median_ms"] if k16 and o16 else None})

    ort_version = next((d.get("onnxruntime_version") for d in ort.values() if d), "?")
    onednn_ctx = next((d.get("context", {}) for d in onednn.values() if d), {})
    steps = []
    try:
        steps = [line.rstrip("\n").split("\t") for line in open(os.path.join(raw, "steps.tsv")) if line.strip()]
    except OSError:
        pass

    doc = {"date": date, "commit": commit, "notes": args.note, "machine": machine, "system": system, "rows": rows,
           "int8_rows": int8_rows, "bf16_rows": bf16_rows,
           "row_split_rows": [{"batch": r["batch"], "threads": r["threads"], "chain": r["kiln_api"],
                               "rows": kiln_api_entry(kiln_api.get(r["threads"]), r["batch"], engine=2)} for r in rows],
           "l2_stream": l2, "sgemm_layer1": {str(t): s for t, s in sgemm.items()},
           "versions": {"onnxruntime": ort_version, "onednn": onednn_ctx.get("onednn_version", "?")},
           "onednn_weights": onednn_ctx.get("weights"), "steps": steps,
           "raw": {os.path.basename(p): load(p) for p in sorted(glob.glob(os.path.join(raw, "*.json")))}}

    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in machine["flags"].items())
    L = []
    L.append(f"# Kiln CPU benchmark: {system.get('tag', '?')}, {date}")
    L.append("")
    L.append(f"- **Machine**: {machine['model_name']}, {machine['cpus']} CPUs "
             f"({machine.get('Socket(s)', '?')} socket(s) × {machine.get('Core(s) per socket', '?')} cores × "
             f"{machine.get('Thread(s) per core', '?')} threads), L2 {machine.get('L2 cache', '?')}, "
             f"L3 {machine.get('L3 cache', '?')}"
             + (f", hypervisor {machine['Hypervisor vendor']}" if "Hypervisor vendor" in machine else ""))
    L.append(f"- **Flags of note**: {flags}")
    L.append(f"- **System**: {system.get('os', '?')}; kernel {system.get('kernel', '?')}; glibc {system.get('glibc', '?')}; "
             f"load average at start {system.get('loadavg_at_start', '?')}"
             + (f"; GPU {system['gpu']} (unused)" if system.get("gpu") else ""))
    L.append(f"- **Date**: {date}; **commit**: `{commit}`")
    L.append(f"- **Peers**: oneDNN {doc['versions']['onednn']} bare matmul chain (`bench_onednn_chain`, weights: "
             f"{'models/mlp.onnx' if (doc['onednn_weights'] or '').endswith('mlp.onnx') else doc['onednn_weights']}); "
             f"ONNX Runtime {ort_version} CPU provider, Python API (`bench/ort_cpu.py`)")
    L.append(f"- **All threads** = {threads_all} (`nproc`). Times are medians of per-run times (p99 in brackets); "
             "oneDNN: median over repetitions of each repetition's median (and p99); inputs are random normal.")
    L.append("")
    L.append(f"| batch | threads | Kiln `kiln run` median [p99] | Kiln API, chain's harness [p99] | "
             f"oneDNN chain median [p99] | ORT median [p99] | floor | "
             f"issue goal (16-core Xeon) | Kiln ÷ best peer | Kiln API ÷ oneDNN | Kiln ÷ floor |")
    L.append("|---:|---:|---|---|---|---|---|---|---:|---:|---:|")

    def cell(e):
        return "not run" if not e else f"{fmt_time(e['median_ms'])} [{fmt_time(e.get('p99_ms'))}]"

    for r in rows:
        L.append(f"| {r['batch']} | {r['threads']} | {cell(r['kiln'])} | {cell(r['kiln_api'])} | "
                 f"{cell(r['onednn'])} | {cell(r['ort'])} | "
                 f"{fmt_time(r['floor_ms'])} | {fmt_time(r['issue_goal_ms'])} | "
                 f"{fmt_ratio(r['kiln_over_best_peer'])} | {fmt_ratio(r['kiln_api_over_onednn'])} | "
                 f"{fmt_ratio(r['kiln_over_floor'])} |")
    L.append("")
    for note in args.note:
        L.append(f"**Note:** {note}")
        L.append("")
    L.append("Ratios below 1 mean Kiln is faster. Floors:")
    for r in rows:
        if r["floor_what"]:
            L.append(f"- batch {r['batch']}, {r['threads']} thread(s): {fmt_time(r['floor_ms'])} = {r['floor_what']}")
    if l2:
        L.append(f"- L2 stream (`bench_l2_stream`, one core, AVX-512 loads): {l2['bytes']:,} bytes in "
                 f"{fmt_time(l2['median_ms'])} = {l2['gb_per_s']:.1f} GB/s")
    for t, s in sgemm.items():
        if s:
            L.append(f"- oneDNN sgemm 8192×784×256 f32, {t} thread(s): {fmt_time(s['median_ms'])} = "
                     f"{s['gflops']:.1f} GFLOP/s")
    L.append("")
    # INT8 (issue 6): Kiln's INT8 engine beside the bare oneDNN int8 chain (which gets pre-quantized s8 input).
    int8_rows = doc.get("int8_rows", [])
    if int8_rows:
        L.append("")
        L.append("### INT8")
        L.append("")
        L.append("| batch | threads | Kiln INT8 `kiln run` median [p99] | oneDNN int8 chain median [p99] | Kiln FP32 | "
                 "issue goal (16-core Xeon) | Kiln INT8 ÷ oneDNN int8 |")
        L.append("|---:|---:|---|---|---|---|---:|")
        for r in int8_rows:
            L.append(f"| {r['batch']} | {r['threads']} | {cell(r['kiln_int8'])} | {cell(r['onednn_int8'])} | "
                     f"{cell(r['kiln_fp32'])} | {fmt_time(r['issue_goal_ms'])} | {fmt_ratio(r['ratio'])} |")
        L.append("")
        L.append("The int8 chain's input is already int8 (it does not time quantizing the float input); Kiln's INT8 "
                 "engine takes the float32 input and quantizes it. Kiln INT8 engine: scales from bench/mlp_int8.cache.")
        L.append("")
    # onednn_rows forced also replaces the direct tactic at batch 1: only the large batch compares the split.
    split_rows = [r for r in doc.get("row_split_rows", []) if r["chain"] and r["rows"] and r["batch"] > 1]
    if split_rows:
        L.append("### FP32 rows split over the threads (KILN_FUSED_MLP_TACTIC=onednn_rows, opt-in)")
        L.append("")
        L.append("| batch | threads | Kiln API, default rule [p99] | Kiln API, onednn_rows [p99] | rows ÷ default |")
        L.append("|---:|---:|---|---|---:|")
        for r in split_rows:
            L.append(f"| {r['batch']} | {r['threads']} | {cell(r['chain'])} | {cell(r['rows'])} | "
                     f"{fmt_ratio(r['rows']['median_ms'] / r['chain']['median_ms'])} |")
        L.append("")
        L.append("On one thread onednn_rows runs the plain chain (the split needs 64 rows per thread and 2 threads).")
        L.append("")
    bf16_rows = [r for r in doc.get("bf16_rows", []) if r["kiln_bf16"] or r["onednn_bf16"]]
    if bf16_rows:
        L.append("### BF16")
        L.append("")
        L.append("| batch | threads | Kiln BF16 `kiln run` median [p99] | Kiln BF16 API, chain's harness [p99] | "
                 "oneDNN bf16 chain median [p99] | Kiln FP32 | best FP32 peer | Kiln BF16 ÷ oneDNN bf16 |")
        L.append("|---:|---:|---|---|---|---|---|---:|")
        for r in bf16_rows:
            L.append(f"| {r['batch']} | {r['threads']} | {cell(r['kiln_bf16'])} | {cell(r.get('kiln_bf16_api'))} | "
                     f"{cell(r['onednn_bf16'])} | {cell(r['kiln_fp32'])} | {fmt_time(r['best_fp32_peer_ms'])} | "
                     f"{fmt_ratio(r['ratio'])} |")
        L.append("")
        L.append("The bf16 chain's input is already bf16 (it does not time converting the float input); Kiln's BF16 "
                 "engine takes the float32 input and converts it. Both: bf16 weights and activations, f32 "
                 "accumulation, bias and logits.")
        L.append("")
    L.append("Issue reference (same Xeon, 2026-11-24): oneDNN chain 15.0 µs (b1, 1 thread), 29.4 ms (b8192, 1 thread), "
             "3.73 ms (b8192, 16 threads); ORT 1.30 20.0 µs, 37.7 ms, 4.65 ms.")
    failed = [s for s in steps if len(s) >= 2 and s[1] not in ("0", "skipped")]
    skipped = [s[0] for s in steps if len(s) >= 2 and s[1] == "skipped"]
    if failed or skipped:
        L.append("")
    if failed:
        L.append("Steps that failed (logs in the raw folder): " + ", ".join(f"`{s[0]}` (exit {s[1]})" for s in failed))
    if skipped:
        L.append("Steps skipped (tool not present): " + ", ".join(f"`{s}`" for s in skipped))
    L.append("")
    L.append(f"Reproduce: `bash scripts/gpu-bench.sh` (bundle, then on the target `bash remote.sh`), or "
             f"`bench/run_cpu_bench.sh --bin BUILD_DIR ...` in place. Raw peer and Kiln JSON: `{os.path.basename(args.out)}.json` (key `raw`).")
    L.append("")

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(L))
    with open(args.out + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    print("\n".join(L))


if __name__ == "__main__":
    main()
