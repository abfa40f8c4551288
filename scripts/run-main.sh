#!/usr/bin/env bash
# Kiln's main job, the course's trtexec session redone with the kiln CLI: install dependencies, build
# (Release, into build/), build an engine for models/mlp.onnx with a dynamic batch profile (1..8192,
# tuned for 8192), time it at batch 1 and 8192 on one thread and on the default thread count, and
# measure its top-1 accuracy on the Fashion-MNIST test set.
#   KILN_JOBS=2   parallel build jobs
#   KILN_BUILD_DIR=build
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

JOBS=${KILN_JOBS:-2}
BUILD=${KILN_BUILD_DIR:-build}
KILN=$BUILD/tools/kiln/kiln
ENGINE=$BUILD/mlp.engine

step() {
  printf '\n== %s\n' "$*"
}
# Echoes a command before running it, so the log reads like a terminal session.
run() {
  printf '$ %s\n' "$*"
  "$@"
}

step "install dependencies"
bash scripts/install-deps.sh

step "build (Release, $BUILD/)"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$JOBS"

step "build an engine: dynamic batch 1..8192, optimized for 8192"
run "$KILN" build --onnx=models/mlp.onnx --saveEngine="$ENGINE" \
  --minShapes=input:1x1x28x28 --optShapes=input:8192x1x28x28 --maxShapes=input:8192x1x28x28
run "$KILN" inspect --loadEngine="$ENGINE"

for batch in 1 8192; do
  step "run: batch $batch, 1 thread"
  run "$KILN" run --loadEngine="$ENGINE" --shapes=input:${batch}x1x28x28 --threads=1
  step "run: batch $batch, default threads"
  run "$KILN" run --loadEngine="$ENGINE" --shapes=input:${batch}x1x28x28
done

step "eval: top-1 on the Fashion-MNIST test set (model card: 88.37%)"
run "$KILN" eval --loadEngine="$ENGINE" --dataset=fashion-mnist
