#!/usr/bin/env bash
# The short GPU call, for a session with only a few minutes of device time left (device-run.sh also builds sm_80,
# makes a full-size checkpoint, runs the C# suite and the model benches):
# builds the library for sm_90a only (-DSTEPAUDIO_CUDA_ARCHITECTURES=90a: half the compile time), then the
# decode step of every format without the host (kernel_bench decode), the W4A16 step with and without attention,
# and the native kernel checks last (they take the longest; whatever finished is in $OUT/quick.txt).
# No carry needed: no C# bundle, no full-size checkpoint. Usage on the device: bash tests/gpu/quick-run.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
log=${OUT:-/tmp}/quick.txt
stage() { echo "== $(date +%H:%M:%S) $*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee -a "$log"

# The copy ceiling, measured while nvcc builds (torch's 2 GiB device-to-device copy, bytes read + written).
python3 tests/gpu/copy_bw.py > /tmp/copy-bw.txt 2>&1 &

stage "build (sm_90a only)"
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
       cmake --build build -j "$(nproc)" --target kernel_bench native_kernel_tests; } > /tmp/build.log 2>&1; then
  grep -E "error" /tmp/build.log | head -30 | tee -a "$log"; echo "CUDA build failed" | tee -a "$log"; exit 1
fi
wait
echo "device-to-device copy: $(cat /tmp/copy-bw.txt) GB/s (read + write)" | tee -a "$log"

stage "decode step without the host (kernel_bench decode)"
timeout 60 build/kernel_bench decode w4a16 nf4 w4a16-awq 2>&1 | tee -a "$log" | grep -i "ms/token"
timeout 40 build/kernel_bench ablate w4a16 attention 2>&1 | tee -a "$log" | grep -i "ms/token"
timeout 60 build/kernel_bench decode bf16 2>&1 | tee -a "$log" | grep -i "folded"

stage "native kernel checks"
timeout 120 build/native_kernel_tests > /tmp/native.txt 2>&1
grep -E "FAIL" /tmp/native.txt | head -20 | tee -a "$log"
tail -n 1 /tmp/native.txt | tee -a "$log"
