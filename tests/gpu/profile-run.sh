#!/usr/bin/env bash
# profile-run.sh — one GPU-machine call: Nsight Compute counters for the 4-bit decode GEMVs alone (M = 1), for the
# question of kernels/NOTES_QUANT.md's plan after session 6: what caps a 4-bit GEMV at ~22–25 GB/s per SM on both
# the H100 and the H200 (DRAM efficiency, requests in flight, or the warps' own issue)?
# Builds w4a16_bench and nf4_bench for sm_90a with CMake, then profiles, each after the warm-up launches:
#   W4A16 gate_up (w4a16_stream, persistent), W4A16 down (w4a16_skinny, 8-group batches), NF4 gate_up / down;
# with --clock-control none (METHOD.md: leave the clocks alone). Nothing to carry. Reports: $OUT/ncu-*.txt, and the
# lines that answer the question (throughputs, hit rates, stall reasons) last.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu is not on this machine's PATH"; exit 2; }
cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
  > "$out/build.txt" 2>&1 || { tail -20 "$out/build.txt"; echo "cmake failed"; exit 1; }
for bench in w4a16_bench nf4_bench; do  # one at a time, so that one failing still leaves the other to profile
  cmake --build build -j "$(nproc)" --target $bench >> "$out/build.txt" 2>&1 ||
    { grep -E "error" "$out/build.txt" | head -20; echo "$bench did not build"; }
done
sections="--section SpeedOfLight --section MemoryWorkloadAnalysis --section MemoryWorkloadAnalysis_Tables
          --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats"
# profile NAME MANGLED_NAME_REGEX BENCH ENV...: the first launch after three warm-ups of the kernel matching the regex.
profile() {
  local name=$1 regex=$2 bench=$3; shift 3
  [ -x "build/$bench" ] || { echo "== $name: build/$bench missing"; return; }
  env "$@" timeout 120 ncu --clock-control none --kernel-name-base mangled --kernel-name "regex:$regex" \
    --launch-skip 3 --launch-count 1 $sections "build/$bench" > "$out/ncu-$name.txt" 2>&1
  echo "== $name (rc $?)"
  grep -E "^  [a-z_]+.*\(|Duration|DRAM Throughput|Memory Throughput|L1/TEX Hit|L2 Hit|Mem Busy|Max Bandwidth|Issue Slots Busy|No Eligible|Active Warps Per Scheduler|Eligible Warps|Warp Cycles Per Issued|Achieved Occupancy|Registers Per|Shared Memory Configuration|Waves Per SM|Stall" \
    "$out/ncu-$name.txt" | head -40
}
quiet_w4="W4A16_BENCH_M=1 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1"
profile w4a16-gate_up 'w4a16_streamILb0ELb0E' w4a16_bench $quiet_w4
profile w4a16-down 'w4a16_skinnyILi1ELb0ELb0ELi8ELi8E' w4a16_bench $quiet_w4
quiet_nf4="NF4_BENCH_M=1 NF4_BENCH_NO_CHECKS=1"
profile nf4-gate_up 'nf4_gemv_stream' nf4_bench $quiet_nf4 NF4_BENCH_SHAPES=16384x3072
profile nf4-down 'nf4_gemv' nf4_bench $quiet_nf4 NF4_BENCH_SHAPES=3072x8192
