#!/usr/bin/env bash
# Runs on the GPU machine from the bundle scripts/gpu-test.sh makes (run from the repository root).
# Writes to $OUT: <date>-<gpu>-gpu.md (the record for bench/results/), log.txt, and runs.tar.gz (tests.xml,
# every `kiln run` JSON summary and text log). KILN_GPU_STEPS limits the steps (default "tests python cli"):
# tests = kiln_tests (gpu label); python = tests/python/test_gpu.py (the Python package on CUDA engines,
# torch tensors, the course's two scripts) and kiln_capi_test; cli = kiln build/run of the course engines.
# Optional, not in the default: compare = bench/compare.py, Kiln beside ONNX Runtime and PyTorch in the
# course's tables (issue 7): KILN_GPU_STEPS="compare" (KILN_COMPARE_ARGS=--quick for its short run).
# KILN_GPU_STEPS="lowlat": bench_low_latency alone (quick iterations on the resident kernel); "fmlpdiag": the
# CUDA fused-MLP kernels' bench with the SM clock sampled, bench_l2_ingest, and Nsight Compute on them; "pcie":
# bench_pcie_read (the copy engine against SMs reading pinned host memory in place); "course":
# bench/course_loop.py (the course's loop timed apart, A/B in one process); "fmlptrace": where the cluster8
# kernel's time goes at batch 1 (CudaFusedMlp.Trace, its phase stamps) beside CudaFusedMlp.Bench.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kiln-gpu.XXXXXX)
STEPS=${KILN_GPU_STEPS:-tests python cli}

# bench_low_latency (C++): the resident kernel against the CUDA graph path, host and device IO, its phase trace;
# once per resident layout (KILN_LOW_LATENCY_CTAS: 8, the default, or 16; KILN_LOW_LATENCY_INPUT: cta0, the
# default, or spread). KILN_LOWLAT_PICK=1: the layout with the lowest host-IO p50 is exported for the steps
# after this one (compare), and the record says so.
run_bench_low_latency() {
  [[ -x "$HERE/bin/bench_low_latency" ]] || return 0
  local layout ctas input best="" best_p50=""
  for layout in 8:cta0 8:spread 16:cta0 16:spread; do
    ctas=${layout%:*} input=${layout#*:}
    local j="$WORK/json/low_latency_${ctas}_${input}.json" t="$WORK/low_latency_${ctas}_${input}.txt"
    echo "=== bench_low_latency, $ctas CTAs, input read by $input"
    KILN_LOW_LATENCY_CTAS=$ctas KILN_LOW_LATENCY_INPUT=$input timeout 200 "$HERE/bin/bench_low_latency" --json="$j" > "$t" 2>&1
    echo "bench_low_latency exit $?"; grep -E "^(cuda_graph|low_latency|ping)" "$t"
    { echo; echo "### bench_low_latency (C++, batch 1 FP32; host and device memory; KILN_LOW_LATENCY_CTAS=$ctas KILN_LOW_LATENCY_INPUT=$input)"; echo; echo '```';
      tail -30 "$t"; echo '```'; echo; } >> "$md"
    local p50
    p50=$(python3 -c "import json,sys; print([r['p50_us'] for r in json.load(open(sys.argv[1]))['results'] if r['name']=='low_latency'][0])" "$j" 2> /dev/null) || continue
    if [[ -z "$best_p50" ]] || python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$p50" "$best_p50"; then
      best=$layout best_p50=$p50
    fi
  done
  if [[ "${KILN_LOWLAT_PICK:-0}" == 1 && -n "$best" ]]; then
    export KILN_LOW_LATENCY_CTAS=${best%:*} KILN_LOW_LATENCY_INPUT=${best#*:}
    echo "picked for the steps after: KILN_LOW_LATENCY_CTAS=${best%:*} KILN_LOW_LATENCY_INPUT=${best#*:} (host-IO p50 $best_p50 us)" | tee -a "$md"
  fi
}

main() {
  mkdir -p "$WORK/lib" "$WORK/engines" "$WORK/json"
  cp -L "$HERE"/lib/* "$WORK/lib/"
  for f in "$WORK"/lib/*.xz; do [[ -e "$f" ]] && xz -d "$f"; done
  # oneDNN's loader wants libOpenCL.so.1 even on the CPU path; the machine has none.
  export LD_LIBRARY_PATH="$WORK/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  # Fashion-MNIST as packed by gpu-test.sh (test set + the first 12288 training images).
  export KILN_FASHION_MNIST="$HERE/data/fashion-mnist"
  chmod +x "$HERE"/bin/*
  local gpu driver date commit
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
  date=$(date -u +%F)
  commit=$(cat "$HERE/COMMIT")
  local tag=gpu
  case "$gpu" in *H100*) tag=h100 ;; *H200*) tag=h200 ;; esac
  local md="$OUT/$date-$tag-gpu.md"
  {
    echo "# Kiln GPU run: $gpu"
    echo
    echo "- date: $date (UTC), commit: $commit"
    echo "- GPU: $gpu, driver $driver, $(nvcc --version 2> /dev/null | tail -1)"
    echo "- host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
    echo
  } > "$md"
  ldd "$HERE/bin/kiln" | grep 'not found' && echo "=== missing libraries above"

  if [[ " $STEPS " == *" tests "* ]]; then
    echo "=== kiln_tests with KILN_TEST_CUDA=require"
    # KILN_GTEST_FILTER: a subset, for quick iterations (the record says which)
    KILN_TEST_CUDA=require "$HERE/bin/kiln_tests" --gtest_brief=1 --gtest_filter="${KILN_GTEST_FILTER:-*}" \
      --gtest_output=xml:"$WORK/json/tests.xml" 2>&1 | tail -60
    local rc=${PIPESTATUS[0]}
    python3 - "$WORK/json/tests.xml" >> "$md" << 'PY'
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
print(f"## Tests (gpu label: kiln_tests, KILN_TEST_CUDA=require)\n\n{r.get('tests')} tests, {r.get('failures')} failures, "
      f"{r.get('disabled')} disabled, {r.get('skipped', '0')} skipped, {float(r.get('time')):.1f} s\n")
for s in r.iter('testcase'):
    f = s.find('failure')
    if f is not None: print(f"- FAILED {s.get('classname')}.{s.get('name')}: {f.get('message','').splitlines()[0][:300]}")
PY
    echo "=== kiln_tests exit $rc"
  fi

  if [[ " $STEPS " == *" python "* ]]; then
    # The bundled libkiln (decompressed into $WORK/lib) and python/kiln; tests, models and fixtures come
    # from the repository tree the device tool copied.
    echo "=== python: tests/python/test_gpu.py with KILN_TEST_CUDA=require"
    local pylog="$WORK/python.txt" prc crc
    KILN_LIBRARY="$WORK/lib/libkiln.so.0" PYTHONPATH="$HERE/python" KILN_TEST_CUDA=require \
      python3 tests/python/test_gpu.py -v > "$pylog" 2>&1
    prc=$?
    tail -60 "$pylog"
    "$HERE/bin/kiln_capi_test" models/mlp.onnx > "$WORK/capi.txt" 2>&1
    crc=$?
    cat "$WORK/capi.txt"
    {
      echo "## Python (tests/python/test_gpu.py, KILN_TEST_CUDA=require)"
      echo
      echo "- $(python3 --version 2>&1), numpy $(python3 -c 'import numpy; print(numpy.__version__)' 2>&1 | tail -1)," \
        "torch $(python3 -c 'import torch; print(torch.__version__, "cuda", torch.cuda.is_available())' 2>&1 | tail -1)"
      echo "- unittest exit $prc: $(grep -E '^(Ran |OK|FAILED)' "$pylog" | tr '\n' ' ')"
      grep -E '^(FAIL|ERROR):|skipped' "$pylog" | sed 's/^/- /'
      grep -E '平均延迟|out shape' "$pylog" | sed 's/^/- course script: /'
      echo "- kiln_capi_test exit $crc: $(grep -E 'gpu:|capi ok|failed' "$WORK/capi.txt" | tr '\n' ' ')"
      echo
    } >> "$md"
    echo "=== python exit $prc, capi exit $crc"
  fi

  if [[ " $STEPS " == *" cli "* ]]; then
    local K="$HERE/bin/kiln" M=models/mlp.onnx E="$WORK/engines"
    local prof="--minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28"
    echo "## Engines (kiln build, profile 1..8192, opt 8192)" >> "$md"
    echo >> "$md"
    local FM="$KILN_FASHION_MNIST"
    for p in fp32 tf32 fp16 int8 int8fp16; do
      local flags="--device=cuda"
      [[ $p == fp32 ]] && flags+=" --noTF32"
      [[ $p == fp16 || $p == int8fp16 ]] && flags+=" --fp16"
      [[ $p == int8* ]] && flags+=" --int8 --calibData=$FM/train-images-idx3-ubyte.gz --calib=$E/mlp_$p.cache"
      echo "=== kiln build $p"
      $K build --onnx=$M --saveEngine=$E/mlp_$p.engine $prof $flags --timingCacheFile=$E/timing.cache 2>&1 | tee "$WORK/build_$p.txt"
      echo "- $p: $(grep -E 'Built|Tactics|Peak|arena' "$WORK/build_$p.txt" | sed 's/\[I\] //' | tr '\n' ';')" >> "$md"
    done
    $K inspect --loadEngine=$E/mlp_fp16.engine 2>&1 | tee "$WORK/inspect_fp16.txt" | head -40
    $K inspect --loadEngine=$E/mlp_int8.engine 2>&1 | tee "$WORK/inspect_int8.txt" | head -40
    # Accuracy per precision on the 10,000 test images, and the INT8 engine's per-layer error.
    echo "## kiln eval (Fashion-MNIST test set, 10,000 images)" >> "$md"
    echo >> "$md"
    local all=""
    for p in fp32 tf32 fp16 int8 int8fp16; do all+="${all:+,}$E/mlp_$p.engine"; done
    $K eval --loadEngine=$all --images=$FM/t10k-images-idx3-ubyte.gz --labels=$FM/t10k-labels-idx1-ubyte.gz \
      --exportJSON="$WORK/json/eval.json" > "$WORK/eval.txt" 2>&1
    { echo '```'; sed -n '/agreement with first/,$p' "$WORK/eval.txt" | sed "s|$E/||"; echo '```'; } >> "$md"
    echo >> "$md"
    $K compare --loadEngine=$E/mlp_int8.engine --onnx=$M --batch=1000 --data=$FM/t10k-images-idx3-ubyte.gz \
      > "$WORK/compare_int8.txt" 2>&1
    { echo "## kiln compare (INT8 CUDA engine vs float64 ONNX reference, first 1000 test images)"; echo; echo '```';
      cat "$WORK/compare_int8.txt"; echo '```'; echo; } >> "$md"
    $K build --onnx=$M --saveEngine=$E/mlp_int8_target.engine $prof --device=cuda --int8 --calibAlgo=entropy \
      --calibData=$FM/train-images-idx3-ubyte.gz --accuracyTarget=0.2 > "$WORK/accuracy_target.txt" 2>&1
    { echo "## kiln build --int8 --calibAlgo=entropy --accuracyTarget=0.2 (CUDA)"; echo; echo '```';
      grep -E "Accuracy|INT8:|trying|Moved" "$WORK/accuracy_target.txt"; echo '```'; echo; } >> "$md"
    echo >> "$md"
    echo "## kiln run (median ms; latency = H2D + GPU compute + D2H)" >> "$md"
    echo >> "$md"
    echo "| engine | batch | mode | latency | H2D | GPU compute | D2H | enqueue | throughput (samples/s) |" >> "$md"
    echo "|---|---|---|---|---|---|---|---|---|" >> "$md"
    for p in fp32 tf32 fp16 int8 int8fp16; do
      for b in 1 8192; do
        for mode in plain spin graph nodata; do
          local extra=""
          [[ $mode == spin ]] && extra="--useSpinWait"
          [[ $mode == graph ]] && extra="--useCudaGraph"
          [[ $mode == nodata ]] && extra="--useCudaGraph --noDataTransfers"
          local j="$WORK/json/run_${p}_b${b}_${mode}.json"
          $K run --loadEngine=$E/mlp_$p.engine --shapes=input:${b}x1x28x28 --warmUp=200 --iterations=200 --duration=1 \
            $extra --exportJSON="$j" > "$WORK/run_${p}_${b}_${mode}.txt" 2>&1 || { echo "=== run $p b$b $mode failed"; tail -5 "$WORK/run_${p}_${b}_${mode}.txt"; continue; }
          python3 - "$j" "$p" "$b" "$mode" >> "$md" << 'PY'
import json, sys
d = json.load(open(sys.argv[1])); m = lambda k: d[k]["median"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {m('latency_ms'):.4f} | {m('h2d_ms'):.4f} | {m('compute_ms'):.4f} | "
      f"{m('d2h_ms'):.4f} | {m('enqueue_ms'):.4f} | {d['throughput_samples_per_s']:.0f} |")
PY
        done
      done
    done
    grep -h "Performance summary" -A8 "$WORK/run_fp16_8192_plain.txt" || true
    # Per-layer GPU times (CUDA events around each layer, in runs of their own).
    for p in fp16 int8; do
      $K run --loadEngine=$E/mlp_$p.engine --shapes=input:8192x1x28x28 --iterations=50 --duration=0 --dumpProfile \
        > "$WORK/profile_${p}_8192.txt" 2>&1 && grep -A12 -i "profile" "$WORK/profile_${p}_8192.txt" | tail -12
    done
  fi
  if [[ " $STEPS " == *" hostio "* ]]; then
    # Issue 8: execute() on host memory (chunked, overlapped copies; pageable staged by threads) and the
    # low-latency mode (resident kernel), through `kiln run`, plus bench_low_latency's C++ timings.
    local K="$HERE/bin/kiln" M=models/mlp.onnx E="$WORK/engines"
    local prof="--minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28"
    for p in fp32 fp16; do
      [[ -e $E/mlp_$p.engine ]] && continue
      local flags="--device=cuda"
      [[ $p == fp32 ]] && flags+=" --noTF32"
      [[ $p == fp16 ]] && flags+=" --fp16"
      $K build --onnx=$M --saveEngine=$E/mlp_$p.engine $prof $flags --timingCacheFile=$E/timing.cache > "$WORK/build_$p.txt" 2>&1 || tail -5 "$WORK/build_$p.txt"
    done
    { echo "## Host memory IO and low-latency mode (kiln run, median / p99 ms)"; echo;
      echo "| engine | batch | mode | median | p99 | throughput (samples/s) |"; echo "|---|---|---|---|---|---|"; } >> "$md"
    for p in fp32 fp16; do
      for b in 1 8192; do
        for mode in device device-graph pinned pinned-graph pageable pageable-graph lowlatency lowlatency-device \
            lowlatency16 lowlatency16-device; do
          [[ $mode == lowlatency* && $b != 1 ]] && continue
          local extra="" ctas=8
          case $mode in
            device) extra="--noDataTransfers" ;;
            device-graph) extra="--useCudaGraph --noDataTransfers" ;;
            pinned) extra="--hostIO=pinned" ;;
            pinned-graph) extra="--hostIO=pinned --useCudaGraph" ;;
            pageable) extra="--hostIO=pageable" ;;
            pageable-graph) extra="--hostIO=pageable --useCudaGraph" ;;
            lowlatency) extra="--lowLatency" ;;
            lowlatency-device) extra="--lowLatency --noDataTransfers" ;;
            lowlatency16) extra="--lowLatency"; ctas=16 ;;  # the resident cluster with 16 CTAs
            lowlatency16-device) extra="--lowLatency --noDataTransfers"; ctas=16 ;;
          esac
          local j="$WORK/json/hostio_${p}_b${b}_${mode}.json"
          KILN_LOW_LATENCY_CTAS=$ctas $K run --loadEngine=$E/mlp_$p.engine --shapes=input:${b}x1x28x28 --warmUp=300 --iterations=500 --duration=2 \
            $extra --exportJSON="$j" > "$WORK/hostio_${p}_${b}_${mode}.txt" 2>&1 || { echo "=== hostio $p b$b $mode failed"; tail -8 "$WORK/hostio_${p}_${b}_${mode}.txt"; echo "| $p | $b | $mode | FAILED: $(tail -1 "$WORK/hostio_${p}_${b}_${mode}.txt" | cut -c1-200) | | |" >> "$md"; continue; }
          python3 - "$j" "$p" "$b" "$mode" >> "$md" << 'PY'
import json, sys
d = json.load(open(sys.argv[1])); l = d["latency_ms"]
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {l['median']:.4f} | {l.get('percentile99', float('nan')):.4f} | {d['throughput_samples_per_s']:.0f} |")
PY
        done
      done
    done
    # Chunk count sweep (KILN_HOST_IO_CHUNKS) for batch 8192 FP16 from pinned and pageable memory, with the
    # copies on each chunk's lane stream (default) and on one copy stream (KILN_HOST_IO_COPY_STREAM=1).
    { echo; echo "### Chunk sweep, batch 8192 FP16, CUDA graph (median ms; 0 = automatic; copy stream = KILN_HOST_IO_COPY_STREAM=1)"; echo;
      echo "| chunks | pinned | pageable | pinned, copy stream | pageable, copy stream |"; echo "|---|---|---|---|---|"; } >> "$md"
    for c in 0 1 2 4 8 13 16; do
      local row="| $c |"
      for h in pinned pageable pinned:1 pageable:1; do
        local j="$WORK/json/chunks_${c}_${h/:/_}.json" cs=0
        [[ $h == *:1 ]] && cs=1
        KILN_HOST_IO_COPY_STREAM=$cs KILN_HOST_IO_CHUNKS=$c $K run --loadEngine=$E/mlp_fp16.engine --shapes=input:8192x1x28x28 --warmUp=200 \
          --iterations=200 --duration=1 --hostIO=${h%:1} --useCudaGraph --exportJSON="$j" > /dev/null 2>&1 \
          && row+=" $(python3 -c "import json,sys; print(f\"{json.load(open(sys.argv[1]))['latency_ms']['median']:.4f}\")" "$j") |" \
          || row+=" failed |"
      done
      echo "$row" >> "$md"
    done
    run_bench_low_latency
  fi
  if [[ " $STEPS " == *" lowlat_ab "* ]]; then
    # A/B of the resident kernel in one call, bench_low_latency alternated three times each: "new" is this build,
    # "base" a baseline libkiln.so.0 placed by hand in .carry_gpu/lib_base (the record says which commit); or,
    # with KILN_LOWLAT_AB_ENV (e.g. KILN_LOW_LATENCY_TRACE=0), "base" this build as is and "new" with that setting.
    local ab_env=${KILN_LOWLAT_AB_ENV:-}
    if [[ -z "$ab_env" && ! -e "$HERE/lib_base/libkiln.so.0" ]]; then
      echo "lowlat_ab: neither .carry_gpu/lib_base/libkiln.so.0 nor KILN_LOWLAT_AB_ENV" | tee -a "$md"
    else
      local what="base: .carry_gpu/lib_base, $(cat "$HERE/lib_base/COMMIT" 2> /dev/null)"
      [[ -n "$ab_env" ]] && what="base: this build, new: this build with $ab_env"
      { echo "## bench_low_latency A/B (new: this commit; $what)"; echo; echo '```'; } >> "$md"
      for i in 1 2 3; do
        for which in base new; do
          local libs="$WORK/lib" extra=()
          [[ $which == base && -z "$ab_env" ]] && libs="$HERE/lib_base:$WORK/lib"
          [[ $which == new && -n "$ab_env" ]] && extra=($ab_env)
          env "${extra[@]}" LD_LIBRARY_PATH="$libs:/usr/local/cuda/lib64" timeout 120 "$HERE/bin/bench_low_latency" \
            --json="$WORK/json/low_latency_ab_${which}_$i.json" > "$WORK/ab.txt" 2>&1
          grep -E "^(low_latency|ping)" "$WORK/ab.txt" | sed "s/^/$which $i: /" | tee -a "$md"
          python3 -c "import json,re,sys; t=open(sys.argv[1]).read(); m=re.search(r'resident kernel: (\{.*\})', t); d=json.loads(m.group(1))['trace_us_per_request']; print(sys.argv[2], {k: round(v, 3) for k, v in d.items() if isinstance(v, float)}, d.get('warp0_cycles_per_request'))" "$WORK/ab.txt" "$which $i trace:" | tee -a "$md"
        done
      done
      echo '```' >> "$md"
    fi
  fi
  if [[ " $STEPS " == *" cast_ab "* ]]; then
    # FP16 engine, batch 8192 from host memory: the input converted to float16 by the staging threads (default)
    # against KILN_HOST_IO_CAST=0, alternated three times, pinned and pageable, CUDA graph, default and 16 threads.
    local K="$HERE/bin/kiln" E="$WORK/engines"
    [[ -e $E/mlp_fp16.engine ]] || $K build --onnx=models/mlp.onnx --saveEngine=$E/mlp_fp16.engine --fp16 --device=cuda \
      --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28 > "$WORK/build_cast.txt" 2>&1
    { echo "## Host-side float16 conversion A/B (kiln run, FP16 engine, batch 8192, CUDA graph; median / p99 ms)"; echo;
      echo "| rep | host memory | threads | KILN_HOST_IO_CAST | median | p99 | converted inputs |"; echo "|---|---|---|---|---|---|---|"; } >> "$md"
    for rep in 1 2 3; do
      for h in pinned pageable; do
        for t in 0 16; do
          for cast in 0 1; do
            local j="$WORK/json/cast_${rep}_${h}_${t}_${cast}.json"
            KILN_HOST_IO_CAST=$cast $K run --loadEngine=$E/mlp_fp16.engine --shapes=input:8192x1x28x28 --warmUp=200 \
              --iterations=300 --duration=1 --hostIO=$h --useCudaGraph --threads=$t --exportJSON="$j" > "$WORK/cast.txt" 2>&1 \
              || { echo "| $rep | $h | $t | $cast | FAILED: $(tail -1 "$WORK/cast.txt" | cut -c1-160) | | |" >> "$md"; continue; }
            python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['latency_ms']; print(f\"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {sys.argv[5]} | {l['median']:.4f} | {l.get('percentile99', float('nan')):.4f} | {d.get('host_io_f16_inputs')} |\")" \
              "$j" "$rep" "$h" "$t" "$cast" | tee -a "$md"
          done
        done
      done
    done
    # INT8 engine (scales from bench/mlp_int8.cache): the input quantized by the staging threads (default) against
    # KILN_HOST_IO_CAST=0, pinned and pageable, CUDA graph, default threads.
    [[ -e $E/mlp_int8.engine ]] || $K build --onnx=models/mlp.onnx --saveEngine=$E/mlp_int8.engine --int8 --calib=bench/mlp_int8.cache \
      --device=cuda --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28 > "$WORK/build_int8.txt" 2>&1
    { echo; echo "### INT8 engine, batch 8192, CUDA graph: input quantized on the host (median / p99 ms)"; echo;
      echo "| rep | host memory | KILN_HOST_IO_CAST | median | p99 | converted inputs |"; echo "|---|---|---|---|---|---|"; } >> "$md"
    for rep in 1 2 3; do
      for h in pinned pageable; do
        for cast in 0 1; do
          local j="$WORK/json/int8_${rep}_${h}_${cast}.json"
          KILN_HOST_IO_CAST=$cast $K run --loadEngine=$E/mlp_int8.engine --shapes=input:8192x1x28x28 --warmUp=200 \
            --iterations=300 --duration=1 --hostIO=$h --useCudaGraph --exportJSON="$j" > "$WORK/int8.txt" 2>&1 \
            || { echo "| $rep | $h | $cast | FAILED: $(tail -1 "$WORK/int8.txt" | cut -c1-160) | | |" >> "$md"; continue; }
          python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['latency_ms']; print(f\"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {l['median']:.4f} | {l.get('percentile99', float('nan')):.4f} | {d.get('host_io_f16_inputs')} |\")" \
            "$j" "$rep" "$h" "$cast" | tee -a "$md"
        done
      done
    done
    # FP32 engine, pageable input: staging by memcpy against streaming stores (KILN_HOST_IO_STAGING_COPY).
    [[ -e $E/mlp_fp32.engine ]] || $K build --onnx=models/mlp.onnx --saveEngine=$E/mlp_fp32.engine --noTF32 --device=cuda \
      --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28 > "$WORK/build_cast32.txt" 2>&1
    { echo; echo "### FP32 engine, pageable, batch 8192, CUDA graph: staging copy (median / p99 ms)"; echo;
      echo "| rep | KILN_HOST_IO_STAGING_COPY | median | p99 |"; echo "|---|---|---|---|"; } >> "$md"
    for rep in 1 2 3; do
      for copy in memcpy stream; do
        local j="$WORK/json/staging_${rep}_${copy}.json"
        KILN_HOST_IO_STAGING_COPY=$copy $K run --loadEngine=$E/mlp_fp32.engine --shapes=input:8192x1x28x28 --warmUp=200 \
          --iterations=300 --duration=1 --hostIO=pageable --useCudaGraph --exportJSON="$j" > "$WORK/staging.txt" 2>&1 \
          || { echo "| $rep | $copy | FAILED: $(tail -1 "$WORK/staging.txt" | cut -c1-160) | |" >> "$md"; continue; }
        python3 -c "import json,sys; l=json.load(open(sys.argv[1]))['latency_ms']; print(f\"| {sys.argv[2]} | {sys.argv[3]} | {l['median']:.4f} | {l.get('percentile99', float('nan')):.4f} |\")" \
          "$j" "$rep" "$copy" | tee -a "$md"
      done
    done
  fi
  if [[ " $STEPS " == *" smt "* ]]; then
    # Are the 16 vCPUs 16 cores, or 8 cores with two hardware threads each? The FP32 GEMM of layer 1 at batch
    # 8192 on two threads pinned to CPU 0 and each other CPU: a sibling shares its core's FMA units, so the pair
    # runs at about one thread's rate, where two cores run at about twice it.
    { echo "## SMT check (bench_onednn_chain gemm_layer1 FP32 b8192, OMP_NUM_THREADS, taskset; median ms)"; echo; echo '```';
      lscpu | grep -iE "^(Thread|Core|Socket|NUMA node\(s\)|Model name)"; cat /sys/devices/system/cpu/cpu0/topology/thread_siblings_list 2> /dev/null | sed 's/^/cpu0 thread_siblings_list: /'; } >> "$md"
    if [[ -x "$HERE/bin/bench_onednn_chain" ]]; then
      local g=(--model=models/mlp.onnx --benchmark_filter='BM_sgemm_layer1/m:8192' --benchmark_repetitions=5 --benchmark_report_aggregates_only=true)
      OMP_NUM_THREADS=1 taskset -c 0 timeout 60 "$HERE/bin/bench_onednn_chain" "${g[@]}" 2>&1 | grep median | sed "s/^/cpus 0: /" | tee -a "$md"
      for other in 1 2 8 15; do
        OMP_NUM_THREADS=2 OMP_PROC_BIND=true taskset -c 0,$other timeout 60 "$HERE/bin/bench_onednn_chain" "${g[@]}" 2>&1 | grep median | sed "s/^/cpus 0,$other: /" | tee -a "$md"
      done
      for n in 8 16; do
        OMP_NUM_THREADS=$n timeout 60 "$HERE/bin/bench_onednn_chain" "${g[@]}" 2>&1 | grep median | sed "s/^/threads $n (no pinning): /" | tee -a "$md"
      done
    fi
    echo '```' >> "$md"
  fi
  if [[ " $STEPS " == *" pcie "* ]]; then  # the copy engine against SMs reading pinned memory in place
    { echo "## bench_pcie_read (host to device across PCIe)"; echo; echo '```'; } >> "$md"
    [[ -x "$HERE/bin/bench_pcie_read" ]] && timeout 240 "$HERE/bin/bench_pcie_read" 2>&1 | tee -a "$md"
    echo '```' >> "$md"
  fi
  if [[ " $STEPS " == *" lowlat "* ]]; then  # bench_low_latency alone (quick iterations on the resident kernel)
    run_bench_low_latency
  fi
  if [[ " $STEPS " == *" fmlptrace "* ]]; then
    { echo "## cluster8 at batch 1, phase by phase (CudaFusedMlp.Trace), and CudaFusedMlp.Bench"; echo; echo '```'; } >> "$md"
    KILN_TEST_CUDA=require KILN_FMLP_TRACE=1 KILN_FMLP_BENCH=1 timeout 300 "$HERE/bin/kiln_tests" \
      --gtest_filter='CudaFusedMlp.Trace:CudaFusedMlp.Bench' 2>&1 | grep -E "fmlp-trace|fmlp-bench|FAILED|Failure|error" | tee -a "$md"
    echo '```' >> "$md"
  fi
  if [[ " $STEPS " == *" fmlpdiag "* ]]; then
    # The CUDA kiln.FusedMLP kernels: CudaFusedMlp.Bench (each tactic at M = 1 ... 8192) with the SM clock
    # sampled beside it, bench_l2_ingest, then Nsight Compute on CudaFusedMlp.Profile's launches
    # (bench/GPU_NOTES.md).
    local T="$HERE/bin/kiln_tests"
    { echo "## Fused MLP kernels (CudaFusedMlp.Bench, SM clock, Nsight Compute)"; echo; echo '```'; } >> "$md"
    nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 100 > "$WORK/clocks.csv" &
    local smi=$!
    KILN_TEST_CUDA=require KILN_FMLP_BENCH=1 timeout 300 "$T" --gtest_filter=CudaFusedMlp.Bench 2>&1 | grep fmlp-bench | tee -a "$md"
    kill $smi
    echo "SM clock during the bench (MHz), min/median/max: $(awk -F', ' 'NR>1 {print $2+0}' "$WORK/clocks.csv" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int(NR/2)+1], a[NR], "(" NR " samples)"}')" | tee -a "$md"
    # What one SM takes in from L2 per ring step (the fused kernels' bound; bench/GPU_NOTES.md, session 7).
    if [[ -x "$HERE/bin/bench_l2_ingest" ]]; then timeout 60 "$HERE/bin/bench_l2_ingest" 2>&1 | tee -a "$md"; fi
    KILN_TEST_CUDA=require KILN_FMLP_PROFILE=1 timeout 200 ncu -k regex:fmlp_ --section SpeedOfLight --section WarpStateStats \
      --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section SchedulerStats \
      --section ComputeWorkloadAnalysis "$T" --gtest_filter=CudaFusedMlp.Profile > "$WORK/ncu.txt" 2>&1
    echo "ncu exit $? (full report in runs.tar.gz: ncu.txt)" | tee -a "$md"
    grep -E "fmlp_|Duration|SM Frequency|Compute \(SM\) Throughput|DRAM Throughput|Achieved Occupancy|Executed Ipc A|No Eligible" \
      "$WORK/ncu.txt" | cut -c1-200 | head -60 | tee -a "$md"
    echo '```' >> "$md"
  fi
  if [[ " $STEPS " == *" cpubench "* ]]; then
    # Issue 8 point 4 on this Xeon: the fused CPU MLP (default rule: direct at batch 1, oneDNN chain from 2) vs
    # the per-layer engine vs the fused layer with the oneDNN tactic, and the bare oneDNN chain / sgemm,
    # in one process each, interleaved repetitions (medians).
    if [[ -x "$HERE/bin/bench_kiln_engine" ]]; then
      # Engines 1 and 2 (per-layer, FP32 rows split) are out of the default filter since GPU run 15 (measured, settled).
      { echo "## CPU MLP (bench_kiln_engine: engine 0 = fused FP32 (--noTF32) default rule, 3 = BF16, 4 = BF16 onednn_rows, 5 = TF32 bf16x3 forced, 6 = TF32 bf16x3_rows forced; threads 0 = all)"; echo; echo '```'; } >> "$md"
      timeout 240 "$HERE/bin/bench_kiln_engine" --model=models/mlp.onnx \
        --benchmark_filter="${KILN_CPUBENCH_FILTER:-batch:(1|64|8192)/threads:[01]/engine:[03456]/}" \
        --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
        --benchmark_out="$WORK/json/cpu_engine.json" --benchmark_out_format=json 2>&1 | grep -E "median|^Run|^---|Benchmark|fused_mlp_tactic" | tee -a "$md"
      echo '```' >> "$md"
    fi
    if [[ -x "$HERE/bin/bench_onednn_chain" ]]; then
      { echo "### bare oneDNN chain (FP32, BF16) and sgemm (OMP_NUM_THREADS 1 and 16)"; echo; echo '```'; } >> "$md"
      for t in 1 16; do
        OMP_NUM_THREADS=$t timeout 120 "$HERE/bin/bench_onednn_chain" --model=models/mlp.onnx \
          --benchmark_filter='BM_chain(_bf16)?/batch:(1|8192)/|gemm_layer1' --benchmark_repetitions=9 \
          --benchmark_report_aggregates_only=true 2>&1 | grep -E "median" | sed "s/^/threads $t: /" | tee -a "$md"
      done
      echo '```' >> "$md"
    fi
  fi
  if [[ " $STEPS " == *" x3diag "* ]]; then
    # CPU TF32 in split bf16 (bf16x3) at batch 8192: rows per block per thread (KILN_BF16X3_BLOCK_ROWS) on 1 and
    # 16 threads, engine 5 (one team) and 6 (rows split); then oneDNN's own time per matmul (ONEDNN_VERBOSE) at the
    # default block: the rest of an iteration is the splits.
    { echo "## bf16x3 diagnosis (bench_kiln_engine engines 5, 6 at batch 8192)"; echo; echo '```'; } >> "$md"
    for rows in ${KILN_X3_ROWS:-64 128 256 512}; do
      KILN_BF16X3_BLOCK_ROWS=$rows timeout 60 "$HERE/bin/bench_kiln_engine" --model=models/mlp.onnx \
        --benchmark_filter='batch:8192/threads:[01]/engine:[56]/' --benchmark_repetitions=3 \
        --benchmark_report_aggregates_only=true 2>&1 | grep -E "median" | sed "s/^/rows $rows: /" | tee -a "$md"
    done
    for t in 1 0; do
      ONEDNN_VERBOSE=1 timeout 60 "$HERE/bin/bench_kiln_engine" --model=models/mlp.onnx \
        --benchmark_filter="batch:8192/threads:$t/engine:5/" --benchmark_min_time=0.3 2>&1 |
        awk -F, -v t="$t" '/^onednn_verbose,exec/{k=$4" "$5" "$(NF-1); s[k]+=$NF; n[k]++} /^BM_/{print "verbose threads " t ": " $0}
          END{for(k in s) printf "verbose threads %s: %-58s n=%d mean=%.3f ms\n", t, k, n[k], s[k]/n[k]}' | tee -a "$md"
    done
    echo '```' >> "$md"
  fi
  if [[ " $STEPS " == *" course "* ]]; then
    # bench/course_loop.py: the course's loop timed apart (batch 1: the 1/1/1 engine against 1/8192/8192 and the
    # loop's parts; batch 8192: Kiln's pageable staging against the driver's), A/B alternated in one process.
    echo "=== course: bench/course_loop.py"
    KILN_LIBRARY="$WORK/lib/libkiln.so.0" PYTHONPATH="$HERE/python" KILN_BENCH_BIN="$HERE/bin" \
      timeout 300 python3 bench/course_loop.py --json "$WORK/json/course_loop.json" > "$WORK/course.txt" 2>&1
    local corc=$?
    cat "$WORK/course.txt"
    { cat "$WORK/course.txt"; echo; echo "(course_loop exit $corc)"; echo; } >> "$md"
  fi

  if [[ " $STEPS " == *" compare "* ]]; then
    # bench/compare.py (issue 7): the course's tables and the extended peers; writes
    # <date>-<gpu>-compare.{md,json,png} into $OUT. KILN_COMPARE_ARGS=--quick for the short run.
    echo "=== compare: bench/compare.py ${KILN_COMPARE_ARGS:-}"
    KILN_LIBRARY="$WORK/lib/libkiln.so.0" PYTHONPATH="$HERE/python" KILN_BENCH_BIN="$HERE/bin" \
      timeout 560 python3 bench/compare.py --out "$OUT" --commit "$HERE/COMMIT" ${KILN_COMPARE_ARGS:-}
    local cmrc=$?
    echo "=== compare exit $cmrc"
    {
      echo "## Compare (bench/compare.py, exit $cmrc)"
      echo
      ls "$OUT" | grep -- '-compare\.' | sed 's/^/- /'
      echo
    } >> "$md"
  fi

  # The device tool brings back at most 8 files: every run's JSON and text log travel in one archive.
  tar -C "$WORK" -czf "$OUT/runs.tar.gz" --exclude=lib --exclude=engines . 2> /dev/null
  echo "=== done: $md"
  cat "$md"
}

main "$@" 2>&1 | tee "$OUT/log.txt"
