#!/usr/bin/env bash
# rows-run.sh — one GPU-machine call for session 27's question: does W4A16 v10 (w4a16_rows, SA_W4A16_ROWS=1: warps own
# 16-row tiles, x staged once per block in shared memory) beat the ring kernel at 9–16 tokens on large N, as Marlin's
# shared x tile suggests (session 26: gate_up M = 16, Marlin 12.78 against our 16.73 µs; issue #5 asks 3x cuBLAS)?
# Builds per file (tests/gpu/ab-build.sh, varied file kernels/linear_w4a16.cu; variants rows / rows4 / rows8 = the
# knob on with 6 / 4 / 8 ring stages), then, within DEADLINE (default 300 s):
#   1. the W4A16 native checks (every check whose name has "w4a16": the linear, epilogue and folded-norm checks, the
#      new v10 shapes) against rows, then rows4 / rows8;
#   2. w4a16_bench at M = 12, 16 on gate_up and lm_head (cuBLAS bf16 in main's run), main / rows / rows4 / rows8 /
#      main again, then M = 1, 8 once each for main and rows (those must not move);
#   3. kernel_bench prefill w4a16 at 12 and 16 tokens (the folded forward), main and rows, twice each.
# Nothing to carry. On the device: bash tests/gpu/rows-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/rowsab DEADLINE=${DEADLINE:-300} \
  VARIANTS="rows:-DSA_W4A16_ROWS=1 rows4:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_STAGES=4 rows8:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_STAGES=8" \
  . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "w4a16_rows" "$out/ptxas.txt" | cut -c1-200 | head -8
run "W4A16 native checks, rows" 90 sh -c "$b/native_kernel_tests_rows w4a16 | grep -E '^native:|FAIL|v10'"
bench="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_M=12,16 W4A16_BENCH_SHAPES=16384:3072,74752:3072"
run "w4a16_bench main" 40 $bench $b/w4a16_bench
for v in rows rows4 rows8; do run "w4a16_bench $v" 30 $bench W4A16_BENCH_NO_CUBLAS=1 $b/w4a16_bench_$v; done
run "w4a16_bench main, again" 30 $bench W4A16_BENCH_NO_CUBLAS=1 $b/w4a16_bench
for v in "" _rows; do
  run "prefill w4a16${v:- main}" 40 env STEPAUDIO_BENCH_PREFILL=12,16 $b/kernel_bench$v prefill w4a16
done
for v in _rows ""; do
  run "prefill w4a16${v:- main}, again" 40 env STEPAUDIO_BENCH_PREFILL=12,16 $b/kernel_bench$v prefill w4a16
done
run "w4a16_bench M=1,8 main" 30 env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=1,8 \
  W4A16_BENCH_SHAPES=16384:3072,74752:3072 $b/w4a16_bench
run "w4a16_bench M=1,8 rows" 30 env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=1,8 \
  W4A16_BENCH_SHAPES=16384:3072,74752:3072 $b/w4a16_bench_rows
run "W4A16 native checks, rows4" 60 sh -c "$b/native_kernel_tests_rows4 w4a16 | grep -E '^native:|FAIL'"
run "W4A16 native checks, rows8" 60 sh -c "$b/native_kernel_tests_rows8 w4a16 | grep -E '^native:|FAIL'"
grep -E "^==|^rc [1-9]|M=1[26]|M= [18] |copy:|FAIL|native:|step w4a16|skipped" "$out/runs.txt" | cut -c1-170 | head -90
