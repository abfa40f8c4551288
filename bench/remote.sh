#!/usr/bin/env bash
# Runs the CPU benchmark from a bundle made by scripts/gpu-bench.sh (copied into it as remote.sh):
#
#   cd .carry_bench && bash remote.sh          # on the GPU machine; results go to $OUT
#
# The bundle: bin/ (kiln, bench_onednn_chain, bench_l2_stream), lib/ (shared libraries that machine lacks,
# libdnnl xz-compressed), bench/ (run_cpu_bench.sh, ort_cpu.py, summarize.py), models/mlp.onnx, COMMIT.
# The bundle may be read-only: libraries are unpacked and results written under a fresh /tmp folder.
# $OUT receives four files (the device tool brings back at most 8): <date>-<tag>-cpu.md and .json, log.txt,
# raw.tar.gz. Environment: OUT (default ./out), KILN_BENCH_TAG (default from the GPU's name), PYTHON.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/kiln-bench.XXXXXX)

main() {
  mkdir -p "$WORK/lib"
  # A CUDA-enabled build links cudart/cuBLASLt: they come from that machine's own toolkit.
  export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64"
  cp -L "$HERE"/lib/* "$WORK/lib/"
  for f in "$WORK"/lib/*.xz; do
    [[ -e "$f" ]] || continue
    if command -v xz > /dev/null; then xz -d "$f"
    else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[1][:-3], "wb"))' "$f" && rm "$f"
    fi
  done
  chmod +x "$HERE"/bin/* 2> /dev/null || true

  echo "=== bundle libraries: $(ls "$WORK/lib" | tr '\n' ' ')"
  missing=0
  for b in "$HERE"/bin/*; do
    if LD_LIBRARY_PATH="$WORK/lib" ldd "$b" | grep -q 'not found'; then
      echo "=== $b: missing libraries:"; LD_LIBRARY_PATH="$WORK/lib" ldd "$b" | grep 'not found'; missing=1
    fi
  done
  [[ $missing == 0 ]] && echo "=== every binary's libraries resolve"

  if [[ -z "${KILN_BENCH_TAG:-}" ]]; then
    gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | head -1 | tr 'A-Z' 'a-z')
    case "$gpu" in
      *h100*) KILN_BENCH_TAG=h100-host ;;
      *h200*) KILN_BENCH_TAG=h200-host ;;
      *) KILN_BENCH_TAG=gpu-host ;;
    esac
  fi
  DATE=$(date -u +%F)
  COMMIT=$(cat "$HERE/COMMIT" 2> /dev/null || echo unknown)
  NAME="$DATE-$KILN_BENCH_TAG-cpu"

  bash "$HERE/bench/run_cpu_bench.sh" --bin "$HERE/bin" --lib "$WORK/lib" --model "$HERE/models/mlp.onnx" \
    --raw "$WORK/raw" --out "$OUT/$NAME" --commit "$COMMIT" --tag "$KILN_BENCH_TAG" "$@"
  rc=$?
  tar -C "$WORK" -czf "$OUT/raw.tar.gz" raw
  echo "=== remote.sh done (exit $rc): $OUT/$NAME.md"
  return $rc
}

main "$@" 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
