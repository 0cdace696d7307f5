#!/usr/bin/env bash
# prefill-split-run.sh — one GPU-machine call: where a short prompt's prefill spends its time beyond a decode step
# (session 14: a 2-token prefill costs 1.7–2.15 ms, a graphed decode step 1.18–1.41 ms, the host is not the limit).
# Builds kernel_bench twice for sm_90a (plain, and with -DSA_TRACE=1 for the timeline) and prints
#   - `kernel_bench prefill`: the folded forward at 1..16 tokens as a graph and issued eagerly, whole / without
#     attention / layers only — graph vs eager is the launch gaps, the rest the M-scaling and attention at T > 1;
#   - `kernel_bench trace` at 1 token (context 64) and at 12 tokens: each launch position's share of a layer.
# FORMATS (default "w4a16 nf4"). Nothing to carry. Usage on the device: bash tests/gpu/prefill-split-run.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
formats=${FORMATS:-w4a16 nf4}
build() {  # build BUILD_DIR EXTRA_FLAGS
  cmake -S . -B "$1" -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
    -DCMAKE_CUDA_FLAGS="$2" -DCMAKE_CXX_FLAGS="$2" > "$1.log" 2>&1 &&
    cmake --build "$1" -j 8 --target kernel_bench >> "$1.log" 2>&1 || { grep -E "error" "$1.log" | head; echo "build $1 failed"; }
}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
echo "== $(date +%H:%M:%S) build"
mkdir -p /tmp/ps
build /tmp/ps/plain "" &
build /tmp/ps/trace "-DSA_TRACE=1" &
wait
cp /tmp/ps/*.log "$out/" 2>/dev/null
echo "== $(date +%H:%M:%S) prefill"
[ -x /tmp/ps/plain/kernel_bench ] && timeout 240 /tmp/ps/plain/kernel_bench prefill $formats > "$out/prefill.txt" 2>&1
echo "== $(date +%H:%M:%S) traces"
if [ -x /tmp/ps/trace/kernel_bench ]; then
  timeout 120 /tmp/ps/trace/kernel_bench trace $formats > "$out/trace-1.txt" 2>&1
  STEPAUDIO_TRACE_TOKENS=12 timeout 120 /tmp/ps/trace/kernel_bench trace $formats > "$out/trace-12.txt" 2>&1
fi
for t in 1 12; do echo "---- trace, $t token(s)"; grep -vE "^\s+[0-9]+ " "$out/trace-$t.txt" | cut -c1-160 | head -40; done
echo "---- prefill (ms; skip mask 1 = no attention, 97 = layers only)"
cat "$out/prefill.txt"
