#!/usr/bin/env bash
# Issue 8 fused-MLP kernel on the GPU machine, from the bundle scripts/gpu-test.sh makes (copied into the
# lead's checkout as .carry_fmlp): the CudaFusedMlp tests (KILN_TEST_CUDA=require) and the timing table.
#   FMLP_FILTER   gtest filter (default CudaFusedMlp*)
#   FMLP_SANITIZE compute-sanitizer tool to run the small tests under (memcheck, racecheck), optional
#   FMLP_FULL=1   also the whole kiln_tests binary (the gpu label)
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kiln-fmlp.XXXXXX)
mkdir -p "$WORK/lib"
cp -L "$HERE"/lib/* "$WORK/lib/"
for f in "$WORK"/lib/*.xz; do [[ -e "$f" ]] && xz -d "$f"; done
export LD_LIBRARY_PATH="$WORK/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
chmod +x "$HERE"/bin/*
# The tests find models/ under the source path compiled in (this worktree's); point it at this tree.
SRC=$(cat "$HERE/SOURCE_DIR")
[[ -e "$SRC" ]] || { mkdir -p "$(dirname "$SRC")" && ln -sfn "$PWD" "$SRC"; }
T="$HERE/bin/kiln_tests"
{
  echo "commit $(cat "$HERE/COMMIT"), $(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader)"
  if [[ -n "${FMLP_SANITIZE:-}" ]]; then
    echo "=== compute-sanitizer --tool ${FMLP_SANITIZE}"
    KILN_TEST_CUDA=require timeout 200 compute-sanitizer --tool "$FMLP_SANITIZE" --print-limit 5 "$T" \
      --gtest_filter='CudaFusedMlp.TwoLayers:CudaFusedMlp.OddShapesAndActivations' 2>&1 | tail -30
  fi
  echo "=== kiln_tests --gtest_filter=${FMLP_FILTER:-CudaFusedMlp*}"
  KILN_TEST_CUDA=require KILN_FMLP_BENCH=1 "$T" --gtest_filter="${FMLP_FILTER:-CudaFusedMlp*}" 2>&1 | grep -v "^\[ *RUN\|^\[ *OK" 
  echo "=== exit ${PIPESTATUS[0]}"
  if [[ -d "$HERE/lib_v1" ]]; then  # an earlier libkiln beside this one (FMLP_V1_FILTER, default: the bench)
    echo "=== lib_v1: kiln_tests --gtest_filter=${FMLP_V1_FILTER:-CudaFusedMlp.Bench}"
    LD_LIBRARY_PATH="$HERE/lib_v1:$LD_LIBRARY_PATH" KILN_TEST_CUDA=require KILN_FMLP_BENCH=1 "$T" \
      --gtest_filter="${FMLP_V1_FILTER:-CudaFusedMlp.Bench}" 2>&1 | grep -v "^\[ *RUN\|^\[ *OK"
    echo "=== lib_v1 exit ${PIPESTATUS[0]}"
  fi
  if [[ "${FMLP_FULL:-0}" == 1 ]]; then
    echo "=== full kiln_tests (gpu label)"
    KILN_TEST_CUDA=require "$T" --gtest_brief=1 2>&1 | tail -25
    echo "=== full exit ${PIPESTATUS[0]}"
  fi
} 2>&1 | tee "$OUT/fmlp-log.txt"
