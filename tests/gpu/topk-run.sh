#!/usr/bin/env bash
# topk-run.sh — one GPU-machine call for the sampler (kernels/sampler.cu) inside a short device budget: a per-file
# sm_90a build in parallel, the old sampler of OLD_SAMPLER (a copy of main's kernels/sampler.cu) linked into a second
# kernel_bench; then, in order of priority within DEADLINE seconds: the sampler checks, kernel_bench sampler new and
# old (twice, alternating, for noise), the decode-step graph checks, then build-time variants of the new sampler
# (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u"): kernel_bench sampler and the sampler checks against each.
# Logs in $OUT; a summary last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/topk; rm -rf $b; mkdir -p $b
old=${OLD_SAMPLER:-}; variants=${VARIANTS:-}; t0=$(date +%s); deadline=${DEADLINE:-210}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
inc="-Inative/include -Inative/src -Ikernels -Itests/native"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
cc() { local o=$1 src=$2; shift 2; nvcc $fl "$@" -c "$src" -o $b/$o > $b/$o.log 2>&1; }
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp; do
  cc $(basename $f).o $f -arch=sm_90a -Xptxas=-v &
done
[ -n "$old" ] && cc sampler_old.o "$old" -arch=sm_90a -Xptxas=-v &
for v in $variants; do cc sampler_var_${v%%:*}.o kernels/sampler.cu -arch=sm_90a -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
wait
echo "compiled at $(el) s" | tee "$out/build.txt"
for f in $b/*.log; do grep -qE "error|fatal" $f && { echo "== $f"; grep -B2 -A3 -E "error|fatal" $f | head -30; }; done >> "$out/build.txt"
rest=""; for f in kernels/*.cu; do [ "$(basename $f)" != sampler.cu ] && rest="$rest $b/$(basename $f).o"; done
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o $rest"
lk="-arch=sm_90a -Xcompiler -fopenmp -lcublas"
link() { local exe=$1; shift; nvcc $lk "$@" -o $b/$exe > $b/link_$exe.log 2>&1 || { echo "link $exe failed"; head -20 $b/link_$exe.log; } >> "$out/build.txt"; }
link native_kernel_tests $b/kernel_tests.cpp.o $b/sampler.cu.o $lib &
link kernel_bench $b/kernel_bench.cpp.o $b/sampler.cu.o $lib &
[ -n "$old" ] && link kernel_bench_old $b/kernel_bench.cpp.o $b/sampler_old.o $lib &
for v in $variants; do
  link kernel_bench_${v%%:*} $b/kernel_bench.cpp.o $b/sampler_var_${v%%:*}.o $lib &
  link native_kernel_tests_${v%%:*} $b/kernel_tests.cpp.o $b/sampler_var_${v%%:*}.o $lib &
done
wait
echo "linked at $(el) s" | tee -a "$out/build.txt"
for f in sampler.cu.o sampler_old.o $(for v in $variants; do echo sampler_var_${v%%:*}.o; done); do
  [ -f $b/$f.log ] && { echo "== $f"; grep -E "Used|spill" $b/$f.log; }
done > "$out/ptxas.txt" 2>&1
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
run "sampler checks" 60 $b/native_kernel_tests sampler
run "kernel_bench sampler new" 15 $b/kernel_bench sampler
[ -n "$old" ] && run "kernel_bench sampler old" 15 $b/kernel_bench_old sampler
run "kernel_bench sampler new (again)" 15 $b/kernel_bench sampler
[ -n "$old" ] && run "kernel_bench sampler old (again)" 15 $b/kernel_bench_old sampler
run "decode-step graph checks" 90 $b/native_kernel_tests "decode step"
for v in $variants; do
  run "kernel_bench sampler variant ${v%%:*} (${v#*:})" 15 $b/kernel_bench_${v%%:*} sampler
  run "sampler checks, variant ${v%%:*}" 40 sh -c "$b/native_kernel_tests_${v%%:*} sampler | grep -E '^native:|FAIL'"
done
run "kernel_bench sampler new (last)" 15 $b/kernel_bench sampler
[ -n "$old" ] && run "kernel_bench sampler old (last)" 15 $b/kernel_bench_old sampler
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
head -40 "$out/build.txt"
cat "$out/ptxas.txt"
grep -E "^==|^rc|^\[FAIL|^\[PASS|^    |^native:|sampler vocab|skipped|done" "$out/runs.txt" | cut -c1-170
