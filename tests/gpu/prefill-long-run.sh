#!/usr/bin/env bash
# prefill-long-run.sh — one GPU-machine call (session 17): a long prompt's prefill with the tensor-core attention
# (attention_prefill_mma_kernel, kernels/attention.cu) against attention_kernel, switched at run time by
# STEPAUDIO_ATTN_MMA_PREFILL=1 / 0 in the same binaries:
#   1. the attention checks (native_kernel_tests attention);
#   2. `kernel_bench prefill-attention` (attention alone at Step1's shape, up to 2000 new tokens), both ways;
#   3. the model's prefill forward at 128, 400 and 1000 tokens (`stepaudio bench`), bf16, W4A16 and NF4, both ways.
# Prepare here: bash tests/gpu/prepare-bundle.sh. On the device (carry .carry/bundle): bash tests/gpu/prefill-long-run.sh
# Logs: $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=/tmp/prefill-long-logs; rm -rf "$out"; mkdir -p "$out"
pack() { [ -n "${OUT:-}" ] && tar -czf "$OUT/logs.tgz" -C /tmp prefill-long-logs; }
trap pack EXIT
mkdir -p .publish && tar -xJf .carry/bundle/bundle.tar.xz -C .publish || { echo "no bundle: run tests/gpu/prepare-bundle.sh first"; exit 2; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 tests/oracle/step1_oracle.py full /tmp/step1-full > "$out/ckpt.log" 2>&1 &
ckpt=$!
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
       cmake --build build -j 16; } > "$out/build.log" 2>&1; then
  grep -E "error" "$out/build.log" | head -30; echo "CUDA build failed"; exit 1
fi
grep -A2 "prefill_mma" "$out/build.log" | grep -E "registers|spill" | head -4
echo "== attention checks"
timeout 300 build/native_kernel_tests attention > "$out/native-attention.txt" 2>&1
echo "rc $?: $(grep -E '^native:' "$out/native-attention.txt")"
grep -E "FAIL" -A2 "$out/native-attention.txt" | head -20
echo "== attention alone (tensor cores / attention_kernel)"
for v in 1 0; do STEPAUDIO_ATTN_MMA_PREFILL=$v timeout 90 build/kernel_bench prefill-attention > "$out/attention-$v.txt" 2>&1; done
paste -d'|' "$out/attention-1.txt" <(cut -d: -f2 "$out/attention-0.txt")
wait $ckpt || { tail -5 "$out/ckpt.log"; exit 1; }
export STEPAUDIO_NATIVE_LIB="$PWD/build/libstepaudio_native.so"
bench() {  # NAME ARGS...: the model's prefill, tensor cores then attention_kernel
  local name=$1; shift
  for v in 1 0; do
    STEPAUDIO_ATTN_MMA_PREFILL=$v timeout 150 .publish/cli/stepaudio bench "$@" --device cuda --contexts 64 \
      --prefill-lengths 128,400,1000 --copy-gbps 3000 > "$out/bench-$name-$v.txt" 2>&1 || echo "$name $v failed (rc $?)"
    echo "-- $name, STEPAUDIO_ATTN_MMA_PREFILL=$v"; grep -E "^prefill|seed-form" "$out/bench-$name-$v.txt"
  done
}
echo "== the model"
bench bf16 --model /tmp/step1-full
timeout 150 .publish/cli/stepaudio quantize --format w4a16 -m /tmp/step1-full -o /tmp/step1-w4a16 > "$out/quantize.txt" 2>&1 &&
  bench w4a16 --model /tmp/step1-w4a16
bench nf4 --model /tmp/step1-full --variant bnb
