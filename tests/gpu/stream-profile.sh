#!/usr/bin/env bash
# stream-profile.sh — ncu on layer_stream_bench (build/layer_stream_bench, from the CMake build): why does a shared-
# memory ring stream slower than plain loads (kernels/NOTES_QUANT.md, session 8)? Profiles one launch each of stream
# only (TMA ring), plain loads and full, with --clock-control none; prints DRAM / L2 / issue figures per launch.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu is not on this machine's PATH"; exit 2; }
[ -x build/layer_stream_bench ] || { echo "build/layer_stream_bench is missing (build the CUDA targets first)"; exit 2; }
metrics=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_read.sum.per_second,dram__throughput.avg.pct_of_peak_sustained_elapsed
metrics=$metrics,lts__t_sector_hit_rate.pct,lts__t_sectors_srcunit_tex_op_read.sum,lts__throughput.avg.pct_of_peak_sustained_elapsed
metrics=$metrics,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum
metrics=$metrics,lts__t_requests_srcunit_tex.sum,lts__t_sectors_srcunit_tex.sum
timeout 240 ncu --clock-control none --kernel-name layer_stream_kernel --launch-count 3 --metrics "$metrics" \
  --section SpeedOfLight --section MemoryWorkloadAnalysis build/layer_stream_bench profile > "$out/ncu-stream.txt" 2>&1
echo "ncu rc $?"
grep -E "layer_stream_kernel|Duration|DRAM Throughput|Memory Throughput|L2 Hit|gpu__time|dram__|lts__|smsp__|l1tex__|Mem Busy|Max Bandwidth" "$out/ncu-stream.txt" | head -80
