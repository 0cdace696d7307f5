#!/usr/bin/env bash
# wide-x-run.sh — one GPU-machine call for session 26's question: does the W4A16 ring kernel (w4a16_wide: M = 5..16 on
# the large shapes) gain when x reaches shared memory through each thread's cp.async slot, requested one group ahead,
# instead of through global loads on the critical path after the codes' wait? Marlin, whose x goes through a cp.async
# pipeline, measured 12.8 µs on gate_up at M = 16 on the H100 where ours takes 16.7 (kernels/NOTES_QUANT.md, session 26).
# Variants of kernels/linear_w4a16.cu (tests/gpu/ab-build.sh): xr (SA_W4A16_WIDE_X_RING=1, cp.async.cg) and xrca (=2,
# cp.async.ca: the two blocks of an SM read the same groups of x). Then, within DEADLINE (default 300 s):
#   1. the W4A16 native checks against each variant (every check whose name has "w4a16": ragged N and tokens);
#   2. w4a16_bench at M = 8, 12, 16 on the shapes that take the ring kernel, main, xr, xrca, main again (noise);
#   3. kernel_bench prefill w4a16 at 8, 12, 16 tokens (the seed form prefills 12), main and each variant.
# Nothing to carry. On the device: bash tests/gpu/wide-x-run.sh   (logs in $OUT)
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/wx DEADLINE=${DEADLINE:-300} VARIANTS="xr:-DSA_W4A16_WIDE_X_RING=1 xrca:-DSA_W4A16_WIDE_X_RING=2" . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "w4a16_wide" "$out/ptxas.txt" | cut -c1-200 | head -24
for v in $variants; do
  run "W4A16 native checks, ${v%%:*}" 60 sh -c "$b/native_kernel_tests_${v%%:*} w4a16 | grep -E '^native:|FAIL'"
done
bench="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_M=8,12,16 W4A16_BENCH_SHAPES=16384:3072,8192:8192,74752:3072,8192:3072"
run "w4a16_bench main" 40 $bench $b/w4a16_bench
for v in $variants; do run "w4a16_bench ${v%%:*}" 40 $bench W4A16_BENCH_NO_CUBLAS=1 $b/w4a16_bench_${v%%:*}; done
run "w4a16_bench main, again" 40 $bench W4A16_BENCH_NO_CUBLAS=1 $b/w4a16_bench
run "prefill w4a16 main" 40 env STEPAUDIO_BENCH_PREFILL=8,12,16 $b/kernel_bench prefill w4a16
for v in $variants; do run "prefill w4a16 ${v%%:*}" 40 env STEPAUDIO_BENCH_PREFILL=8,12,16 $b/kernel_bench_${v%%:*} prefill w4a16; done
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
grep -E "^==|^rc |^native:|FAIL| M= ?(8|12|16) |ms|tokens" "$out/runs.txt" | cut -c1-150 | head -120
