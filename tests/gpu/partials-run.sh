#!/usr/bin/env bash
# partials-run.sh — the tail of a GPU-machine call (session 16): the NF4 linears alone with one partial-sum buffer in
# the two-token-tile streaming kernel (the default since session 16) against two ("two": SA_NF4_STREAM_PARTIALS2=2,
# the old layout), at M = 1, 8, 12, 16 on Step1's four shapes; then `kernel_bench prefill-attention` (attention alone
# at prefill shapes) with the default short-prefill limits, 128 tokens, and 512 tokens / 512 keys — where the
# short-prefill attention shape stops paying. Logs go to one file under $OUT (the device tool returns 8 files).
# DEADLINE (default 200 s). Nothing to carry. On the device: bash tests/gpu/partials-run.sh
cd "$(dirname "$0")/../.."
AB_DIR=/tmp/ptab DEADLINE=${DEADLINE:-200} VARIANTS="two:-DSA_NF4_STREAM_PARTIALS2=2" . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu
cat "$out/build.txt"
bench="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1,8,12,16 NF4_BENCH_SHAPES=16384x3072,3584x3072,3072x3072,3072x8192"
run "nf4_bench, one buffer (default)" 40 $bench $b/nf4_bench
run "nf4_bench, two buffers (old)" 40 $bench $b/nf4_bench_two
run "nf4_bench, one buffer, again" 40 $bench $b/nf4_bench
run "prefill-attention, default limits" 30 $b/kernel_bench prefill-attention
run "prefill-attention, 128 tokens" 30 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=128 $b/kernel_bench prefill-attention
run "prefill-attention, 512 tokens, 512 keys" 30 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512 STEPAUDIO_ATTN_SMALL_PREFILL_KEYS=512 $b/kernel_bench prefill-attention
grep -vE "^\s*$|stack|layer " "$out/runs.txt" | cut -c1-150 | head -120
