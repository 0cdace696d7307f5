#!/usr/bin/env bash
# Where a short prompt's prefill goes (the seed form's 12-token prompt costs about two decode steps): one call that
# builds sm_90a, makes the full-size random checkpoint and its W4A16 copy, and prints
#   - the linears at M = 1 and 12 (w4a16_bench / nf4_bench, weights rotated beyond L2),
#   - `stepaudio bench` prefill at 2..32 tokens with the host's enqueue time (NF4, W4A16),
# then a short table. Carry: .carry/bundle (tests/gpu/prepare-bundle.sh). Usage on the device:
#   bash tests/gpu/prefill-run.sh      (logs: $OUT/prefill/)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-/tmp}/prefill; mkdir -p "$out"
stage() { echo "== $(date +%H:%M:%S) $*"; }
LENGTHS=${LENGTHS:-2,4,8,12,16,32}
mkdir -p .publish && tar -xJf .carry/bundle/bundle.tar.xz -C .publish || { echo "no bundle: run tests/gpu/prepare-bundle.sh first"; exit 2; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 tests/oracle/step1_oracle.py full /tmp/step1-full > "$out/full-ckpt.log" 2>&1 &
ckpt=$!
stage "build (sm_90a)"
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
       cmake --build build -j "$(nproc)" --target stepaudio_native w4a16_bench nf4_bench; } > "$out/build.log" 2>&1; then
  grep -E "error" "$out/build.log" | head -30; echo "CUDA build failed"; exit 1
fi
wait $ckpt || { tail "$out/full-ckpt.log"; exit 1; }
export STEPAUDIO_NATIVE_LIB="$root/build/libstepaudio_native.so"
stage "linears at M = 1 and 12"
W4A16_BENCH_M=1,12 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 timeout 90 build/w4a16_bench > "$out/w4a16-bench.txt" 2>&1
NF4_BENCH_M=1,12 NF4_BENCH_NO_CHECKS=1 NF4_BENCH_SHAPES=3584x3072,3072x3072,16384x3072,3072x8192 timeout 90 build/nf4_bench > "$out/nf4-bench.txt" 2>&1
stage "model prefill"
timeout 150 .publish/cli/stepaudio quantize --format w4a16 -m /tmp/step1-full -o /tmp/step1-w4a16 > "$out/quantize.txt" 2>&1
for v in w4a16 nf4; do
  if [ $v = nf4 ]; then args="--model /tmp/step1-full --variant bnb"; else args="--model /tmp/step1-w4a16"; fi
  timeout 150 .publish/cli/stepaudio bench $args --device cuda --contexts 64 --decode-tokens 32 --prefill-lengths "$LENGTHS" \
    > "$out/bench-$v.txt" 2>&1 || echo "bench $v failed (rc $?)" >> "$out/bench-$v.txt"
done
echo "--- linears (us) ---"; grep -E "M=( 1|12) " "$out/w4a16-bench.txt" | cut -c1-110 | head -12; grep -E "M=( 1|12) " "$out/nf4-bench.txt" | head -8
for v in w4a16 nf4; do echo "--- $v ---"; grep -E "prefill|decode|seed" "$out/bench-$v.txt"; done
