#!/usr/bin/env bash
# attn-run.sh — one GPU-machine call for the decode attention (kernels/attention.cu) inside a short device budget:
# a per-file sm_90a build in parallel, plus the old attention.cu of OLD_TREE (a copy of main's kernels/:
# OLD_TREE/kernels/attention.cu) linked into kernel_bench_old; then, in order of priority within DEADLINE seconds:
# the attention and decode-graph native checks, `kernel_bench ablate w4a16 attention` (the W4A16 step at context 64
# with and without attention) new and old, `kernel_bench attention` new and old, build-time variants of the new
# kernel (VARIANTS="name:-DKNOB=v,-DKNOB2=w ...": their attention checks, ablation and attention table), the new
# kernel at other STEPAUDIO_ATTN_MIN_TILES (SWEEP="1 4"), and new / old once more (noise). Logs in $OUT; a summary
# last.
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"; b=/tmp/attnb; rm -rf $b; mkdir -p $b
old=${OLD_TREE:-}; sweep=${SWEEP:-}; variants=${VARIANTS:-}
t0=$(date +%s); deadline=${DEADLINE:-200}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
inc="-Inative/include -Inative/src -Ikernels -Itests/native"
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -Xcompiler -fopenmp $inc"
cc() { local o=$1 src=$2; shift 2; nvcc $fl "$@" -c "$src" -o $b/$o > $b/$o.log 2>&1; }
for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
         tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp; do
  cc $(basename $f).o $f -arch=sm_90a -Xptxas=-v &
done
[ -n "$old" ] && cc attention_old.o "$old/kernels/attention.cu" -arch=sm_90a -Xptxas=-v &
for v in $variants; do cc attention_var_${v%%:*}.o kernels/attention.cu -arch=sm_90a -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
wait
echo "compiled at $(el) s" | tee "$out/build.txt"
for f in $b/*.log; do grep -qE "error|fatal" $f && { echo "== $f"; grep -B2 -A3 -E "error|fatal" $f | head -30; }; done >> "$out/build.txt"
rest=""; for f in kernels/*.cu; do [ "$(basename $f)" != attention.cu ] && rest="$rest $b/$(basename $f).o"; done
lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o $rest"
lk="-arch=sm_90a -Xcompiler -fopenmp"
link() { local exe=$1; shift; nvcc $lk "$@" -o $b/$exe > $b/link_$exe.log 2>&1 || { echo "link $exe failed"; head -20 $b/link_$exe.log; } >> "$out/build.txt"; }
link native_kernel_tests $b/kernel_tests.cpp.o $b/attention.cu.o $lib &
link kernel_bench $b/kernel_bench.cpp.o $b/attention.cu.o $lib &
[ -n "$old" ] && link kernel_bench_old $b/kernel_bench.cpp.o $b/attention_old.o $lib &
for v in $variants; do
  n=${v%%:*}
  link kernel_bench_$n $b/kernel_bench.cpp.o $b/attention_var_$n.o $lib &
  link native_kernel_tests_$n $b/kernel_tests.cpp.o $b/attention_var_$n.o $lib &
done
wait
echo "linked at $(el) s" | tee -a "$out/build.txt"
# Registers of every attention instantiation; SASS order of the PDL wait (ACQBULK) against the global loads (LDG),
# the async copies (LDGSTS) and the L2 prefetches (UBLKPF) in each kernel.
for f in attention.cu.o attention_old.o $(for v in $variants; do echo attention_var_${v%%:*}.o; done); do
  [ -f $b/$f.log ] || continue
  echo "== $f"; grep -E "Compiling entry|Used|spill" $b/$f.log | sed 's/ptxas info    : //' | paste - - - |
    sed -E 's/Compiling entry function //' | cut -c1-200
done > "$out/ptxas.txt" 2>&1
cuobjdump -sass $b/attention.cu.o | awk '/Function :/ { if (fn) print fn, "before wait: LDG", pre, "prefetch", pf, "| after: LDG", post, "LDGSTS", cp; fn=$3; pre=0; post=0; pf=0; cp=0; seen=0 }
  /ACQBULK/ { seen=1 } /LDG/ && !/LDGSTS/ { if (seen) post++; else pre++ } /LDGSTS/ { cp++ } /UBLKPF|CCTL/ { if (!seen) pf++ }
  END { print fn, "before wait: LDG", pre, "prefetch", pf, "| after: LDG", post, "LDGSTS", cp }' >> "$out/ptxas.txt" 2>&1
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
timeout $(left 60) $b/native_kernel_tests attention > "$out/native-tests.txt" 2>&1; echo "attention checks rc $? at $(el) s" >> "$out/runs.txt"
timeout $(left 60) $b/native_kernel_tests "decode step" >> "$out/native-tests.txt" 2>&1; echo "decode-step checks rc $? at $(el) s" >> "$out/runs.txt"
run "ablate w4a16 new" 30 $b/kernel_bench ablate w4a16 attention
[ -n "$old" ] && run "ablate w4a16 old" 30 $b/kernel_bench_old ablate w4a16 attention
run "attention new" 40 $b/kernel_bench attention
[ -n "$old" ] && run "attention old" 40 $b/kernel_bench_old attention
for v in $variants; do
  n=${v%%:*}
  run "attention checks, variant $n (${v#*:})" 30 sh -c "$b/native_kernel_tests_$n attention | grep -E '^native:|FAIL'"
  run "ablate w4a16 variant $n" 30 $b/kernel_bench_$n ablate w4a16 attention
  run "attention variant $n" 40 $b/kernel_bench_$n attention
done
for t in $sweep; do
  run "attention new, min tiles $t" 40 env STEPAUDIO_ATTN_MIN_TILES=$t $b/kernel_bench attention
  run "ablate w4a16 new, min tiles $t" 30 env STEPAUDIO_ATTN_MIN_TILES=$t $b/kernel_bench ablate w4a16 attention
done
run "ablate w4a16 new (again)" 30 $b/kernel_bench ablate w4a16 attention
[ -n "$old" ] && run "ablate w4a16 old (again)" 30 $b/kernel_bench_old ablate w4a16 attention
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
head -40 "$out/build.txt"
grep -E "^\[FAIL\]|^native:|passed" "$out/native-tests.txt" | head -20
grep -E "^==|^rc|checks rc|^native|FAIL|attention decode|decode step|skipped|done" "$out/runs.txt" | cut -c1-150
grep -E "spill stores" "$out/ptxas.txt" | grep -v " 0 bytes spill stores" | head
grep -E "before wait" "$out/ptxas.txt" | cut -c1-200
