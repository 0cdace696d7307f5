#!/usr/bin/env bash
# prefill32-run.sh — one GPU-machine call (the plan after session 16, item 2): where a 17-32-token prompt's prefill
# goes. Up to 16 tokens the model runs the folded layers (5 launches per layer); beyond, the unfused path: RMSNorm /
# add+RMSNorm kernels, qkv and o over 16-row slices of the skinny kernels, gate_up and down on the prefill GEMM
# (N·K >= 16M), a separate SwiGLU. Session 16 measured the model's 32-token prefill at 4.30 ms (NF4) / 3.83 (W4A16)
# against ~1.9 ms at 12 tokens, and widened the short-prefill attention shape to 128 tokens without a model-level
# measurement. Builds per file (tests/gpu/ab-build.sh) and, with CMake, a -DSA_TRACE=1 kernel_bench; then
#   1. the attention checks (session 16 added 7 at 24-129 new tokens);
#   2. `kernel_bench prefill` at 12, 16, 17, 24, 32 tokens: graph / eager, no attention (mask 1), layers only (97);
#   3. `kernel_bench trace` of a 32-token prefill: each launch position's share of a layer.
# FORMATS (default "nf4 w4a16"), DEADLINE (default 360 s). Nothing to carry. On the device:
#   bash tests/gpu/prefill32-run.sh
cd "$(dirname "$0")/../.."
formats=${FORMATS:-nf4 w4a16}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/p32
( cmake -S . -B /tmp/p32/trace -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
    -DCMAKE_CUDA_FLAGS=-DSA_TRACE=1 -DCMAKE_CXX_FLAGS=-DSA_TRACE=1 && cmake --build /tmp/p32/trace -j 4 --target kernel_bench
) > /tmp/p32/trace.log 2>&1 &
AB_DIR=/tmp/p32ab DEADLINE=${DEADLINE:-360} . tests/gpu/ab-build.sh
ab_build kernels/attention.cu
wait
timeout $(left 90) $b/native_kernel_tests attention > "$out/native-attention.txt" 2>&1
echo "attention checks rc $? at $(el) s: $(grep -E '^native:' "$out/native-attention.txt")"
grep -E "FAIL" "$out/native-attention.txt" | head
run "prefill 12-32 tokens" 150 env STEPAUDIO_BENCH_PREFILL=12,16,17,24,32 $b/kernel_bench prefill $formats
if [ -x /tmp/p32/trace/kernel_bench ]; then
  run "trace 32 tokens" 60 env STEPAUDIO_TRACE_TOKENS=32 /tmp/p32/trace/kernel_bench trace $formats
else echo "trace build failed:"; grep -E "error" /tmp/p32/trace.log | head; fi
cat "$out/build.txt"
grep -vE "^\s+[0-9]+ " "$out/runs.txt" | cut -c1-200
