#!/usr/bin/env bash
# model-run.sh — the short model-level GPU call, for a session with ~8 minutes of device time left (device-run.sh, the
# full one, also builds every target, runs every benchmark and the PyTorch reference): builds the library and the
# native checks for sm_90a, makes the full-size random checkpoint while nvcc runs, then in order of importance, each
# only while DEADLINE (default 450 s) allows: the NF4 model (quantized at load: the `bnb`
# variant) through `stepaudio bench` (decode tok/s at 64 / 1024 keys, the 12-token prefill, the 50-token seed form);
# the native kernel checks (NATIVE_FILTER=nf4: only those whose name has it);
# the decode steps without the host (kernel_bench decode); the W4A16 model (RTN-quantized checkpoint); the C# suite.
# CUDA_FLAGS: extra nvcc flags for the whole build, e.g. a kernel knob still off by default (-DSA_NF4_RING_SLOTS=3).
# BF16=1: first the bf16 model (`stepaudio bench`) and the PyTorch eager reference (step1_oracle.py bench), so the
# 4-bit rows have their same-run comparison. SKIP="native-checks csharp-suite": steps left out by name.
# Prepare here first:  bash tests/gpu/prepare-bundle.sh   (carry: .carry/bundle)
# On the device:       bash tests/gpu/model-run.sh         (logs: $OUT/model.txt and $OUT/*.log)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-/tmp/out}; mkdir -p "$out"; log=$out/model.txt
t0=$(date +%s); deadline=${DEADLINE:-450}
left() { echo $(( deadline - ($(date +%s) - t0) )); }
stage() { echo "== $(date +%H:%M:%S) (+$(( $(date +%s) - t0 )) s) $*" | tee -a "$log"; }
step() { # name seconds command...: runs when that much time is left, its log in $out/<name>.log
  local name=$1 need=$2; shift 2
  case " ${SKIP:-} " in *" $name "*) stage "skipped $name: SKIP"; return;; esac
  if [ "$(left)" -lt "$need" ]; then stage "skipped $name: $(left) s left"; return; fi
  stage "$name"; timeout "$need" "$@" > "$out/$name.log" 2>&1; echo "rc $?" >> "$out/$name.log"
}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$log"
mkdir -p .publish && tar -xJf .carry/bundle/bundle.tar.xz -C .publish || { echo "no bundle: run tests/gpu/prepare-bundle.sh first"; exit 2; }
python3 tests/oracle/step1_oracle.py full /tmp/step1-full > "$out/checkpoint.log" 2>&1 &
ckpt=$!
python3 tests/gpu/copy_bw.py > /tmp/copy-bw.txt 2>&1 &
stage "build (sm_90a${CUDA_FLAGS:+, $CUDA_FLAGS})"
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
         ${CUDA_FLAGS:+"-DCMAKE_CUDA_FLAGS=$CUDA_FLAGS"} &&
       cmake --build build -j "$(nproc)" --target stepaudio_native native_kernel_tests kernel_bench; } > "$out/build.log" 2>&1; then
  grep -E "error" "$out/build.log" | head -30 | tee -a "$log"; echo "CUDA build failed" | tee -a "$log"; exit 1
fi
wait $ckpt || { tail -5 "$out/checkpoint.log" | tee -a "$log"; exit 1; }
copy=$(cat /tmp/copy-bw.txt); echo "device-to-device copy: $copy GB/s" | tee -a "$log"
export STEPAUDIO_NATIVE_LIB="$root/build/libstepaudio_native.so"
cli=.publish/cli/stepaudio
if [ -n "${BF16:-}" ]; then
  step bf16-model 100 $cli bench --model /tmp/step1-full --device cuda --contexts 64,1024 --prefill-lengths 12,32 --copy-gbps "$copy"
  step torch-reference 120 python3 tests/oracle/step1_oracle.py bench /tmp/step1-full
fi
step nf4-model 90 $cli bench --model /tmp/step1-full --variant bnb --device cuda --contexts ${NF4_CONTEXTS:-64,1024} --prefill-lengths 12,32 --copy-gbps "$copy"
step native-checks 60 build/native_kernel_tests ${NATIVE_FILTER:-}  # NATIVE_FILTER=nf4: only the checks whose name has it
step decode-steps 40 build/kernel_bench decode nf4 w4a16
rm -rf /tmp/step1-w4a16
step w4a16-quantize 90 $cli quantize --format w4a16 -m /tmp/step1-full -o /tmp/step1-w4a16
step w4a16-model 80 $cli bench --model /tmp/step1-w4a16 --device cuda --contexts 64 --prefill-lengths 12 --copy-gbps "$copy"
step csharp-suite 120 env STEPAUDIO_FULL_MODEL=/tmp/step1-full .publish/tests/StepAudio.Tests -noColor
stage "summary"
{ grep -E "FAIL|^native:" "$out/native-checks.log" 2>/dev/null | tail -5
  grep -iE "tok/s|seed|weights|error" "$out/bf16-model.log" 2>/dev/null | head -8
  tail -4 "$out/torch-reference.log" 2>/dev/null
  grep -iE "tok/s|seed|prefill|weights|error" "$out/nf4-model.log" | head -14
  grep -i "ms/token" "$out/decode-steps.log" 2>/dev/null | head -8
  grep -iE "tok/s|seed|error" "$out/w4a16-model.log" 2>/dev/null | head -6
  grep -E "Total:|\[FAIL\]" "$out/csharp-suite.log" 2>/dev/null | head -10; } | cut -c1-170 | tee -a "$log"
