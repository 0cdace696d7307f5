#!/usr/bin/env bash
# Everything the GPU machine does in one call (it has nvcc, cmake and PyTorch, but no dotnet):
#   build the CUDA library, make a full-size random Step1 checkpoint, run every test (native kernel checks and the
#   self-contained published C# suite, GPU tests included), then the benchmarks; a short table last.
# Prepare here first:  bash tests/gpu/prepare-bundle.sh   (publishes the C# apps into .carry/bundle)
# Then on the device:  bash tests/gpu/device-run.sh        (carry: .carry/bundle)
# Logs: $OUT/gpu-logs.tgz (the device tool's output folder).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
# Logs are written to a work folder and packed into one archive under $OUT at the end (the tool returns few files).
out=/tmp/stepaudio-gpu-logs
rm -rf "$out"; mkdir -p "$out"
pack_logs() { [ -n "${OUT:-}" ] && tar -czf "$OUT/gpu-logs.tgz" -C /tmp stepaudio-gpu-logs; }
trap pack_logs EXIT
export PYTHONUNBUFFERED=1
stage() { echo "== $(date +%H:%M:%S) $*"; }

stage "unpacking the published C# apps"
mkdir -p .publish && tar -xJf .carry/bundle/bundle.tar.xz -C .publish || { echo "no bundle: run tests/gpu/prepare-bundle.sh first"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader | tee "$out/gpu.txt"

stage "building libstepaudio_native with CUDA"
# Hopper only by default (the machines lent are H100 / H200): half the build time of the "80;90a" default.
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
         -DSTEPAUDIO_CUDA_ARCHITECTURES="${STEPAUDIO_CUDA_ARCHITECTURES:-90a}" && cmake --build build -j 16; } >"$out/build.log" 2>&1; then
  grep -E "error|Error" "$out/build.log" | head -40; echo "CUDA build failed"; exit 1
fi
grep -E "registers|spill|bytes stack" "$out/build.log" > "$out/ptxas.txt" || true

stage "full-size random checkpoint"
python3 tests/oracle/step1_oracle.py full /tmp/step1-full >"$out/full-ckpt.log" 2>&1 || { cat "$out/full-ckpt.log"; exit 1; }

stage "tests"
STEPAUDIO_BUILD_DIR="$root/build" STEPAUDIO_LOG_DIR="$out/testlogs" STEPAUDIO_TEST_EXE="$root/.publish/tests/StepAudio.Tests" \
  STEPAUDIO_FULL_MODEL=/tmp/step1-full bash tests/run.sh > "$out/tests.txt" 2>&1
tests_rc=$?
grep -E "\[FAIL\]|\[SKIP\]|\[FAIL|Failed |Assert|error" "$out/tests.txt" | head -40
tail -n 1 "$out/tests.txt"

stage "benchmarks"
export STEPAUDIO_NATIVE_LIB="$root/build/libstepaudio_native.so"
python3 tests/gpu/copy_bw.py > "$out/copy-bw.txt"
copy=$(cat "$out/copy-bw.txt"); echo "device-to-device copy: $copy GB/s (read + write)"
[ -x build/kernel_bench ] && build/kernel_bench > "$out/kernel-bench.txt" 2>&1
for w in w4a16 nf4; do [ -x build/kernel_bench ] && timeout 60 build/kernel_bench decode $w >> "$out/decode-step-quant.txt" 2>&1; done
[ -x build/kernel_bench ] && timeout 60 build/kernel_bench ablate > "$out/ablate.txt" 2>&1  # what each part adds to the step
[ -x build/sync_bench ] && timeout 60 build/sync_bench > "$out/sync-bench.txt" 2>&1  # what a phase dependency costs
[ -x build/w4a16_bench ] && timeout 90 build/w4a16_bench > "$out/w4a16-bench.txt" 2>&1
# The single-launch cost model (kernels/NOTES_QUANT.md, session 11): M = 1 GEMVs of 1 to 264 row tiles per launch.
[ -x build/w4a16_bench ] && W4A16_BENCH_SHAPES=16:3072,1056:3072,2112:3072,3072:3072,4224:3072,16:8192,1056:8192,2112:8192,3072:8192,4224:8192 \
  W4A16_BENCH_M=1 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 timeout 60 build/w4a16_bench 2>&1 | grep custom > "$out/w4a16-cost-model.txt"
[ -x build/nf4_bench ] && timeout 90 build/nf4_bench > "$out/nf4-bench.txt" 2>&1
[ -f tests/native/bench_torch.py ] && python3 tests/native/bench_torch.py > "$out/cublas-bench.txt" 2>&1
.publish/cli/stepaudio bench --model /tmp/step1-full --device cuda --copy-gbps "$copy" > "$out/bench.txt" 2>&1
python3 tests/oracle/step1_oracle.py bench /tmp/step1-full > "$out/torch-reference.txt" 2>&1
stage "NF4 (quantized at load from the base folder) and W4A16 (RTN-quantized checkpoint)"
timeout 200 .publish/cli/stepaudio bench --model /tmp/step1-full --variant bnb --device cuda --contexts 64,1024 --prefill-lengths 12,32,400,1000 \
  --copy-gbps "$copy" > "$out/bench-nf4.txt" 2>&1 || echo "NF4 bench failed or timed out (rc $?)" >> "$out/bench-nf4.txt"
rm -rf /tmp/step1-w4a16  # a warm machine keeps the last call's folder, and quantize refuses to overwrite
timeout 150 .publish/cli/stepaudio quantize --format w4a16 -m /tmp/step1-full -o /tmp/step1-w4a16 > "$out/quantize-w4a16.txt" 2>&1 &&
timeout 200 .publish/cli/stepaudio bench --model /tmp/step1-w4a16 --device cuda --contexts 64,1024 --prefill-lengths 12,32,400,1000 \
  --copy-gbps "$copy" > "$out/bench-w4a16.txt" 2>&1 || echo "W4A16 quantize/bench failed or timed out (rc $?)" >> "$out/bench-w4a16.txt"
timeout 120 .publish/cli/stepaudio bench --model /tmp/step1-w4a16 --device cuda --quantize-lm-head --contexts 64 --prefill-lengths 12,32 \
  --copy-gbps "$copy" > "$out/bench-w4a16-lmhead.txt" 2>&1 || echo "W4A16 lm_head bench failed or timed out (rc $?)" >> "$out/bench-w4a16-lmhead.txt"
stage "--no-text-logits (lm_head over the control and audio ids only)"
timeout 120 .publish/cli/stepaudio bench --model /tmp/step1-w4a16 --device cuda --no-text-logits --contexts 64 --prefill-lengths 12,32 \
  --copy-gbps "$copy" > "$out/bench-w4a16-notext.txt" 2>&1 || echo "W4A16 --no-text-logits bench failed or timed out (rc $?)" >> "$out/bench-w4a16-notext.txt"
timeout 120 .publish/cli/stepaudio bench --model /tmp/step1-full --device cuda --no-text-logits --contexts 64 --prefill-lengths 12,32 \
  --copy-gbps "$copy" > "$out/bench-bf16-notext.txt" 2>&1 || echo "bf16 --no-text-logits bench failed or timed out (rc $?)" >> "$out/bench-bf16-notext.txt"

stage "summary"
echo "--- kernels (ours) ---"; tail -n 40 "$out/kernel-bench.txt" 2>/dev/null
echo "--- cuBLAS via PyTorch ---"; tail -n 25 "$out/cublas-bench.txt" 2>/dev/null
echo "--- decode step, 4-bit weights (kernel_bench) ---"; grep -i "ms/token" "$out/decode-step-quant.txt" 2>/dev/null | head -12
echo "--- decode step ablation, context 64 (kernel_bench ablate) ---"; cut -c1-80 "$out/ablate.txt" 2>/dev/null | grep ms/token
echo "--- a dependency between phases (sync_bench) ---"; cat "$out/sync-bench.txt" 2>/dev/null
echo "--- W4A16 / NF4 kernels ---"; tail -n 14 "$out/w4a16-bench.txt" 2>/dev/null; tail -n 14 "$out/nf4-bench.txt" 2>/dev/null
echo "--- W4A16 single launches, 1 to 264 row tiles (the cost model) ---"; cut -c1-75 "$out/w4a16-cost-model.txt" 2>/dev/null
echo "--- model bf16 ---"; cat "$out/bench.txt"; cat "$out/torch-reference.txt"
echo "--- model NF4 ---"; tail -n 10 "$out/bench-nf4.txt"
echo "--- model W4A16 ---"; tail -n 3 "$out/quantize-w4a16.txt"; tail -n 10 "$out/bench-w4a16.txt"
echo "--- model W4A16 with a W4A16 lm_head ---"; tail -n 5 "$out/bench-w4a16-lmhead.txt"
echo "--- model W4A16 / bf16 with --no-text-logits ---"; tail -n 4 "$out/bench-w4a16-notext.txt"; tail -n 4 "$out/bench-bf16-notext.txt"
echo "--- tests ---"; tail -n 1 "$out/tests.txt"
exit $tests_rc
