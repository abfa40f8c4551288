#!/usr/bin/env bash
# GPU tests and CUDA engine runs on the GPU machine, in one call. Here: builds Kiln (Release, CUDA on),
# packs the binaries and every library that machine lacks into .carry_gpu/ (ignored by git). There:
# scripts/remote-gpu.sh runs the "gpu" ctest label's binary (every op's CUDA kernels against the float64
# reference, the CUDA model tests), the Python GPU tests (tests/python/test_gpu.py with the bundled
# libkiln and python/kiln) and the C ABI test, then `kiln build`/`kiln run` for the course's engines, and
# writes a result file for bench/results/ (GPU, driver, date, commit).
#
#   bash scripts/gpu-test.sh             # BUILD_DIR (default build-gpu): Release tree with CUDA
#   bash scripts/gpu-test.sh --no-build  # pack what BUILD_DIR already holds
#
# Then, with the device tool:
#   run(carry=[".carry_gpu"], timeout_s=600, command="bash .carry_gpu/remote-gpu.sh")
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD_DIR:-build-gpu}
BUNDLE=.carry_gpu
if [[ "${1:-}" != "--no-build" ]]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_BUILD_EXAMPLES=OFF > /dev/null
  cmake --build "$BUILD" --target kiln_cli kiln_tests kiln_capi_test
  # bench/compare.py's C++ peers (the bare oneDNN chain, the L2 stream), where Google Benchmark was found
  if cmake --build "$BUILD" --target help | grep -q bench_onednn_chain; then
    cmake --build "$BUILD" --target bench_onednn_chain bench_l2_stream
  fi
  if cmake --build "$BUILD" --target help | grep -q bench_low_latency; then
    cmake --build "$BUILD" --target bench_low_latency bench_kiln_engine bench_l2_ingest bench_pcie_read
  fi
fi
BINS=("$BUILD/tools/kiln/kiln" "$BUILD/tests/kiln_tests" "$BUILD/tests/python/kiln_capi_test")
for b in bench_onednn_chain bench_l2_stream bench_low_latency bench_kiln_engine bench_l2_ingest bench_pcie_read; do
  if [[ -x "$BUILD/bench/$b" ]]; then BINS+=("$BUILD/bench/$b"); else echo "gpu-test: no $BUILD/bench/$b (compare.py reports that peer as not bundled)"; fi
done
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"/{bin,lib,python}
cp -L "${BINS[@]}" "$BUNDLE/bin/"
# On the GPU machine already: glibc, the C++ and OpenMP runtimes, and CUDA's own libraries (cudart and
# cuBLASLt must come from that machine's toolkit, matching its driver).
SKIP='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libgomp|libcudart|libcublasLt|libcublas)\.so'
for b in "${BINS[@]}"; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
    [[ "$soname" =~ $SKIP ]] && continue
    [[ -e "$BUNDLE/lib/$soname" || -e "$BUNDLE/lib/$soname.xz" ]] && continue
    if [[ $(stat -L -c %s "$path") -gt 8000000 ]]; then xz -T0 -6 -c "$path" > "$BUNDLE/lib/$soname.xz"
    else cp -L "$path" "$BUNDLE/lib/$soname"; fi
  done
done
cp -r python/kiln "$BUNDLE/python/"
# Fashion-MNIST for the INT8 tests (that machine has no Debian datasets): the test set, and the first
# 12288 training images with their labels (calibration, and held-out data for --accuracyTarget).
FM=/usr/share/datasets/fashion-mnist
mkdir -p "$BUNDLE/data/fashion-mnist"
cp "$FM"/t10k-*.gz "$BUNDLE/data/fashion-mnist/"
python3 - "$FM" "$BUNDLE/data/fashion-mnist" 12288 << 'PY'
import gzip, struct, sys
src, dst, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for kind, per in (("images-idx3-ubyte", 784), ("labels-idx1-ubyte", 1)):
    raw = gzip.open(f"{src}/train-{kind}.gz").read()
    ndim = raw[3]
    dims = list(struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])); dims[0] = n
    body = raw[4 + 4 * ndim: 4 + 4 * ndim + n * per]
    with gzip.open(f"{dst}/train-{kind}.gz", "wb") as f:
        f.write(raw[:4] + struct.pack(f">{ndim}I", *dims) + body)
PY
cp scripts/remote-gpu.sh "$BUNDLE/"
commit=$(git rev-parse --short HEAD)
[[ -n "$(git status --porcelain --untracked-files=no)" ]] && commit="$commit (+ uncommitted changes)"
echo "$commit" > "$BUNDLE/COMMIT"
grep -qxF "/$BUNDLE/" .git/info/exclude 2> /dev/null || echo "/$BUNDLE/" >> .git/info/exclude
echo "gpu-test: $BUNDLE is $(du -sh "$BUNDLE" | cut -f1): $(ls "$BUNDLE/lib" | tr '\n' ' ')"
echo 'gpu-test: now run(carry=[".carry_gpu"], timeout_s=600, command="bash .carry_gpu/remote-gpu.sh")'
echo 'gpu-test: comparison (bench/compare.py, from the working tree): command="KILN_GPU_STEPS=compare bash .carry_gpu/remote-gpu.sh"'
