#!/usr/bin/env bash
# Issue 8 fused-MLP kernel on the GPU machine, from the bundle scripts/fmlp-bundle.sh makes (copied into the
# lead's checkout as .carry_fmlp): each CudaFusedMlp test in its own process (KILN_TEST_CUDA=require,
# KILN_FMLP_BENCH=1 for the timing table), for lib/ and, when the bundle has one, an earlier lib_v1/; the first
# crash is re-run under cuda-gdb for a backtrace.
#   FMLP_TESTS    test names (default: all of CudaFusedMlp)
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
TESTS=${FMLP_TESTS:-"RefusesWhatItCannotRun TwoLayers ThreeLayersCourseShape OddShapesAndActivations CourseModelWeights TunedThroughTheOpHarness Batch8192 Bench"}
export KILN_TEST_CUDA=require KILN_FMLP_BENCH=1
{
  echo "commit $(cat "$HERE/COMMIT"), $(date -u +%FT%TZ), $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
  crashed=""
  # FMLP_PLAN: "libdir:tests" pairs; tests "all" = $TESTS. Other lib dirs hold earlier libkiln builds.
  for item in ${FMLP_PLAN:-lib:all lib_v1:all}; do
    libdir=${item%%:*}
    which=${item#*:}
    [[ -d "$HERE/$libdir" ]] || continue
    extra=""
    [[ $libdir != lib ]] && extra="$HERE/$libdir:"
    list=$TESTS
    [[ $which != all ]] && list=${which//,/ }
    echo "=== $libdir ($(cat "$HERE/$libdir/COMMIT" 2> /dev/null || cat "$HERE/COMMIT"))"
    for t in $list; do
      LD_LIBRARY_PATH="$extra$LD_LIBRARY_PATH" timeout 120 "$T" --gtest_filter="CudaFusedMlp.$t" > "$WORK/t.txt" 2>&1
      rc=$?
      grep -E "Failure|Expected|Which is|error|rel|fmlp-bench|tune|picks|Value of|Actual|\.cpp:" "$WORK/t.txt" | head -40
      echo "--- $libdir $t: exit $rc"
      [[ $rc -ge 128 && -z "$crashed" ]] && crashed="$libdir $t"
    done
  done
  if [[ -n "$crashed" ]]; then
    set -- $crashed
    extra=""
    [[ $1 != lib ]] && extra="$HERE/$1:"
    echo "=== cuda-gdb backtrace: $crashed"
    LD_LIBRARY_PATH="$extra$LD_LIBRARY_PATH" timeout 150 cuda-gdb -batch -ex "set pagination off" -ex run -ex bt \
      --args "$T" --gtest_filter="CudaFusedMlp.$2" 2>&1 | grep -v "^\[New Thread\|^\[Thread" | tail -40
  fi
  if [[ "${FMLP_FULL:-0}" == 1 ]]; then
    echo "=== full kiln_tests (gpu label)"
    env -u KILN_FMLP_BENCH timeout "${FMLP_FULL_TIMEOUT:-150}" "$T" --gtest_brief=1 2>&1 | tail -25
    echo "=== full exit ${PIPESTATUS[0]}"
  fi
} 2>&1 | tee "$OUT/fmlp-log.txt"
