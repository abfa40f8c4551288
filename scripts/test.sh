#!/usr/bin/env bash
# Kiln's test command (CI runs it through .ci/run). On a fresh Debian 12 machine it installs what it
# needs, then runs, stopping at the first failure:
#   1. deps      scripts/install-deps.sh
#   2. build     Release build with Ninja into build/
#   3. test      every ctest test except the "gpu" label
#   4. asan      ASan+UBSan build (build-asan/) running the "unit" tests, leak checking on
#   5. fuzz      clang-14 libFuzzer build (build-fuzz/), each fuzzer 30 s over a seed corpus
#   6. install   cmake --install, then examples/ built as a separate consumer with find_package(kiln)
# It ends with per-stage timings and ctest's summary line of stage 3.
#
# Environment knobs (defaults are what CI uses):
#   KILN_JOBS=2            parallel build and test jobs
#   KILN_FUZZ_SECONDS=30   time per fuzzer
#   KILN_STAGES="deps build test asan fuzz install"   run a subset, e.g. KILN_STAGES="build test"
#   KILN_BUILD_DIR=build KILN_ASAN_DIR=build-asan KILN_FUZZ_DIR=build-fuzz
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

JOBS=${KILN_JOBS:-2}
FUZZ_SECONDS=${KILN_FUZZ_SECONDS:-30}
STAGES=${KILN_STAGES:-deps build test asan fuzz install}
BUILD=${KILN_BUILD_DIR:-build}
ASAN_BUILD=${KILN_ASAN_DIR:-build-asan}
FUZZ_BUILD=${KILN_FUZZ_DIR:-build-fuzz}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-test.XXXXXX")

TIMINGS=()
CURRENT=""
STAGE_START=0
SCRIPT_START=$SECONDS
CTEST_SUMMARY=""  # summary line of the latest ctest run
SUITE_SUMMARY=""  # summary line of the full suite (stage "test")

banner() {
  printf '\n==================================================================\n'
  printf '== %s\n' "$*"
  printf '==================================================================\n'
}

print_timings() {
  printf '\nstage timings:\n'
  local t
  for t in "${TIMINGS[@]}"; do printf '  %s\n' "$t"; done
  printf '  %-8s %5ds\n' total $((SECONDS - SCRIPT_START))
}

# On any exit: name the stage that failed (if one did) and clean up.
on_exit() {
  local rc=$?
  if [ -n "$CURRENT" ]; then
    TIMINGS+=("$(printf '%-8s %5ds  FAILED' "$CURRENT" $((SECONDS - STAGE_START)))")
    print_timings
    printf '\ntest.sh: stage "%s" FAILED (exit %d)\n' "$CURRENT" "$rc"
  fi
  rm -rf "$TMP"
  exit "$rc"
}
trap on_exit EXIT

wants() { [[ " $STAGES " == *" $1 "* ]]; }

# run_stage NAME DESCRIPTION FUNCTION: banner, run, record the time.
run_stage() {
  local name=$1 desc=$2 fn=$3
  wants "$name" || return 0
  CURRENT=$name
  STAGE_START=$SECONDS
  banner "$name: $desc"
  "$fn"
  TIMINGS+=("$(printf '%-8s %5ds' "$name" $((SECONDS - STAGE_START)))")
  printf -- '-- %s done in %ds\n' "$name" $((SECONDS - STAGE_START))
  CURRENT=""
}

# Runs ctest, echoing its output, and remembers the "N% tests passed, ..." line.
run_ctest() {
  local log=$TMP/ctest.log
  ctest "$@" 2>&1 | tee "$log"
  CTEST_SUMMARY=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1 || true)
  # ctest exits 0 when no test matched; an empty selection is a failure here.
  if grep -q '^No tests were found' "$log"; then
    echo "test.sh: ctest found no tests" >&2
    return 1
  fi
}

stage_deps() {
  bash scripts/install-deps.sh
  printf 'cmake %s | ninja %s | %s | %s | %s cores\n' "$(cmake --version | head -n1 | awk '{print $3}')" \
    "$(ninja --version)" "$(g++ --version | head -n1)" "$(clang++-14 --version | head -n1)" "$(nproc)"
}

stage_build() {
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
  cmake --build "$BUILD" -j"$JOBS"
}

stage_test() {
  run_ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" -LE gpu
  SUITE_SUMMARY=$CTEST_SUMMARY
}

# Sanitizer runtime settings shared by the ASan and fuzz stages. Leak checking stays on; the LSan
# suppressions file (.ci/lsan.supp, when present) lists third-party leaks only, each with its reason.
export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:check_initialization_order=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="print_suppressions=0"
if [ -f .ci/lsan.supp ]; then LSAN_OPTIONS+=":suppressions=$ROOT/.ci/lsan.supp"; fi
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

stage_asan() {
  # -O1 keeps the sanitized tests fast enough on 2 cores; -g1 still gives file:line in reports. No
  # benchmarks, examples or CUDA; the rest is built so that every test binary labelled "unit" exists
  # (ctest silently skips a gtest binary that was never built).
  cmake -S . -B "$ASAN_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_EXAMPLES=OFF -DKILN_CUDA=OFF
  cmake --build "$ASAN_BUILD" -j"$JOBS"
  run_ctest --test-dir "$ASAN_BUILD" --output-on-failure -j"$JOBS" -L unit
}

stage_fuzz() {
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$FUZZ_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -g1" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DKILN_BUILD_FUZZERS=ON -DKILN_BUILD_TESTS=OFF -DKILN_BUILD_BENCH=OFF -DKILN_BUILD_EXAMPLES=OFF \
    -DKILN_CUDA=OFF
  cmake --build "$FUZZ_BUILD" -j"$JOBS" --target fuzz_onnx_importer fuzz_engine_loader

  # Seeds. Importer: a tiny inline-weight MLP, the dynamo export (8 KB, its weights are external data
  # the fuzzer's base dir doesn't have) and a 4 KB prefix of models/mlp.onnx. Loader: engines built by
  # the Release `kiln build` from the tiny MLP and from models/mlp.onnx (~1 MB: weights dominate).
  local onnx_corpus=$TMP/corpus_onnx engine_corpus=$TMP/corpus_engine
  local kiln_cli=$BUILD/tools/kiln/kiln
  [ -x "$kiln_cli" ] || { echo "test.sh: $kiln_cli missing: the fuzz stage needs the build stage" >&2; return 1; }
  mkdir -p "$onnx_corpus" "$engine_corpus" "$FUZZ_BUILD/artifacts"
  protoc --encode=onnx.ModelProto -I/usr/include/onnx onnx.proto \
    < tests/fuzz/seeds/tiny_mlp.textproto > "$onnx_corpus/tiny_mlp.onnx"
  cp tests/fixtures/mlp_dynamo/mlp_dynamo.onnx "$onnx_corpus/"
  head -c 4096 models/mlp.onnx > "$onnx_corpus/mlp_prefix4k.onnx"
  "$kiln_cli" build --onnx="$onnx_corpus/tiny_mlp.onnx" --saveEngine="$engine_corpus/tiny_mlp.engine"
  "$kiln_cli" build --onnx=models/mlp.onnx --saveEngine="$engine_corpus/mlp.engine"

  # A fuzzer input that asks for more than 2 GiB gets a failed allocation (null), as on a small
  # machine, instead of libFuzzer's out-of-memory abort: the library must handle that with a Status.
  local -x ASAN_OPTIONS="$ASAN_OPTIONS:allocator_may_return_null=1:max_allocation_size_mb=2048"
  local fuzzer corpus max_len
  for fuzzer in fuzz_onnx_importer fuzz_engine_loader; do
    if [ "$fuzzer" = fuzz_onnx_importer ]; then corpus=$onnx_corpus; else corpus=$engine_corpus; fi
    # Inputs that once crashed this fuzzer run first, every time.
    if [ -d "tests/fuzz/regressions/$fuzzer" ]; then cp "tests/fuzz/regressions/$fuzzer"/* "$corpus/"; fi
    max_len=$(find "$corpus" -type f -printf '%s\n' | sort -n | tail -n 1)
    printf -- '-- %s: %ds over %s (max_len %d)\n' "$fuzzer" "$FUZZ_SECONDS" "$(find "$corpus" -type f -printf '%f ')" "$max_len"
    "$FUZZ_BUILD/tests/fuzz/$fuzzer" "$corpus" -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" \
      -timeout=20 -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$FUZZ_BUILD/artifacts/$fuzzer-"
  done
}

stage_install() {
  local prefix=$TMP/prefix consumer=$TMP/examples
  cmake --install "$BUILD" --prefix "$prefix"
  cmake -S examples -B "$consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build "$consumer" -j"$JOBS"
  # The consumer must run against the installed library, not the build tree's.
  ldd "$consumer/infer_mlp" | grep -F "$prefix/" || { echo "test.sh: infer_mlp does not use $prefix" >&2; return 1; }
  "$consumer/infer_mlp" models/mlp.onnx "$TMP/mlp.engine" tests/fixtures/mlp_first64_input.bin
}

run_stage deps "install dependencies" stage_deps
run_stage build "Release build ($BUILD/)" stage_build
run_stage test "ctest, all labels but gpu ($BUILD/)" stage_test
run_stage asan "ASan+UBSan build, unit tests ($ASAN_BUILD/)" stage_asan
run_stage fuzz "libFuzzer, ${FUZZ_SECONDS}s per fuzzer ($FUZZ_BUILD/)" stage_fuzz
run_stage install "install + find_package(kiln) consumer build of examples/" stage_install

banner "all stages passed"
print_timings
# Last line: the full suite's ctest summary (stage 3), for whoever reads the closing line.
if [ -n "$SUITE_SUMMARY" ]; then
  printf '\n%s\n' "$SUITE_SUMMARY"
fi
