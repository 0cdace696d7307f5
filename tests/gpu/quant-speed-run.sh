#!/usr/bin/env bash
# quant-speed-run.sh — one GPU-machine call for the quantized decode kernels: builds the W4A16 / NF4 benches against
# the kernels of this tree (new) and, when OLD_TREE names another checkout, against its kernel files (old), in
# parallel with the full CMake build; runs the benches (checks first) and the native kernel checks. Logs in $OUT.
set -u
export PYTHONUNBUFFERED=1
here=$(pwd); old=${OLD_TREE:-}; out=${OUT:-/tmp/out}; mkdir -p "$out" /tmp/qb
flags="-O3 -std=c++17 -arch=sm_90a --use_fast_math -Xptxas=-v -I$here/native/include -I$here/native/src"
build() { # name kernel-tree
  local name=$1 tree=$2
  nvcc $flags tests/native/w4a16_bench.cu $tree/kernels/linear_w4a16.cu native/src/cpu_w4a16.cpp native/src/api.cpp \
    -lcublas -Xcompiler -fopenmp -o /tmp/qb/w4_$name > /tmp/qb/w4_$name.log 2>&1 &
  nvcc $flags tests/native/nf4_bench.cu $tree/kernels/linear_nf4.cu native/src/cpu_nf4.cpp native/src/api.cpp \
    -Xcompiler -fopenmp -o /tmp/qb/nf4_$name > /tmp/qb/nf4_$name.log 2>&1 &
}
t0=$(date +%s)
build new "$here"
[ -n "$old" ] && build old "$old"
( cmake -S . -B /tmp/qb/build -DSTEPAUDIO_REQUIRE_CUDA=ON > /tmp/qb/cmake.log 2>&1 && \
  cmake --build /tmp/qb/build -j8 >> /tmp/qb/cmake.log 2>&1; echo "cmake rc $?" >> /tmp/qb/cmake.log ) &
cmake_pid=$!
for j in $(jobs -p); do [ "$j" != "$cmake_pid" ] && wait "$j"; done
echo "bench builds done at $(( $(date +%s) - t0 )) s"
grep -hE "error|registers|spill" /tmp/qb/w4_new.log /tmp/qb/nf4_new.log | grep -B0 -A0 -E "error|Used|spill" | sort | uniq -c | head -20 > "$out/ptxas.txt"
for v in new old; do
  for b in w4 nf4; do
    [ -x /tmp/qb/${b}_$v ] || { [ -f /tmp/qb/${b}_$v.log ] && tail -n 20 /tmp/qb/${b}_$v.log > "$out/${b}_$v.txt"; continue; }
    timeout ${BENCH_TIMEOUT:-50} /tmp/qb/${b}_$v > "$out/${b}_$v.txt" 2>&1; echo "rc $?" >> "$out/${b}_$v.txt"
  done
done
echo "benches done at $(( $(date +%s) - t0 )) s"
wait "$cmake_pid"; tail -n 5 /tmp/qb/cmake.log > "$out/cmake-tail.txt"; grep -E "error" /tmp/qb/cmake.log | head >> "$out/cmake-tail.txt"
if [ -x /tmp/qb/build/native_kernel_tests ]; then
  timeout ${TESTS_TIMEOUT:-60} /tmp/qb/build/native_kernel_tests > "$out/native-tests.txt" 2>&1
  grep -E "FAIL|^native:" "$out/native-tests.txt"
fi
echo "all done at $(( $(date +%s) - t0 )) s"
for f in "$out"/w4_*.txt "$out"/nf4_*.txt; do echo "== $f"; grep -vE "^\[PASS\]" "$f" | tail -n 40; done
cat "$out/ptxas.txt"
