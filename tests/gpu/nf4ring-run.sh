#!/usr/bin/env bash
# nf4ring-run.sh — one GPU-machine call for the NF4 decode kernel (kernels/linear_nf4.cu) inside a short device budget:
# a per-file sm_90a build in parallel (plus the sm_80 half of the NF4 kernel, to see it compiles), the old kernel file
# of OLD_TREE (a copy of main's kernels/: OLD_TREE/kernels/linear_nf4.cu) and build-time variants of the new one
# (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u", knobs of linear_nf4.cu) linked into nf4_bench and kernel_bench;
# then, in order of priority within DEADLINE seconds: nf4_bench new (checks, M = NF4_M), old, the decode step
# (kernel_bench decode nf4) new and old, the native kernel checks (TESTS_FILTER), the variants, and new / old once
# more (noise), the NF4 native checks against each variant. Logs in $OUT; a summary last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/nf4r; rm -rf $b; mkdir -p $b
old=${OLD_TREE:-}; variants=${VARIANTS:-}; nf4m=${NF4_M:-1,16}; filter=${TESTS_FILTER:-}
t0=$(date +%s); deadline=${DEADLINE:-200}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
inc="-Inative/include -Inative/src -Ikernels -Itests/native"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
cc() { local o=$1 src=$2; shift 2; nvcc $fl "$@" -c "$src" -o $b/$o > $b/$o.log 2>&1; }
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp tests/native/nf4_bench.cu; do
  cc $(basename $f).o $f -arch=sm_90a -Xptxas=-v &
done
cc nf4_sm80.o kernels/linear_nf4.cu -arch=sm_80 -Xptxas=-v &
[ -n "$old" ] && cc nf4_old.o "$old/kernels/linear_nf4.cu" -arch=sm_90a -Xptxas=-v &
for v in $variants; do cc nf4_var_${v%%:*}.o kernels/linear_nf4.cu -arch=sm_90a -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
wait
echo "compiled at $(el) s" | tee "$out/build.txt"
for f in $b/*.log; do grep -qE "error|fatal" $f && { echo "== $f"; grep -B2 -A3 -E "error|fatal" $f | head -30; }; done >> "$out/build.txt"
rest=""; for f in kernels/*.cu; do [ "$(basename $f)" != linear_nf4.cu ] && rest="$rest $b/$(basename $f).o"; done
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o $rest"
lk="-arch=sm_90a -Xcompiler -fopenmp -lcublas"
link() { local exe=$1; shift; nvcc $lk "$@" -o $b/$exe > $b/link_$exe.log 2>&1 || { echo "link $exe failed"; head -20 $b/link_$exe.log; } >> "$out/build.txt"; }
link native_kernel_tests $b/kernel_tests.cpp.o $b/linear_nf4.cu.o $lib &
link kernel_bench $b/kernel_bench.cpp.o $b/linear_nf4.cu.o $lib &
link nf4_bench $b/nf4_bench.cu.o $b/linear_nf4.cu.o $lib &
if [ -n "$old" ]; then
  link kernel_bench_old $b/kernel_bench.cpp.o $b/nf4_old.o $lib &
  link nf4_bench_old $b/nf4_bench.cu.o $b/nf4_old.o $lib &
fi
for v in $variants; do
  n=${v%%:*}
  link nf4_bench_$n $b/nf4_bench.cu.o $b/nf4_var_$n.o $lib &
  link kernel_bench_$n $b/kernel_bench.cpp.o $b/nf4_var_$n.o $lib &
  link native_kernel_tests_$n $b/kernel_tests.cpp.o $b/nf4_var_$n.o $lib &
done
wait
echo "linked at $(el) s" | tee -a "$out/build.txt"
# Registers (ptxas -v) of every NF4 instantiation; SASS order of the PDL wait (ACQBULK) against the global loads and
# async copies (LDG, LDGSTS) in each kernel.
for f in linear_nf4.cu.o nf4_sm80.o nf4_old.o $(for v in $variants; do echo nf4_var_${v%%:*}.o; done); do
  [ -f $b/$f.log ] || continue
  echo "== $f"; grep -E "Compiling entry|Used|spill" $b/$f.log | sed 's/ptxas info    : //' | paste - - - |
    sed -E 's/Compiling entry function //; s/.*_cu_[0-9a-f]*//' | cut -c1-200
done > "$out/ptxas.txt" 2>&1
cuobjdump -sass $b/linear_nf4.cu.o | awk '/Function :/ { if (fn) print fn, "loads before wait:", pre, "after:", post, "wait:", seen; fn=$3; pre=0; post=0; seen=0 }
  /ACQBULK/ { seen=1 } /LDG/ { if (seen) post++; else pre++ } END { print fn, "loads before wait:", pre, "after:", post, "wait:", seen }' >> "$out/ptxas.txt" 2>&1
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
run "nf4_bench new (checks)" 45 env NF4_BENCH_M=$nf4m $b/nf4_bench
[ -n "$old" ] && run "nf4_bench old" 40 env NF4_BENCH_M=$nf4m $b/nf4_bench_old
run "decode step new" 20 $b/kernel_bench decode nf4
[ -n "$old" ] && run "decode step old" 20 $b/kernel_bench_old decode nf4
timeout $(left 60) $b/native_kernel_tests $filter > "$out/native-tests.txt" 2>&1; echo "native tests rc $? at $(el) s" >> "$out/runs.txt"
for v in $variants; do
  run "nf4_bench variant ${v%%:*} (${v#*:})" 35 env NF4_BENCH_M=${VARIANT_M:-1} $b/nf4_bench_${v%%:*}
  [ -n "${VARIANT_DECODE:-}" ] && run "decode step variant ${v%%:*}" 20 $b/kernel_bench_${v%%:*} decode nf4
done
run "nf4_bench new (again, for noise)" 35 env NF4_BENCH_M=1 $b/nf4_bench
run "decode step new (again)" 20 $b/kernel_bench decode nf4
[ -n "$old" ] && run "nf4_bench old (again)" 35 env NF4_BENCH_M=1 $b/nf4_bench_old
[ -n "$old" ] && run "decode step old (again)" 20 $b/kernel_bench_old decode nf4
for v in $variants; do  # the NF4 checks against each variant's kernel
  run "native NF4 checks, variant ${v%%:*}" 30 sh -c "$b/native_kernel_tests_${v%%:*} nf4 | grep -E '^native:|FAIL'"
done
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
cat "$out/build.txt" | head -40
grep -E "^\[FAIL\]|^native:|passed" "$out/native-tests.txt" | head -20
grep -E "^==|^rc|checks:|FAIL|nf4 gemv|stack|decode step|ms/token|nf4 |skipped|done" "$out/runs.txt" | grep -v "^\[PASS" | cut -c1-150
grep -E "spill stores" "$out/ptxas.txt" | grep -v " 0 bytes spill stores" | head
