#!/usr/bin/env bash
# prefill-attn-run.sh — one GPU-machine call: where does the short-prefill attention shape (one token per block, heads
# sliced; kernels/attention.cu) stop paying? Builds per file (tests/gpu/ab-build.sh), runs the attention checks with
# the shape forced on for every prefill (STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512, _KEYS=9000), then
# `kernel_bench prefill-attention` (attention alone at prefill shapes) with the default limits (16 tokens, 128 keys),
# with 128 tokens, and with 512 tokens / 512 keys. Nothing to carry. On the device: bash tests/gpu/prefill-attn-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/paab DEADLINE=${DEADLINE:-300} . tests/gpu/ab-build.sh
ab_build kernels/attention.cu tests/native/nf4_bench.cu tests/native/w4a16_bench.cu  # the benches: skinny-profile.sh
cat "$out/build.txt"
STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512 STEPAUDIO_ATTN_SMALL_PREFILL_KEYS=9000 timeout $(left 90) $b/native_kernel_tests attention \
  > "$out/native-attention-forced.txt" 2>&1
echo "attention checks, shape forced on: rc $? $(grep -E '^native:' "$out/native-attention-forced.txt")"; grep FAIL "$out/native-attention-forced.txt" | head
run "default limits" 60 $b/kernel_bench prefill-attention
run "128 tokens" 60 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=128 $b/kernel_bench prefill-attention
run "512 tokens, 512 keys" 60 env STEPAUDIO_ATTN_SMALL_PREFILL_TOKENS=512 STEPAUDIO_ATTN_SMALL_PREFILL_KEYS=512 $b/kernel_bench prefill-attention
cat "$out/runs.txt"
