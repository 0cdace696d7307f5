#!/usr/bin/env bash
# quant-pdl-run.sh — one GPU-machine call for the W4A16 / NF4 programmatic-dependent-launch work, inside a short
# device budget: a quick sm_90a build (nvcc per file, in parallel; the library's sm_80 half is compiled for the two
# quantized kernels only), then, in order of priority and within DEADLINE seconds: the decode step with the
# quantized kernels' PDL on and off (kernel_bench decode; STEPAUDIO_NO_QUANT_PDL=1), the native kernel checks, the
# register experiment (3 blocks per SM: SA_W4A16_MIN_BLOCKS / SA_NF4_BLOCKS_PER_SM), everything without PDL, the
# quantized benches. Logs in $OUT; a summary last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/qp; rm -rf $b; mkdir -p $b
t0=$(date +%s); deadline=${DEADLINE:-140}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
inc="-Inative/include -Inative/src -Ikernels"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp tests/native/w4a16_bench.cu tests/native/nf4_bench.cu; do
  n=$(basename $f); nvcc $fl -arch=sm_90a -Xptxas=-v -c $f -o $b/$n.o > $b/$n.log 2>&1 &
done
for f in kernels/linear_w4a16.cu kernels/linear_nf4.cu; do
  n=$(basename $f)
  nvcc $fl -arch=sm_80 -c $f -o $b/$n.sm80.o > $b/$n.sm80.log 2>&1 &
  nvcc $fl -arch=sm_90a -Xptxas=-v -DSA_W4A16_MIN_BLOCKS=3 -DSA_NF4_BLOCKS_PER_SM=3 -c $f -o $b/$n.rb3.o > $b/$n.rb3.log 2>&1 &
done
wait
echo "compiled at $(el) s"
grep -lE "error|fatal" $b/*.log > $b/errfiles.txt && { for f in $(cat $b/errfiles.txt); do echo "== $f"; grep -B2 -A3 error $f | head -30; done > "$out/build-errors.txt"; cat "$out/build-errors.txt" | head -60; }
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o"
for f in kernels/*.cu; do lib="$lib $b/$(basename $f).o"; done
lib_rb3=$(echo "$lib" | sed "s#$b/linear_w4a16.cu.o#$b/linear_w4a16.cu.rb3.o#; s#$b/linear_nf4.cu.o#$b/linear_nf4.cu.rb3.o#")
lk="-arch=sm_90a -Xcompiler -fopenmp"
nvcc $lk $b/kernel_tests.cpp.o $lib -o $b/native_kernel_tests > $b/link1.log 2>&1 &
nvcc $lk $b/kernel_bench.cpp.o $lib -o $b/kernel_bench > $b/link2.log 2>&1 &
nvcc $lk $b/kernel_bench.cpp.o $lib_rb3 -o $b/kernel_bench_rb3 > $b/link3.log 2>&1 &
nvcc $lk $b/kernel_tests.cpp.o $lib_rb3 -o $b/native_kernel_tests_rb3 > $b/link6.log 2>&1 &
nvcc $lk $b/w4a16_bench.cu.o $lib -lcublas -o $b/w4a16_bench > $b/link4.log 2>&1 &
nvcc $lk $b/nf4_bench.cu.o $lib -o $b/nf4_bench > $b/link5.log 2>&1 &
wait
cat $b/link*.log | grep -iE "error|undefined|fatal" | head -20 | tee -a "$out/build-errors.txt"
echo "linked at $(el) s"
# Registers (ptxas -v) of the quantized kernels, default and 3-blocks builds; SASS order of the PDL wait (ACQBULK)
# against the global loads (LDG) in every kernel of the GEMV files.
for f in linear_w4a16.cu.log linear_nf4.cu.log linear_w4a16.cu.rb3.log linear_nf4.cu.rb3.log linear_bf16.cu.log; do
  echo "== $f"; grep -E "Compiling entry|Used|spill" $b/$f | sed 's/ptxas info    : //' | paste - - - | sed -E 's/Compiling entry function //' | cut -c1-300
done > "$out/ptxas.txt" 2>&1
for o in linear_w4a16.cu.o linear_nf4.cu.o linear_bf16.cu.o; do
  cuobjdump -sass $b/$o | awk -v o=$o '/Function :/ { if (fn) print o, fn, "LDG before wait:", pre, "after:", post, "wait found:", seen; fn=$3; pre=0; post=0; seen=0 }
    /ACQBULK/ { seen=1 } /LDG/ { if (seen) post++; else pre++ } END { print o, fn, "LDG before wait:", pre, "after:", post, "wait found:", seen }'
done > "$out/sass-order.txt" 2>&1
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
q="w4a16 w4a16-awq nf4"
run "decode, PDL everywhere" 40 $b/kernel_bench decode
run "decode, quantized kernels plain launches" 25 env STEPAUDIO_NO_QUANT_PDL=1 $b/kernel_bench decode $q
run "decode, 3 blocks/SM build, PDL" 25 $b/kernel_bench_rb3 decode $q
run "decode, PDL everywhere (again, for noise)" 25 $b/kernel_bench decode $q
timeout $(left 50) $b/native_kernel_tests_rb3 > "$out/native-tests-rb3.txt" 2>&1; echo "native tests (3 blocks/SM build) rc $? at $(el) s" >> "$out/runs.txt"
timeout $(left 50) $b/native_kernel_tests > "$out/native-tests.txt" 2>&1; echo "native tests rc $? at $(el) s" >> "$out/runs.txt"
run "decode, no PDL at all" 20 env STEPAUDIO_NO_PDL=1 $b/kernel_bench decode $q
# The project's CMake build (sm_80 + sm_90a, every target), as far as the time allows: does it compile?
l=$(left 1000); if [ $l -gt 10 ]; then
  ( cmake -S . -B /tmp/cm -DSTEPAUDIO_REQUIRE_CUDA=ON > /tmp/cm.log 2>&1 && timeout $l cmake --build /tmp/cm -j16 >> /tmp/cm.log 2>&1 )
  echo "cmake build rc $? at $(el) s" >> "$out/runs.txt"; grep -E "error|Error" /tmp/cm.log | head -10 >> "$out/runs.txt"
fi
run "w4a16_bench" 40 $b/w4a16_bench
run "nf4_bench" 40 $b/nf4_bench
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
grep -E "cmake build" "$out/runs.txt"
cat "$out/sass-order.txt"
grep -E "^\[FAIL\]|^native:" "$out/native-tests.txt" "$out/native-tests-rb3.txt" | head -20
grep -E "^==|decode step|settings|small kernels|rc |skipped|done|stack|checks:|lm_head|w4a16 \+|nf4 gemv M= 1" "$out/runs.txt" | cut -c1-200
grep -E "w4a16_skinny|nf4_gemv|==" "$out/ptxas.txt" | cut -c1-200
