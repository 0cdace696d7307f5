#!/usr/bin/env bash
# prefill-split-run.sh — one GPU-machine call: where a short prompt's prefill spends its time beyond a decode step
# (session 14: a 2-token prefill costs 1.7–2.15 ms, a graphed decode step 1.18–1.41 ms, the host is not the limit),
# and the A/B of the short-prefill attention shape (kernels/attention.cu, SA_ATTN_SMALL_PREFILL: 1 the default since session 15, 0 the old shape).
# Builds per file with nvcc (tests/gpu/ab-build.sh: kernel_bench and native_kernel_tests, the default and "_off"), and with
# CMake a -DSA_TRACE=1 kernel_bench for the timeline; then prints
#   - the attention native checks (the default build);
#   - `kernel_bench prefill`, default and "_off": the folded forward at 1..16 tokens as a graph and issued eagerly, whole /
#     without attention / layers only — graph vs eager is the launch gaps, the rest the M-scaling and attention;
#   - `kernel_bench trace` at 1 token (context 64) and at 12 tokens: each launch position's share of a layer.
# FORMATS (default "w4a16 nf4"), DEADLINE (default 420 s). Nothing to carry. On the device:
#   bash tests/gpu/prefill-split-run.sh
cd "$(dirname "$0")/../.."
formats=${FORMATS:-w4a16 nf4}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /tmp/ps
( cmake -S . -B /tmp/ps/trace -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
    "-DCMAKE_CUDA_FLAGS=-DSA_TRACE=1 -DSA_ATTN_SMALL_PREFILL=${TRACE_SMALL_PREFILL:-1}" -DCMAKE_CXX_FLAGS=-DSA_TRACE=1 && cmake --build /tmp/ps/trace -j 4 --target kernel_bench
) > /tmp/ps/trace.log 2>&1 &
AB_DIR=/tmp/psab DEADLINE=${DEADLINE:-420} VARIANTS="off:-DSA_ATTN_SMALL_PREFILL=0" . tests/gpu/ab-build.sh
ab_build kernels/attention.cu
wait
cp /tmp/ps/trace.log "$out/" 2>/dev/null
timeout $(left 90) $b/native_kernel_tests attention > "$out/native-attention.txt" 2>&1
echo "attention checks rc $? at $(el) s: $(grep -E '^native:' "$out/native-attention.txt")"
grep -E "FAIL" "$out/native-attention.txt" | head
run "prefill, default" 120 $b/kernel_bench prefill $formats
run "prefill, old shape (SA_ATTN_SMALL_PREFILL=0)" 120 $b/kernel_bench_off prefill $formats
if [ -x /tmp/ps/trace/kernel_bench ]; then
  run "trace 1 token" 60 /tmp/ps/trace/kernel_bench trace $formats
  run "trace 12 tokens" 60 env STEPAUDIO_TRACE_TOKENS=12 /tmp/ps/trace/kernel_bench trace $formats
else echo "trace build failed:"; grep -E "error" /tmp/ps/trace.log | head; fi
cat "$out/build.txt"
grep -vE "^\s+[0-9]+ " "$out/runs.txt" | cut -c1-200
