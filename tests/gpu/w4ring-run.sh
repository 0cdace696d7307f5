#!/usr/bin/env bash
# w4ring-run.sh — one GPU-machine call for the W4A16 decode kernels (kernels/linear_w4a16.cu) inside a short device
# budget (w4fast-run.sh plus an object cache and a token-count filter): a per-file sm_90a build in parallel (plus the
# sm_80 half of the W4A16 kernel, to see it compiles), reusing the objects of an earlier call on a still-warm machine
# when their sources and headers are unchanged; the old kernel file of OLD_TREE (OLD_TREE/kernels/linear_w4a16.cu)
# and build-time variants of the new one (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u") linked into w4a16_bench,
# kernel_bench and native_kernel_tests; then, in order of priority within DEADLINE seconds: w4a16_bench new (checks,
# token counts W4A16_M), old, the decode step (kernel_bench decode w4a16 w4a16-awq) new and old, the native kernel
# checks (TESTS_FILTER), the variants (bench at VARIANT_M, decode step), new / old once more (noise), the W4A16
# native checks against each variant. Logs in $OUT; a summary last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/w4r; mkdir -p $b
old=${OLD_TREE:-}; variants=${VARIANTS:-}; w4m=${W4A16_M:-1,4}; filter=${TESTS_FILTER:-}
t0=$(date +%s); deadline=${DEADLINE:-200}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
inc="-Inative/include -Inative/src -Ikernels -Itests/native"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
hdrs=$(cat kernels/*.cuh kernels/*.h native/include/*.h native/src/*.h tests/native/*.inc tests/native/*.cuh 2>/dev/null | md5sum | cut -c1-12)
cc() { # object source flags...: compiled unless an object of the same source, headers and flags is cached
  local o=$1 src=$2; shift 2
  local key=$( (cat "$src"; echo "$hdrs $*") | md5sum | cut -c1-16)
  if [ -f $b/$o.key ] && [ "$(cat $b/$o.key)" = "$key" ] && [ -f $b/$o ]; then echo "cached" > $b/$o.cached; return; fi
  rm -f $b/$o.cached
  nvcc $fl "$@" -c "$src" -o $b/$o > $b/$o.log 2>&1 && echo "$key" > $b/$o.key
}
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp tests/native/w4a16_bench.cu; do
  cc $(basename $f).o $f -arch=sm_90a -Xptxas=-v &
done
cc w4a16_sm80.o kernels/linear_w4a16.cu -arch=sm_80 -Xptxas=-v &
[ -n "$old" ] && cc w4a16_old.o "$old/kernels/linear_w4a16.cu" -arch=sm_90a -Xptxas=-v &
for v in $variants; do cc w4a16_var_${v%%:*}.o kernels/linear_w4a16.cu -arch=sm_90a -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
wait
echo "compiled at $(el) s ($(ls $b/*.cached 2>/dev/null | wc -l) objects cached)" | tee "$out/build.txt"
for f in $b/*.log; do grep -qE "error|fatal" $f && { echo "== $f"; grep -B2 -A3 -E "error|fatal" $f | head -30; }; done >> "$out/build.txt"
rest=""; for f in kernels/*.cu; do [ "$(basename $f)" != linear_w4a16.cu ] && rest="$rest $b/$(basename $f).o"; done
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o $rest"
lk="-arch=sm_90a -Xcompiler -fopenmp"
link() { local exe=$1; shift; nvcc $lk "$@" -o $b/$exe > $b/link_$exe.log 2>&1 || { echo "link $exe failed"; head -20 $b/link_$exe.log; } >> "$out/build.txt"; }
for e in native_kernel_tests kernel_bench w4a16_bench; do  # executables only: not the cached objects of the same stem
  rm -f $b/$e $b/${e}_old $(for v in $variants; do echo $b/${e}_${v%%:*}; done)
done
link native_kernel_tests $b/kernel_tests.cpp.o $b/linear_w4a16.cu.o $lib &
link kernel_bench $b/kernel_bench.cpp.o $b/linear_w4a16.cu.o $lib &
link w4a16_bench $b/w4a16_bench.cu.o $b/linear_w4a16.cu.o $b/api.cpp.o $b/cpu_w4a16.cpp.o -lcublas &
if [ -n "$old" ]; then
  link kernel_bench_old $b/kernel_bench.cpp.o $b/w4a16_old.o $lib &
  link w4a16_bench_old $b/w4a16_bench.cu.o $b/w4a16_old.o $b/api.cpp.o $b/cpu_w4a16.cpp.o -lcublas &
fi
for v in $variants; do
  n=${v%%:*}
  link w4a16_bench_$n $b/w4a16_bench.cu.o $b/w4a16_var_$n.o $b/api.cpp.o $b/cpu_w4a16.cpp.o -lcublas &
  link kernel_bench_$n $b/kernel_bench.cpp.o $b/w4a16_var_$n.o $lib &
  link native_kernel_tests_$n $b/kernel_tests.cpp.o $b/w4a16_var_$n.o $lib &
done
wait
echo "linked at $(el) s" | tee -a "$out/build.txt"
# Registers (ptxas -v) of every W4A16 instantiation; SASS order of the PDL wait (ACQBULK) against the global loads
# and async copies (LDG, LDGSTS) in each kernel.
for f in linear_w4a16.cu.o w4a16_sm80.o w4a16_old.o $(for v in $variants; do echo w4a16_var_${v%%:*}.o; done); do
  [ -f $b/$f.log ] || continue
  echo "== $f"; grep -E "Compiling entry|Used|spill" $b/$f.log | sed 's/ptxas info    : //' | paste - - - |
    sed -E 's/Compiling entry function //; s/.*_cu_[0-9a-f]*//' | cut -c1-200
done > "$out/ptxas.txt" 2>&1
cuobjdump -sass $b/linear_w4a16.cu.o | awk '/Function :/ { if (fn) print fn, "loads before wait:", pre, "after:", post, "wait:", seen; fn=$3; pre=0; post=0; seen=0 }
  /ACQBULK/ { seen=1 } /LDG/ { if (seen) post++; else pre++ } END { print fn, "loads before wait:", pre, "after:", post, "wait:", seen }' >> "$out/ptxas.txt" 2>&1
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
quick="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1"
run "w4a16_bench new (checks)" 60 env W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=$w4m $b/w4a16_bench
[ -n "$old" ] && run "w4a16_bench old" 25 $quick W4A16_BENCH_M=$w4m $b/w4a16_bench_old
run "decode step new" 20 $b/kernel_bench decode w4a16 w4a16-awq
[ -n "$old" ] && run "decode step old" 20 $b/kernel_bench_old decode w4a16 w4a16-awq
timeout $(left 60) $b/native_kernel_tests $filter > "$out/native-tests.txt" 2>&1; echo "native tests rc $? at $(el) s" >> "$out/runs.txt"
for v in $variants; do
  run "w4a16_bench variant ${v%%:*} (${v#*:})" 20 $quick W4A16_BENCH_M=${VARIANT_M:-1} $b/w4a16_bench_${v%%:*}
  run "decode step variant ${v%%:*}" 15 $b/kernel_bench_${v%%:*} decode w4a16
done
run "w4a16_bench new (again, for noise)" 20 $quick W4A16_BENCH_M=1 $b/w4a16_bench
[ -n "$old" ] && run "w4a16_bench old (again)" 20 $quick W4A16_BENCH_M=1 $b/w4a16_bench_old
run "decode step new (again)" 15 $b/kernel_bench decode w4a16
[ -n "$old" ] && run "decode step old (again)" 15 $b/kernel_bench_old decode w4a16
for v in $variants; do  # the W4A16 checks against each variant's kernel
  run "native W4A16 checks, variant ${v%%:*}" 30 sh -c "$b/native_kernel_tests_${v%%:*} w4a16 | grep -E '^native:|FAIL'"
done
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
head -40 "$out/build.txt"
grep -E "^\[FAIL\]|^native:" "$out/native-tests.txt" | head -20
grep -E "^==|^rc|checks:|FAIL|N=|w4a16 \+|D2D|ms/token|w4a16|skipped|done" "$out/runs.txt" | grep -vE "^\[PASS|^settings" | cut -c1-150
grep -E "spill stores" "$out/ptxas.txt" | grep -v " 0 bytes spill stores" | head
