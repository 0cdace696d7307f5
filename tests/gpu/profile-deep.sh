#!/usr/bin/env bash
# profile-deep.sh — one GPU-machine call: the full Nsight Compute set for one W4A16 decode GEMV (M = 1), kept as a
# report, then printed three ways under $OUT: the details page, every raw metric (CSV), and the SASS with per-
# instruction stall samples (CSV) — for the question of profile-run.sh (what keeps a 4-bit GEMV at ~0.44 issued
# instructions per scheduler cycle) at instruction level. Nothing to carry.
#   KERNELS (default "gate_up down"): gate_up = w4a16_stream (persistent) and down = w4a16_skinny 8-group batches, from
#   w4a16_bench; qkv_o = the 8-warp w4a16_skinny of qkv / o, attention = attention_kernel and combine =
#   attention_combine_kernel, from the W4A16 decode step of kernel_bench (context 64, each the 41st launch).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu is not on this machine's PATH"; exit 2; }
cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
  ${CMAKE_EXTRA:-} > "$out/build.txt" 2>&1 && cmake --build build -j "$(nproc)" --target w4a16_bench kernel_bench >> "$out/build.txt" 2>&1 ||
  { grep -E "error" "$out/build.txt" | head -20; echo "the benches did not build"; exit 1; }
declare -A regex=([gate_up]='w4a16_streamILb0ELb0E' [down]='w4a16_skinnyILi1ELb0ELb0ELi8ELi8E'
                  [qkv_o]='w4a16_skinnyILi1ELb0ELb0ELi8ELi4E' [attention]='attention_kernel' [combine]='attention_combine')
w4_bench="env W4A16_BENCH_M=1 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 build/w4a16_bench"
declare -A program=([gate_up]="$w4_bench" [down]="$w4_bench" [qkv_o]="build/kernel_bench decode w4a16"
                    [attention]="build/kernel_bench decode w4a16" [combine]="build/kernel_bench decode w4a16")
declare -A skip=([gate_up]=3 [down]=3 [qkv_o]=40 [attention]=40 [combine]=40)
for name in ${KERNELS:-gate_up down}; do
  rep=/tmp/deep-$name
  timeout 200 ncu --clock-control none --set full --import-source no --kernel-name-base mangled \
    --kernel-name "regex:${regex[$name]}" --launch-skip ${skip[$name]} --launch-count 1 -f -o $rep ${program[$name]} \
    > "$out/ncu-run-$name.txt" 2>&1
  echo "== $name (rc $?)"
  ncu -i $rep.ncu-rep --page details > "$out/deep-$name-details.txt" 2>&1
  ncu -i $rep.ncu-rep --page raw --csv > "$out/deep-$name-raw.csv" 2>&1
  ncu -i $rep.ncu-rep --page source --print-source sass --csv > "$out/deep-$name-sass.csv" 2>&1
  python3 tests/gpu/ncu_metrics.py "$out/deep-$name-raw.csv"  # stall reasons and headline counters
done
ls -la "$out"
