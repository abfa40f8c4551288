#!/usr/bin/env bash
# Runs the CPU benchmark of Kiln and its peers on this machine and writes one results page.
#
#   bench/run_cpu_bench.sh --bin DIR [--lib DIR] [--model PATH] [--raw DIR] [--out PREFIX]
#                          [--commit HASH] [--tag NAME] [--note TEXT]... [--quick]
#
#   --bin    folder holding kiln, bench_onednn_chain, bench_l2_stream (a build tree's subfolders are searched
#            too); a missing one is skipped and shows as "not run"
#   --lib    extra shared-library folder for those binaries only (the bundle's lib/); python never sees it,
#            so carried libraries (zlib, protobuf) cannot shadow the ones onnxruntime was built against
#   --model  models/mlp.onnx (default: next to this script's repo)
#   --raw    where every tool's own JSON, logs and machine facts go (default: a new folder under /tmp)
#   --out    results page path without extension (default: bench/results/<date>-<tag>-cpu)
#   --commit the git commit measured (default: git rev-parse HEAD, else "unknown")
#   --tag    host tag in the page name (default: devbox)
#   --note   a caveat printed under the results table (repeatable)
#   --quick  shorter runs, for trying the script out; never for recorded results
#
# Runs: bench_l2_stream (one core); bench_onednn_chain with OMP_NUM_THREADS=1 and =nproc; ort_cpu.py with
# one thread and nproc; kiln build (FP32, INT8, BF16), then kiln run at batch 1 and 8192, one thread and nproc. Every
# process gets OMP_NUM_THREADS=<its thread count>. A failing step is logged in steps.tsv and the rest go on;
# the script exits non-zero if any step failed. Environment: PYTHON (default python3).
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
PYTHON=${PYTHON:-python3}

BIN="" LIB="" MODEL="$REPO/models/mlp.onnx" RAW="" OUTP="" COMMIT="" TAG="devbox" QUICK=0 NOTES=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --lib) LIB=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --raw) RAW=$2; shift 2 ;;
    --out) OUTP=$2; shift 2 ;;
    --commit) COMMIT=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --note) NOTES+=(--note "$2"); shift 2 ;;
    --quick) QUICK=1; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "run_cpu_bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ -n "$BIN" ]] || { echo "run_cpu_bench.sh: --bin DIR is required" >&2; exit 2; }
[[ -f "$MODEL" ]] || { echo "run_cpu_bench.sh: no model at $MODEL" >&2; exit 2; }

find_bin() {  # first executable named $1 under --bin (its top level, then the build tree's folders)
  local p
  for p in "$BIN/$1" "$BIN/bench/$1" "$BIN/tools/kiln/$1"; do
    [[ -x "$p" && -f "$p" ]] && { echo "$p"; return; }
  done
}
KILN=$(find_bin kiln) CHAIN=$(find_bin bench_onednn_chain) L2=$(find_bin bench_l2_stream)
KILN_API=$(find_bin bench_kiln_engine)

NPROC=$(nproc)
DATE=$(date -u +%F)
[[ -n "$COMMIT" ]] || COMMIT=$(git -C "$REPO" rev-parse --verify -q HEAD 2>/dev/null || echo unknown)
[[ -n "$RAW" ]] || RAW=$(mktemp -d /tmp/kiln-cpu-bench.XXXXXX)
[[ -n "$OUTP" ]] || OUTP="$REPO/bench/results/$DATE-$TAG-cpu"
mkdir -p "$RAW"
: > "$RAW/steps.tsv"

if [[ $QUICK == 1 ]]; then
  GB_FLAGS=(--benchmark_repetitions=3 --benchmark_min_time=0.2)
  KILN_DURATION=1
else
  GB_FLAGS=(--benchmark_repetitions=5 --benchmark_min_time=1)
  KILN_DURATION=3
fi
GB_FLAGS+=(--benchmark_report_aggregates_only=true --benchmark_out_format=json)

# Native binaries see --lib; python does not.
native() { if [[ -n "$LIB" ]]; then LD_LIBRARY_PATH="$LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; else "$@"; fi; }

FAILED=0
step() {  # step NAME THREADS CMD...: runs CMD with OMP_NUM_THREADS=THREADS, logs, records the exit code
  local name=$1 threads=$2; shift 2
  local t0=$SECONDS rc
  echo "=== $name (OMP_NUM_THREADS=$threads): $*"
  OMP_NUM_THREADS=$threads "$@" 2>&1 | tee "$RAW/$name.log"
  rc=${PIPESTATUS[0]}
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - t0))" >> "$RAW/steps.tsv"
  [[ $rc == 0 ]] || { echo "=== $name FAILED (exit $rc)"; FAILED=1; }
  return 0
}
skip() { printf '%s\tskipped\t0\n' "$1" >> "$RAW/steps.tsv"; echo "=== $1 skipped: $2"; }

# ---- machine facts ----
lscpu > "$RAW/lscpu.txt" 2>&1
{
  echo "date=$DATE"
  echo "datetime=$(date -u +%FT%TZ)"
  echo "tag=$TAG"
  echo "host=$(hostname 2>/dev/null || cat /proc/sys/kernel/hostname)"
  echo "nproc=$NPROC"
  echo "kernel=$(uname -r)"
  echo "os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null)"
  echo "glibc=$(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
  echo "commit=$COMMIT"
  echo "python=$($PYTHON -c 'import platform; print(platform.python_version())' 2>/dev/null)"
  echo "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)"
  echo "mem=$(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"
  echo "loadavg_at_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "omp_env=$(env | grep -E '^(OMP|KMP|GOMP|MKL|DNNL|ONEDNN)_' | tr '\n' ' ')"
} > "$RAW/system.txt"
echo "=== machine: $(grep 'Model name' "$RAW/lscpu.txt" | sed 's/.*: *//'), $NPROC CPUs; commit $COMMIT; raw in $RAW"

# ---- floors and the bare oneDNN peer ----
if [[ -n "$L2" ]]; then
  step l2_stream 1 native "$L2" "${GB_FLAGS[@]}" --benchmark_out="$RAW/l2_stream.json"
else skip l2_stream "no bench_l2_stream under $BIN"; fi
for t in $(printf '%s\n' 1 "$NPROC" | sort -un); do
  if [[ -n "$CHAIN" ]]; then
    step "onednn_t$t" "$t" native "$CHAIN" --model="$MODEL" "${GB_FLAGS[@]}" --benchmark_out="$RAW/onednn_t$t.json"
  else skip "onednn_t$t" "no bench_onednn_chain under $BIN"; fi
  # Kiln's engine in the chain's own harness, right after it, so the two see the same machine state.
  if [[ -n "$KILN_API" ]]; then
    step "kiln_engine_t$t" "$t" native "$KILN_API" --model="$MODEL" "${GB_FLAGS[@]}" --benchmark_out="$RAW/kiln_engine_t$t.json"
  else skip "kiln_engine_t$t" "no bench_kiln_engine under $BIN"; fi
done

# ---- ONNX Runtime peer ----
for t in $(printf '%s\n' 1 "$NPROC" | sort -un); do
  if $PYTHON -c 'import onnxruntime' 2>/dev/null; then
    if [[ $t == 1 ]]; then
      step "ort_t$t" 1 env MKL_NUM_THREADS=1 "$PYTHON" "$HERE/ort_cpu.py" --model "$MODEL" --threads 1 --out "$RAW/ort_t1.json"
    else
      step "ort_t$t" "$t" "$PYTHON" "$HERE/ort_cpu.py" --model "$MODEL" --threads "$t" --out "$RAW/ort_t$t.json"
    fi
  else skip "ort_t$t" "$PYTHON has no onnxruntime"; fi
done

# ---- Kiln ----
if [[ -n "$KILN" ]]; then
  ENGINE="$RAW/mlp.engine"
  step kiln_build "$NPROC" native "$KILN" build --onnx="$MODEL" --saveEngine="$ENGINE" \
    --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28
  for bt in "1 1" "1 $NPROC" "8192 1" "8192 $NPROC"; do
    read -r b t <<< "$bt"
    [[ -f "$RAW/kiln_b${b}_t${t}.json" ]] && continue  # nproc == 1
    if [[ -f "$ENGINE" ]]; then
      step "kiln_b${b}_t${t}" "$t" native "$KILN" run --loadEngine="$ENGINE" --shapes="input:${b}x1x28x28" \
        --threads="$t" --duration="$KILN_DURATION" --exportJSON="$RAW/kiln_b${b}_t${t}.json"
    else skip "kiln_b${b}_t${t}" "no engine (kiln build failed)"; fi
  done
  # Other precisions: kiln_variant NAME BUILD_FLAGS... builds $RAW/mlp_NAME.engine and runs it like FP32.
  kiln_variant() {
    local name=$1 engine="$RAW/mlp_$1.engine"; shift
    step "kiln_build_$name" "$NPROC" native "$KILN" build --onnx="$MODEL" --saveEngine="$engine" "$@" \
      --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28
    for bt in "1 1" "1 $NPROC" "8192 1" "8192 $NPROC"; do
      read -r b t <<< "$bt"
      [[ -f "$RAW/kiln_${name}_b${b}_t${t}.json" ]] && continue
      if [[ -f "$engine" ]]; then
        step "kiln_${name}_b${b}_t${t}" "$t" native "$KILN" run --loadEngine="$engine" --shapes="input:${b}x1x28x28" \
          --threads="$t" --duration="$KILN_DURATION" --exportJSON="$RAW/kiln_${name}_b${b}_t${t}.json"
      else skip "kiln_${name}_b${b}_t${t}" "no $name engine (kiln build failed)"; fi
    done
  }
  # INT8 (issue 6): scales from the committed calibration cache (bench/mlp_int8.cache, percentile 99.99 over
  # 2048 Fashion-MNIST training images), so the target machine needs no dataset.
  kiln_variant int8 --int8 --calib="$HERE/mlp_int8.cache"
  # BF16 (kiln build --bf16): bf16 weights and activations (AMX-BF16 or AVX512_BF16 where present).
  kiln_variant bf16 --bf16
else
  skip kiln "no kiln under $BIN"
fi

# ---- the page ----
step summarize 1 "$PYTHON" "$HERE/summarize.py" --raw "$RAW" --out "$OUTP" --commit "$COMMIT" --date "$DATE" "${NOTES[@]}"
echo "=== results: $OUTP.md, $OUTP.json; raw: $RAW"
exit $FAILED
