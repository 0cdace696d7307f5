#!/usr/bin/env bash
# stream2-run.sh — session 27's second W4A16 question: session 27's v10 ablation showed that a one-block-per-SM cp.async
# ring streams too slowly for M = 16. Does the M = 1 streaming kernel (v8: 3 blocks of 6 warps per SM, register batches,
# persistent) with two 8-token tiles beat the ring kernel at 5–16 tokens on gate_up? SA_W4A16_STREAM_TWO_TILES=1 (s2).
# AB_OLD: the kernel file before the Tiles template (e76fe3b), to check the default build did not move. Then, within
# DEADLINE (default 280 s): all native checks of the default build (session 27's new 9–16-token checks included), the
# W4A16 checks of s2, w4a16_bench on gate_up at M = 1, 8, 12, 16 (main, old, s2, main again), kernel_bench prefill
# w4a16 at 8, 12, 16 tokens (main, s2) and decode w4a16 (main, old).
# Usage on the device: AB_OLD=old_linear_w4a16.cu bash tests/gpu/stream2-run.sh (the old file, untracked, carried).
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/s2ab DEADLINE=${DEADLINE:-280} VARIANTS="s2:-DSA_W4A16_STREAM_TWO_TILES=1" . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "w4a16_streamILb0ELb0ELb0ELi2" "$out/ptxas.txt" | cut -c100-230 | head -4
bench="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=1,8,12,16 W4A16_BENCH_SHAPES=16384:3072"
run "w4a16_bench main" 30 $bench $b/w4a16_bench
run "w4a16_bench s2" 30 $bench $b/w4a16_bench_s2
run "w4a16_bench old" 30 $bench $b/w4a16_bench_old
run "w4a16_bench main, again" 30 $bench $b/w4a16_bench
run "w4a16_bench s2, again" 30 $bench $b/w4a16_bench_s2
run "W4A16 native checks, s2" 60 sh -c "$b/native_kernel_tests_s2 w4a16 | grep -E '^native:|FAIL'"
for v in "" _s2; do run "prefill w4a16${v:- main}" 40 env STEPAUDIO_BENCH_PREFILL=8,12,16 $b/kernel_bench$v prefill w4a16; done
for v in "" _old; do run "decode w4a16${v:- main}" 30 env STEPAUDIO_BENCH_CONTEXTS=64 $b/kernel_bench$v decode w4a16; done
run "native checks, all (default build)" 150 sh -c "$b/native_kernel_tests | grep -E '^native:|FAIL'"
grep -E "^==|^rc [1-9]|M=|FAIL|native:|step w4a16|ms/token|skipped" "$out/runs.txt" | sed -E 's/ \| cublas.*//' | cut -c1-130 | head -70
