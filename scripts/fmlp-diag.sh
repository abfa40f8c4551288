#!/usr/bin/env bash
# Diagnostics for the fused MLP kernels on the GPU machine (bundle from scripts/fmlp-bundle.sh): the bench
# with the SM clock sampled beside it, then Nsight Compute on the Profile test's launches. Files in $OUT.
set -u
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
OUT=${OUT:-$HERE/out}
WORK=$(mktemp -d /tmp/kiln-fmlp.XXXXXX)
mkdir -p "$WORK/lib" "$OUT"
cp -L "$HERE"/lib/* "$WORK/lib/"
for f in "$WORK"/lib/*.xz; do [[ -e "$f" ]] && xz -d "$f"; done
export LD_LIBRARY_PATH="$WORK/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
chmod +x "$HERE"/bin/*
SRC=$(cat "$HERE/SOURCE_DIR")
[[ -e "$SRC" ]] || { mkdir -p "$(dirname "$SRC")" && ln -sfn "$PWD" "$SRC"; }
T="$HERE/bin/kiln_tests"
export KILN_TEST_CUDA=require
{
  echo "commit $(cat "$HERE/COMMIT"), $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=clocks.sm,clocks.mem,clocks.max.sm,clocks.applications.graphics,power.draw,power.limit,pstate,clocks_throttle_reasons.active --format=csv
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu --format=csv -lms 100 > "$OUT/clocks.csv" &
  SMI=$!
  KILN_FMLP_BENCH=1 "$T" --gtest_filter=CudaFusedMlp.Bench 2>&1 | grep fmlp-bench
  kill $SMI
  echo "=== SM clock during the bench (MHz): min/median/max"
  awk -F', ' 'NR>1 {print $2+0}' "$OUT/clocks.csv" | sort -n | awk '{a[NR]=$1} END {print a[1], a[int(NR/2)+1], a[NR], "(" NR " samples)"}'
  echo "=== ncu"
  KILN_FMLP_PROFILE=1 timeout 200 ncu -k regex:fmlp_ --section SpeedOfLight --section WarpStateStats \
    --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section SchedulerStats \
    --section ComputeWorkloadAnalysis "$T" --gtest_filter=CudaFusedMlp.Profile > "$OUT/ncu.txt" 2>&1
  echo "ncu exit $?"
  grep -E "fmlp_|Duration|SM Frequency|DRAM Frequency|Memory Throughput|DRAM Throughput|Compute \(SM\) Throughput|L2 Hit|Achieved Occupancy|Warp Cycles Per Issued|Issued Warp Per|No Eligible|Registers Per|Executed Ipc A|Mem Busy|Max Bandwidth|L1/TEX Hit|stall|Stall" "$OUT/ncu.txt" | cut -c1-200 | head -120
} 2>&1 | tee "$OUT/diag-log.txt"
