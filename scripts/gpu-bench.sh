#!/usr/bin/env bash
# Builds Kiln and the CPU benchmark peers here (Release) and packs everything the GPU machine lacks into
# .carry_bench/ (ignored by git), then prints the device-tool call that runs it there.
#
#   bash scripts/gpu-bench.sh            # BUILD_DIR (default build) must be, or becomes, a Release tree
#   bash scripts/gpu-bench.sh --no-build # pack what BUILD_DIR already holds
#
# The GPU machine (Ubuntu 24.04, glibc 2.39) has libstdc++, libgcc_s and libgomp but no oneDNN, protobuf,
# ONNX or Google Benchmark, so every library `ldd` resolves for the three binaries is carried except glibc's
# own, libstdc++, libgcc_s and libgomp; libdnnl (~40 MB) goes xz-compressed. remote.sh (from bench/remote.sh)
# unpacks them into /tmp and points only the native binaries at them.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD_DIR:-build}
BUNDLE=.carry_bench
DO_BUILD=1
[[ "${1:-}" == "--no-build" ]] && DO_BUILD=0

# ---- build ----
if [[ $DO_BUILD == 1 ]]; then
  if [[ -f "$BUILD/CMakeCache.txt" ]]; then
    bt=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD/CMakeCache.txt")
    if [[ "$bt" != "Release" ]]; then
      echo "gpu-bench: $BUILD is a '$bt' build; use a Release tree, e.g. BUILD_DIR=build-release" >&2
      exit 1
    fi
    cmake -S . -B "$BUILD" > /dev/null
  else
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
  fi
  cmake --build "$BUILD" --target kiln_cli bench_onednn_chain bench_l2_stream bench_kiln_engine
fi

BINS=()
for b in "$BUILD/tools/kiln/kiln" "$BUILD/bench/bench_onednn_chain" "$BUILD/bench/bench_l2_stream" "$BUILD/bench/bench_kiln_engine"; do
  if [[ -x "$b" ]]; then BINS+=("$b"); else echo "gpu-bench: warning: $b not built; its rows will read 'not run'" >&2; fi
done
((${#BINS[@]})) || { echo "gpu-bench: nothing built under $BUILD" >&2; exit 1; }

# ---- bundle ----
rm -rf "$BUNDLE"
mkdir -p "$BUNDLE"/{bin,lib,bench,models}
cp -L "${BINS[@]}" "$BUNDLE/bin/"
# Present on the GPU machine (and must come from it): glibc, the C++ runtime, GCC's OpenMP runtime.
SKIP='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libgomp|libcudart|libcublasLt|libcublas)\.so'
for b in "${BINS[@]}"; do
  ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
    [[ "$soname" =~ $SKIP ]] && continue
    [[ -e "$BUNDLE/lib/$soname" || -e "$BUNDLE/lib/$soname.xz" ]] && continue
    if [[ $(stat -L -c %s "$path") -gt 8000000 ]]; then
      xz -T0 -6 -c "$path" > "$BUNDLE/lib/$soname.xz"
    else
      cp -L "$path" "$BUNDLE/lib/$soname"
    fi
  done
  if ldd "$b" | grep -q 'not found'; then
    echo "gpu-bench: $b has unresolved libraries here:" >&2; ldd "$b" | grep 'not found' >&2; exit 1
  fi
done
cp bench/run_cpu_bench.sh bench/ort_cpu.py bench/summarize.py bench/mlp_int8.cache "$BUNDLE/bench/"
cp bench/remote.sh "$BUNDLE/remote.sh"
cp models/mlp.onnx "$BUNDLE/models/"
commit=$(git rev-parse --verify -q HEAD || echo "no-commit")
if [[ -n "$(git status --porcelain --untracked-files=no 2> /dev/null)" || "$commit" == "no-commit" ]]; then
  commit="$commit (+ uncommitted changes)"
fi
echo "$commit" > "$BUNDLE/COMMIT"

EXCLUDE=.git/info/exclude
if ! grep -qxF "/$BUNDLE/" "$EXCLUDE" 2> /dev/null; then
  [[ -s "$EXCLUDE" && -n "$(tail -c1 "$EXCLUDE")" ]] && echo >> "$EXCLUDE"
  echo "/$BUNDLE/" >> "$EXCLUDE"
fi

# ---- sizes: the bundle, and everything that travels with it ----
bundle_bytes=$(du -sb "$BUNDLE" | cut -f1)
tree_bytes=$(git ls-files -z -co --exclude-standard | xargs -0 -r stat -c %s 2> /dev/null | awk '{s += $1} END {print s + 0}')
[[ -d shared ]] && tree_bytes=$((tree_bytes + $(du -sb shared | cut -f1)))
echo "gpu-bench: bundle $BUNDLE: $((bundle_bytes / 1048576)) MiB ($(ls "$BUNDLE/lib" | tr '\n' ' '))"
echo "gpu-bench: working tree that travels (tracked + untracked, not ignored): $((tree_bytes / 1048576)) MiB"
if ((bundle_bytes > 40 * 1048576)); then echo "gpu-bench: warning: bundle is over 40 MiB" >&2; fi
if ((bundle_bytes + tree_bytes > 64 * 1048576)); then
  echo "gpu-bench: error: bundle + working tree exceed the device tool's 64 MiB; ignore build folders" \
       "(e.g. echo /build/ >> .git/info/exclude)" >&2
  exit 1
fi

cat << 'EOF'

Run on the GPU machine with the device tool (about 2-3 minutes there, plus the machine's start):
  run(carry=[".carry_bench"], timeout_s=600,
      command="cd .carry_bench && PYTHONUNBUFFERED=1 bash remote.sh")
(name a kind only to choose the machine: a kind other than the one held costs a fresh start.)
Results come back under the reply's files_at: <date>-<tag>-cpu.md and .json (copy both into bench/results/),
log.txt and raw.tar.gz; the table is also at the end of output_tail.
EOF
