#!/usr/bin/env bash
# quant-prefill-run.sh — one GPU-machine call for the 4-bit prefill GEMM (kernels/linear_quant_prefill.cu): a quick
# sm_90a build (nvcc per file, in parallel; the prefill file also for sm_80, the library's other half, and with
# BENCH_U4=1 with the stage loop fully unrolled, SA_PREFILL_H_UNROLL=4, as a variant), then within DEADLINE seconds, in this order: the
# prefill checks with every launch shape forced (quant_prefill_bench checks), the benchmark (quant_prefill_bench
# bench; then the unrolled variant's if BENCH_U4=1), the native kernel checks (all, or those matching TESTS_FILTER).
# Logs in $OUT; a summary last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/qpf; rm -rf $b; mkdir -p $b
t0=$(date +%s); deadline=${DEADLINE:-220}
el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( deadline - $(el) )); }
inc="-Inative/include -Inative/src -Ikernels"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu --format=csv,noheader > "$out/gpu.txt" 2>&1
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/quant_prefill_bench.cu; do
  n=$(basename $f); nvcc $fl -arch=sm_90a -Xptxas=-v -c $f -o $b/$n.o > $b/$n.log 2>&1 &
done
[ "${BENCH_U4:-0}" = 1 ] && nvcc $fl -arch=sm_90a -Xptxas=-v -DSA_PREFILL_H_UNROLL=4 -c kernels/linear_quant_prefill.cu -o $b/prefill_u4.o > $b/prefill_u4.log 2>&1 &
nvcc $fl -arch=sm_80 -Xptxas=-v -c kernels/linear_quant_prefill.cu -o $b/prefill_sm80.o > $b/prefill_sm80.log 2>&1 &
wait
echo "compiled at $(el) s"
: > "$out/build-errors.txt"
for f in $b/*.log; do grep -qE "error|fatal" $f && { echo "== $f"; grep -B2 -A3 -E "error|fatal" $f | head -30; } >> "$out/build-errors.txt"; done
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o"
for f in kernels/*.cu; do lib="$lib $b/$(basename $f).o"; done
bench="$b/quant_prefill_bench.cu.o $b/linear_w4a16.cu.o $b/linear_nf4.cu.o $b/api.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o"
lk="-arch=sm_90a -Xcompiler -fopenmp"
nvcc $lk $b/kernel_tests.cpp.o $lib -o $b/native_kernel_tests > $b/link1.log 2>&1 &
nvcc $lk $bench $b/linear_quant_prefill.cu.o -lcublas -o $b/bench > $b/link2.log 2>&1 &
[ -f $b/prefill_u4.o ] && nvcc $lk $bench $b/prefill_u4.o -lcublas -o $b/bench_u4 > $b/link3.log 2>&1 &
wait
cat $b/link*.log | grep -iE "error|undefined|fatal" | head -20 >> "$out/build-errors.txt"
echo "linked at $(el) s"
for f in linear_quant_prefill.cu.log prefill_u4.log prefill_sm80.log; do
  echo "== $f"
  grep -E "Compiling entry|Used|spill" $b/$f | sed 's/ptxas info    : //' |
    sed -E 's/.*quant_prefillILi([0-9])ELi([0-9])ELi([0-9]+).*/NAME Fmt\1 WM\2 NT\3/' |
    awk '/^NAME/ { name=$2" "$3" "$4; next } /spill/ { sp=$0; next } /Used/ { print name, $2, $3, sp; next }'
done > "$out/ptxas.txt" 2>&1
cuobjdump -sass $b/linear_quant_prefill.cu.o | awk '/Function :/ { if (fn) print fn, "HMMA", h, "LDSM", l, "LDGSTS", g, "STL", s, "LDL", d; fn=$3; h=l=g=s=d=0 }
  /HMMA/ {h++} /LDSM/ {l++} /LDGSTS/ {g++} /STL/ {s++} /LDL/ {d++} END { print fn, "HMMA", h, "LDSM", l, "LDGSTS", g, "STL", s, "LDL", d }' |
  sed -E 's/_ZN.*quant_prefillILi([0-9])ELi([0-9])ELi([0-9]+).*Params./Fmt\1 WM\2 NT\3/' > "$out/sass-counts.txt" 2>&1
step() { # name seconds command...
  local name=$1 secs=$2; shift 2
  local l=$(left); [ $l -lt 5 ] && { echo "$name: skipped (deadline)"; return; }
  [ $secs -gt $l ] && secs=$l
  local s0=$(date +%s)
  timeout $secs "$@" > "$out/$name.txt" 2>&1; echo "rc $?" >> "$out/$name.txt"
  echo "$name: $(tail -n 1 "$out/$name.txt") after $(( $(date +%s) - s0 )) s"
}
[ -x $b/bench ] && step checks ${CHECKS_S:-60} $b/bench checks
[ -x $b/bench ] && step bench ${BENCH_S:-120} $b/bench bench "$out/sweep.txt"
[ "${BENCH_U4:-0}" = 1 ] && [ -x $b/bench_u4 ] && step bench_u4 ${BENCH_S:-120} $b/bench_u4 bench "$out/sweep_u4.txt"
[ -x $b/native_kernel_tests ] && step native-tests ${TESTS_S:-90} $b/native_kernel_tests ${TESTS_FILTER:-}
echo "all done at $(el) s"
echo "== build errors"; head -40 "$out/build-errors.txt"
echo "== ptxas"; cat "$out/ptxas.txt"; cat "$out/sass-counts.txt"
echo "== checks"; grep -vE "^\[PASS\]" "$out/checks.txt" 2>/dev/null | tail -n 30
echo "== native"; grep -E "FAIL|^native:" "$out/native-tests.txt" 2>/dev/null | tail -n 20
echo "== bench"; cat "$out/bench.txt" 2>/dev/null | tail -n 70
[ -f "$out/bench_u4.txt" ] && { echo "== bench_u4"; tail -n 40 "$out/bench_u4.txt"; }
