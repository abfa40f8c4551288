#!/usr/bin/env bash
# Packs kiln_tests (BUILD_DIR, default build-cuda) and the libraries the GPU machine lacks into DEST
# (default /work/main/.carry_fmlp, for run(carry=[".carry_fmlp"], command="bash .carry_fmlp/fmlp-remote.sh")).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=${BUILD_DIR:-build-cuda}
DEST=${DEST:-/work/main/.carry_fmlp}
rm -rf "$DEST"
mkdir -p "$DEST"/{bin,lib}
cp -L "$BUILD/tests/kiln_tests" "$DEST/bin/"
SKIP='^(linux-vdso|ld-linux|libc|libm|libpthread|libdl|librt|libresolv|libutil|libstdc\+\+|libgcc_s|libgomp|libcudart|libcublasLt|libcublas)\.so'
ldd "$BUILD/tests/kiln_tests" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | while read -r soname path; do
  [[ "$soname" =~ $SKIP ]] && continue
  if [[ $(stat -L -c %s "$path") -gt 8000000 ]]; then xz -T0 -6 -c "$path" > "$DEST/lib/$soname.xz"
  else cp -L "$path" "$DEST/lib/$soname"; fi
done
cp scripts/fmlp-remote.sh "$DEST/"
echo "$ROOT" > "$DEST/SOURCE_DIR"
commit=$(git rev-parse --short HEAD)
[[ -n "$(git status --porcelain --untracked-files=no)" ]] && commit="$commit (+ uncommitted changes)"
echo "$commit" > "$DEST/COMMIT"
du -sh "$DEST"; ls "$DEST/lib"
