#!/usr/bin/env bash
# stream-run.sh — one GPU-machine call for the megakernel question (kernels/NOTES_QUANT.md, session 8): builds
# tests/native/layer_stream_bench.cu with nvcc (sm_90a) once per entry of BUILDS ("name:-DKNOB=v,-DKNOB2=w ...";
# default: 16 consumer warps, try_wait vs test_wait) and, unless NO_STEP=1, the project's kernel_bench (CMake, sm_90a)
# in parallel; runs each bench build (its CPU check first) at context 64, then today's W4A16 decode step
# (`kernel_bench ablate w4a16 attention`, same run) for the comparison. Logs in $OUT; a summary last.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
builds=${BUILDS:-"s2:-DLSB_SETS=2 s2t:-DLSB_SETS=2,-DLSB_TEST_WAIT=1"}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader | tee "$out/summary.txt"
[ "${NO_STEP:-0}" = 1 ] || ( cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
  cmake --build build -j 12 --target kernel_bench ) > "$out/cmake.txt" 2>&1 &
for v in $builds; do
  n=${v%%:*}
  nvcc -O3 -std=c++17 -arch=sm_90a -lineinfo -Xptxas=-v -Xcompiler -fopenmp -lgomp $(echo ${v#*:} | tr , " ") \
       tests/native/layer_stream_bench.cu -o /tmp/lsb_$n > "$out/lsb-build-$n.txt" 2>&1 || cat "$out/lsb-build-$n.txt" &
done
# today's W4A16 kernels alone at M = 1 (same shapes, rotated copies), for the chunk-layout GEMV's comparison
nvcc -O3 -std=c++17 -arch=sm_90a -Inative/include -Inative/src -Ikernels tests/native/w4a16_bench.cu kernels/linear_w4a16.cu kernels/linear_quant_prefill.cu kernels/linear_nf4.cu native/src/cpu_nf4.cpp \
     native/src/cpu_w4a16.cpp native/src/api.cpp -lcublas -Xcompiler -fopenmp -o /tmp/w4a16_bench > "$out/w4b-build.txt" 2>&1 &
wait
for v in $builds; do
  n=${v%%:*}
  echo "== build $v: $(grep -A2 layer_stream_kernel "$out/lsb-build-$n.txt" | grep -oE 'Used [0-9]+ registers|[0-9]+ bytes spill stores' | tr '\n' ' ')" >> "$out/summary.txt"
  timeout 100 /tmp/lsb_$n ${LSB_ARGS:-24 64} > "$out/lsb-$n.txt" 2>&1; echo "rc $?" >> "$out/lsb-$n.txt"
done
W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=1 timeout 60 /tmp/w4a16_bench > "$out/w4a16-bench.txt" 2>&1
echo "rc $?" >> "$out/w4a16-bench.txt"
[ "${NO_STEP:-0}" = 1 ] || { tail -2 "$out/cmake.txt" >> "$out/summary.txt";
  timeout 60 build/kernel_bench ablate w4a16 attention > "$out/ablate.txt" 2>&1; echo "rc $?" >> "$out/ablate.txt"; }
echo "==== summary"
cat "$out/summary.txt"
for v in $builds; do echo "== ${v%%:*}"; grep -E "SMs|FAIL|check h|slots|timeline|plain|GEMV|rc" "$out/lsb-${v%%:*}.txt"; done
echo "== today's W4A16 kernels alone"; grep -vE "^$" "$out/w4a16-bench.txt" | head -30
[ -f "$out/ablate.txt" ] && grep -E "ms/token|rc" "$out/ablate.txt" | cut -c1-110
exit 0
