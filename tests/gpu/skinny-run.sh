#!/usr/bin/env bash
# skinny-run.sh — one GPU-machine call for session 16's question: why the 4-bit linears slow down from M = 8 to M = 12,
# and does the NF4 streaming kernel (gate_up, qkv, o) gain from leaving L1 room for x?
# Hypothesis: a 2-blocks-per-SM nf4_gemv_stream uses ~176 KB of shared memory, so the carveout leaves ~60 KB of L1;
# x of 16 tokens at K = 3072 is 96 KB (12 tokens: 72 KB; 8: 48 KB), read cyclically by every tile, so from 9 tokens on
# x streams from L2 (2 KB per 512-byte unit). 4 ring slots per warp for the two-token-tile kernels
# (SA_NF4_RING_SLOTS2=4: wide4) force 1 block per SM with the same bytes in flight and ~124 KB of L1; one partial-sum
# buffer (SA_NF4_STREAM_PARTIALS2=1: one) keeps 2 blocks per SM in 2 x 80 KB, leaving 92 KB of L1 (x of 12 tokens
# fits, of 16 not); bps1 (SA_NF4_BLOCKS_PER_SM=1: up to 255 registers, 1 block per SM, every M) is a third point.
# Builds per file (tests/gpu/ab-build.sh, varied file kernels/linear_nf4.cu, variants wide4 / one / bps1), then:
#   1. the attention checks of native_kernel_tests (main's first CUDA 13 build of 1896924 / 197bc41), and with the
#      short-prefill shape forced on for every prefill;
#   2. nf4_bench at M = 1, 8, 12, 16 on Step1's four shapes, main and each variant;
#   3. kernel_bench prefill nf4 (the folded forward at 1..16 tokens), main, wide4 and one;
#   4. the NF4 native checks (every check whose name has "nf4") against wide4 and one;
#   5. kernel_bench prefill-attention: default limits, 128 tokens, 512 tokens / 512 keys (the question of session 15);
#   6. skinny-profile.sh on gate_up at M = 8 and 12 (ncu: L1 hit rate, L2 reads, stalls), if time is left.
# DEADLINE (default 450 s). Nothing to carry. On the device: bash tests/gpu/skinny-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/skab DEADLINE=${DEADLINE:-450} \
  VARIANTS="wide4:-DSA_NF4_RING_SLOTS2=4 one:-DSA_NF4_STREAM_PARTIALS2=1 bps1:-DSA_NF4_BLOCKS_PER_SM=1" . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "nf4_gemv_stream" "$out/ptxas.txt" | cut -c1-160 | head -12
timeout $(left 90) $b/native_kernel_tests attention > "$out/native-attention.txt" 2>&1
echo "attention checks rc $? at $(el) s: $(grep -E '^native:' "$out/native-attention.txt")"; grep FAIL "$out/native-attention.txt" | head
STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512 STEPAUDIO_ATTN_SMALL_PREFILL_KEYS=9000 timeout $(left 60) $b/native_kernel_tests attention \
  > "$out/native-attention-forced.txt" 2>&1
echo "attention checks, shape forced on: rc $? $(grep -E '^native:' "$out/native-attention-forced.txt")"; grep FAIL "$out/native-attention-forced.txt" | head
shapes=16384x3072,3584x3072,3072x3072,3072x8192
bench="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1,8,12,16 NF4_BENCH_SHAPES=$shapes"  # a command prefix: run() uses timeout
run "nf4_bench main" 40 $bench $b/nf4_bench
run "nf4_bench wide4" 40 $bench $b/nf4_bench_wide4
run "nf4_bench one" 40 $bench $b/nf4_bench_one
run "nf4_bench bps1" 40 $bench $b/nf4_bench_bps1
run "nf4_bench main, again" 40 $bench $b/nf4_bench
run "prefill nf4 main" 60 env STEPAUDIO_BENCH_PREFILL=1,8,12,16 $b/kernel_bench prefill nf4
run "prefill nf4 wide4" 60 env STEPAUDIO_BENCH_PREFILL=1,8,12,16 $b/kernel_bench_wide4 prefill nf4
run "prefill nf4 one" 60 env STEPAUDIO_BENCH_PREFILL=1,8,12,16 $b/kernel_bench_one prefill nf4
run "NF4 native checks (nf4, epilogue nf4, folded norm nf4), wide4" 60 $b/native_kernel_tests_wide4 nf4
run "NF4 native checks, one" 60 $b/native_kernel_tests_one nf4
run "prefill-attention, default limits" 40 $b/kernel_bench prefill-attention
run "prefill-attention, 128 tokens" 40 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=128 $b/kernel_bench prefill-attention
run "prefill-attention, 512 tokens, 512 keys" 40 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512 STEPAUDIO_ATTN_SMALL_PREFILL_KEYS=512 $b/kernel_bench prefill-attention
if [ $(left 1000) -gt 100 ]; then
  AB_DIR=$b SHAPES=gate_up MS="8 12" timeout $(left 1000) bash tests/gpu/skinny-profile.sh > "$out/skinny-profile.txt" 2>&1
fi
grep -E "^==|^rc |gemv M=|copy band|FAIL|checks:|native:|ms|tokens" "$out/runs.txt" | cut -c1-160 | head -170
tail -8 "$out/skinny-profile.txt" 2>/dev/null
