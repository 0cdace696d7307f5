# ab-build.sh — sourced by the A/B kernel experiment scripts (tests/gpu/{w4fast,nf4ring,topk,attn}-run.sh), which
# each spend one GPU-machine call on one kernel file: build the native checks and benchmarks per file with nvcc in
# parallel (faster than CMake inside a short device budget) against this tree's kernels, against an old copy of the
# varied file and against build-time variants of it; then run the measurements in priority order within a deadline.
#
#   ab_build VARIED_FILE BENCH_SOURCE... [-- EXTRA_OBJECT...]
#     VARIED_FILE: the kernel file under test (e.g. kernels/linear_nf4.cu); BENCH_SOURCE: extra benchmark programs
#     (tests/native/nf4_bench.cu) beside native_kernel_tests and kernel_bench; EXTRA_OBJECT: more builds of the varied
#     file, as "name:flags" (e.g. "sm80:-arch=sm_80"), compiled and reported but not linked.
#   Environment: OUT (logs; default /tmp/out), AB_DIR (build folder), AB_OLD (the old copy of the varied file, or
#   empty), VARIANTS ("name:-DKNOB=v,-DKNOB2=w ..."), DEADLINE (seconds for the whole call).
#   Makes $b/<program>, $b/<program>_old and $b/<program>_<variant> for native_kernel_tests, kernel_bench and each
#   bench; writes $out/build.txt (compile / link errors) and $out/ptxas.txt (registers, spills, and how many global
#   loads / async copies come before the PDL wait in each kernel of the varied file).
#   run NAME TIMEOUT COMMAND...: runs COMMAND into $out/runs.txt unless the deadline is near (then notes the skip).
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-/tmp/out}; mkdir -p "$out"
b=${AB_DIR:-/tmp/ab}; rm -rf "$b"; mkdir -p "$b"
t0=$(date +%s); deadline=${DEADLINE:-200}
variants=${VARIANTS:-}; old=${AB_OLD:-}
el() { echo $(( $(date +%s) - t0 )); }
left() { local l=$(( deadline - $(el) )); [ $l -lt ${1:-1000} ] && echo $l || echo ${1:-1000}; }
ab_fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -DSA_HAVE_WGMMA=1 -Xcompiler -fopenmp -Inative/include -Inative/src -Ikernels -Itests/native"
# nf4_quantize.cu keeps subnormals (-ftz=false, as CMakeLists.txt compiles it).
ab_cc() { local o=$1 src=$2; shift 2; nvcc $ab_fl $([ "${src##*/}" = nf4_quantize.cu ] && echo -ftz=false) "$@" -c "$src" -o "$b/$o" > "$b/$o.log" 2>&1; }
ab_link() {
  local exe=$1; shift
  nvcc -arch=sm_90a -Xcompiler -fopenmp "$@" -lcublas -o "$b/$exe" > "$b/link_$exe.log" 2>&1 ||
    { echo "link $exe failed"; head -20 "$b/link_$exe.log"; } >> "$out/build.txt"
}
ab_build() {
  local varied=$1; shift
  local benches=() extras=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do benches+=("$1"); shift; done
  [ $# -gt 0 ] && { shift; extras=("$@"); }
  local stem; stem=$(basename "$varied" .cu)
  local f
  for f in kernels/*.cu native/src/api.cpp native/src/cpu_reference.cpp native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp \
           tests/native/kernel_tests.cpp tests/native/kernel_bench.cpp "${benches[@]}"; do
    ab_cc "$(basename "$f").o" "$f" -arch=sm_90a -Xptxas=-v &
  done
  [ -n "$old" ] && ab_cc "${stem}_old.o" "$old" -arch=sm_90a -Xptxas=-v &
  local v
  for v in $variants; do ab_cc "${stem}_var_${v%%:*}.o" "$varied" -arch=sm_90a -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
  for v in "${extras[@]}"; do ab_cc "${stem}_${v%%:*}.o" "$varied" -Xptxas=-v $(echo ${v#*:} | tr , " ") & done
  wait
  echo "compiled at $(el) s" | tee "$out/build.txt"
  for f in "$b"/*.log; do grep -qE "error|fatal" "$f" && { echo "== $f"; grep -B2 -A3 -E "error|fatal" "$f" | head -30; }; done >> "$out/build.txt"
  local lib="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o"
  for f in kernels/*.cu; do [ "$f" != "$varied" ] && lib="$lib $b/$(basename "$f").o"; done
  # Each program against the new kernel object, the old one and every variant's.
  local programs="kernel_tests.cpp:native_kernel_tests kernel_bench.cpp:kernel_bench" p kernel suffix
  for f in "${benches[@]}"; do programs="$programs $(basename "$f"):$(basename "$f" .cu)"; done
  for p in $programs; do
    for kernel in "new:$b/$(basename "$varied").o" ${old:+"old:$b/${stem}_old.o"} \
                  $(for v in $variants; do echo "${v%%:*}:$b/${stem}_var_${v%%:*}.o"; done); do
      suffix=${kernel%%:*}; [ "$suffix" = new ] && suffix="" || suffix="_$suffix"
      ab_link "${p#*:}$suffix" "$b/${p%%:*}.o" "${kernel#*:}" $lib &
    done
  done
  wait
  echo "linked at $(el) s" | tee -a "$out/build.txt"
  for f in "$(basename "$varied").o" "${stem}_old.o" $(for v in $variants "${extras[@]}"; do echo "${stem}_var_${v%%:*}.o ${stem}_${v%%:*}.o"; done); do
    [ -f "$b/$f.log" ] || continue
    echo "== $f"; grep -E "Compiling entry|Used|spill" "$b/$f.log" | sed 's/ptxas info    : //' | paste - - - |
      sed -E 's/Compiling entry function //' | cut -c1-220
  done > "$out/ptxas.txt" 2>&1
  cuobjdump -sass "$b/$(basename "$varied").o" | awk '
    /Function :/ { if (fn) print fn, "before wait: LDG", pre, "LDGSTS", cpre, "| after: LDG", post; fn=$3; pre=0; post=0; cpre=0; seen=0 }
    /ACQBULK/ { seen=1 } /LDG/ && !/LDGSTS/ { if (seen) post++; else pre++ } /LDGSTS/ { if (!seen) cpre++ }
    END { print fn, "before wait: LDG", pre, "LDGSTS", cpre, "| after: LDG", post }' >> "$out/ptxas.txt" 2>&1
}
run() { # name timeout command...
  local name=$1 t=$2; shift 2
  local l; l=$(left $t); if [ $l -lt 5 ]; then echo "[skipped $name: no time left]" >> "$out/runs.txt"; return; fi
  echo "== $name (at $(el) s, timeout $l)" >> "$out/runs.txt"
  timeout $l "$@" >> "$out/runs.txt" 2>&1; echo "rc $?" >> "$out/runs.txt"
}
