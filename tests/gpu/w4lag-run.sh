#!/usr/bin/env bash
# w4lag-run.sh — one GPU-machine call, prepared in session 20 and not yet run: W4A16's streaming kernel (gate_up at
# M <= 4) with the lagged, rotating reduction that cut the NF4 decode step by 2.5% (SA_W4A16_STREAM_LAGGED=1,
# kernels/linear_w4a16.cu; kernels/NOTES_QUANT.md, session 20) against main's two barriers per tile.
# Builds per file (tests/gpu/ab-build.sh), then: the W4A16 native checks with the variant (first: it is unrun code),
# w4a16_bench at M = 1 and 4 (main, lag, twice), and the decode step of both W4A16 forms (kernel_bench decode).
# Keep it if the checks pass and the step gains beyond the main-vs-main spread. DEADLINE (default 300 s).
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/w4lag DEADLINE=${DEADLINE:-300} VARIANTS="lag:-DSA_W4A16_STREAM_LAGGED=1" . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "w4a16_stream" "$out/ptxas.txt" | cut -c1-160 | head -8
run "native w4a16 checks, lag" 90 sh -c "$b/native_kernel_tests_lag w4a16 | grep -E '^native:|FAIL'"
w4="env W4A16_BENCH_M=1,4 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_SHAPES=16384:3072,8192:3072,74752:3072"
for v in "" _lag "" _lag; do run "w4a16_bench${v:-, main}" 40 $w4 $b/w4a16_bench$v; done
for v in "" _lag "" _lag; do run "decode${v:-, main}" 40 $b/kernel_bench$v decode w4a16 w4a16-awq; done
grep -E "^==|^rc [1-9]|custom|FAIL|native:|ms/token" "$out/runs.txt" | cut -c1-160 | head -80
