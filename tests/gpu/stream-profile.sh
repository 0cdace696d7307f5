#!/usr/bin/env bash
# stream-profile.sh — ncu on layer_stream_bench (build/layer_stream_bench, from the CMake build): why does a shared-
# memory ring stream slower than plain loads (kernels/NOTES_QUANT.md, session 8)? Profiles one launch each of stream
# only (TMA ring), plain loads and full, with --clock-control none; prints DRAM / L2 / issue figures per launch.
# STALLS=1 bash tests/gpu/stream-profile.sh: the full ncu set (warp stall reasons) on stream only and plain loads.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu is not on this machine's PATH"; exit 2; }
# The bench is one file with no library: without a CMake build, compile it here.
bench=build/layer_stream_bench
if [ ! -x $bench ]; then
  bench=/tmp/layer_stream_bench
  nvcc -O3 -std=c++17 -arch=sm_90a -lineinfo tests/native/layer_stream_bench.cu -o $bench > "$out/build.txt" 2>&1 ||
    { tail -20 "$out/build.txt"; exit 2; }
fi
# STALLS=1: the whole ncu set on the first two launches (stream only, plain loads), to see where the ring's warps wait.
if [ -n "${STALLS:-}" ]; then
  timeout 400 ncu --clock-control none --kernel-name layer_stream_kernel --launch-count 2 --set full $bench profile \
    > "$out/ncu-stalls.txt" 2>&1
  echo "ncu rc $?"
  grep -E "layer_stream_kernel|Duration|DRAM Throughput|Issue Slots Busy|Warp Cycles Per Issued|Active Warps Per|No Eligible|One or More|Stall|stall" \
    "$out/ncu-stalls.txt" | cut -c1-170 | head -80
  exit 0
fi
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_read.sum.per_second,dram__throughput.avg.pct_of_peak_sustained_elapsed
metrics=$metrics,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed
metrics=$metrics,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
metrics=$metrics,lts__t_requests_srcunit_tex.sum,lts__t_sectors_srcunit_tex.sum
timeout 240 ncu --clock-control none --kernel-name layer_stream_kernel --launch-count 3 --metrics "$metrics" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis $bench profile > "$out/ncu-stream.txt" 2>&1
echo "ncu rc $?"
grep -E "layer_stream_kernel|Duration|DRAM Throughput|Memory Throughput|L2 Hit|gpu__time|dram__|lts__|smsp__|l1tex__|Mem Busy|Max Bandwidth" "$out/ncu-stream.txt" | head -80
