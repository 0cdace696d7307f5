#!/usr/bin/env bash
# rotate-run.sh — one GPU-machine call (session 20), measured on the tree of commit 9ae1af0 (its results:
# kernels/NOTES_QUANT.md, session 20). SA_REDUCE_ROTATE no longer exists: the rotation is part of the lagged
# reduction, now NF4's default, so re-running this needs that commit's tree.
# 1. The rotating reducer (SA_REDUCE_ROTATE=1, kernels/linear_epilogue.cuh) against main's "warps 0-3 reduce every
#    tile": nf4-barrier-run.sh found the NF4 gate_up 10% faster with no reduction at all and 3% faster with no tile
#    barrier. Behind a block barrier per tile the rotation alone should not pay (the reducing warp still delays
#    the next barrier), so NF4 is measured as rot (rotation), lag (SA_NF4_STREAM_LAGGED: no per-tile barrier, the
#    reduction a tile behind through mbarriers) and lagrot (both); rot2 = NF4 lagrot + W4A16's stream kernel with
#    the rotation. Checks (native nf4 / w4a16) and timings: the linears alone (nf4_bench, w4a16_bench) and the decode
#    step (kernel_bench decode).
# 2. When scratch/lqp_old.cu is present (the previous kernels/linear_quant_prefill.cu, untracked): the prefill
#    kernels' shared stage pipeline and epilogue (this tree) against it: quant_prefill_bench checks, SASS instruction
#    counts and registers per kernel, and kernel_bench prefill at 24-64 tokens with each.
# DEADLINE (default 420 s). Nothing to carry. On the device: bash tests/gpu/rotate-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/rotab DEADLINE=${DEADLINE:-420} VARIANTS="rot:-DSA_REDUCE_ROTATE=1 lag:-DSA_NF4_STREAM_LAGGED=1 lagrot:-DSA_NF4_STREAM_LAGGED=1,-DSA_REDUCE_ROTATE=1" . tests/gpu/ab-build.sh
{ nvcc $ab_fl -arch=sm_90a -DSA_REDUCE_ROTATE=1 -c kernels/linear_w4a16.cu -o /tmp/w4rot.o > /tmp/w4rot.log 2>&1 & }
qpold=""; [ -f scratch/lqp_old.cu ] && qpold=/tmp/lqp_old.o &&
  { nvcc $ab_fl -arch=sm_90a -Xptxas=-v -c scratch/lqp_old.cu -o $qpold > /tmp/lqp_old.log 2>&1 & }
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu tests/native/w4a16_bench.cu tests/native/quant_prefill_bench.cu
wait
cat "$out/build.txt"; grep -iE "error" /tmp/w4rot.log /tmp/lqp_old.log | head
# rot2: both streaming kernels rotate (the NF4 variant object and /tmp/w4rot.o).
common="$b/api.cpp.o $b/cpu_reference.cpp.o $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o"
for f in kernels/*.cu; do
  case $f in kernels/linear_nf4.cu|kernels/linear_w4a16.cu) ;; *) common="$common $b/$(basename $f).o" ;; esac
done
for p in kernel_bench.cpp:kernel_bench kernel_tests.cpp:native_kernel_tests w4a16_bench.cu:w4a16_bench nf4_bench.cu:nf4_bench; do
  nvcc -arch=sm_90a -Xcompiler -fopenmp $b/${p%%:*}.o $b/linear_nf4_var_lagrot.o /tmp/w4rot.o $common -lcublas \
    -o $b/${p#*:}_rot2 > $b/link_rot2_${p#*:}.log 2>&1 || head -5 $b/link_rot2_${p#*:}.log &
done
if [ -n "$qpold" ]; then
  others=""; for f in kernels/*.cu; do [ "$f" != kernels/linear_quant_prefill.cu ] && others="$others $b/$(basename $f).o"; done
  nvcc -arch=sm_90a -Xcompiler -fopenmp $b/kernel_bench.cpp.o $others $qpold $b/api.cpp.o $b/cpu_reference.cpp.o \
    $b/cpu_w4a16.cpp.o $b/cpu_nf4.cpp.o -lcublas -o $b/kernel_bench_qpold > $b/link_qpold.log 2>&1 || head -20 $b/link_qpold.log &
fi
wait
echo "linked rot2 / qpold at $(el) s"
if [ -n "$qpold" ]; then
  for o in $b/linear_quant_prefill.cu.o $qpold; do
    cuobjdump -sass $o | awk '/Function :/{fn=$3} /^ +\/\*[0-9a-f]+\*\//{c[fn]++} END{for (f in c) print c[f], f}' | sort -k2 > $o.counts
  done
  echo "prefill kernels, SASS instructions old vs new (differing only; of $(wc -l < $qpold.counts) kernels):"
  paste $qpold.counts $b/linear_quant_prefill.cu.o.counts | awk '$1 != $3 {print "  ", $1, $3, substr($2, 40, 60)}'
  echo "registers / spills, old vs new:"
  diff <(grep -E "Used|spill" /tmp/lqp_old.log | sed 's/ptxas info    : //' | sort | uniq -c) \
       <(grep -E "Used|spill" $b/linear_quant_prefill.cu.o.log | sed 's/ptxas info    : //' | sort | uniq -c) && echo "   identical"
fi
nf4="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1,8 NF4_BENCH_SHAPES=16384x3072,8192x3072,3584x3072,3072x3072"
w4="env W4A16_BENCH_M=1,8 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_SHAPES=16384:3072,8192:3072,3584:3072"
run "nf4_bench main" 40 $nf4 $b/nf4_bench
for v in rot lag lagrot; do run "nf4_bench $v" 40 $nf4 $b/nf4_bench_$v; done
run "w4a16_bench main" 40 $w4 $b/w4a16_bench
run "w4a16_bench rot2" 40 $w4 $b/w4a16_bench_rot2
run "native nf4 checks, lag" 60 sh -c "$b/native_kernel_tests_lag nf4 | grep -E '^native:|FAIL'"
run "native nf4 checks, rot2" 60 sh -c "$b/native_kernel_tests_rot2 nf4 | grep -E '^native:|FAIL'"
run "native w4a16 checks, rot2" 60 sh -c "$b/native_kernel_tests_rot2 w4a16 | grep -E '^native:|FAIL'"
run "decode main" 40 $b/kernel_bench decode nf4 w4a16
run "decode rot2" 40 $b/kernel_bench_rot2 decode nf4 w4a16
run "nf4_bench main, again" 40 $nf4 $b/nf4_bench
run "nf4_bench lagrot, again" 40 $nf4 $b/nf4_bench_lagrot
run "decode main, again" 40 $b/kernel_bench decode nf4 w4a16
run "decode rot2, again" 40 $b/kernel_bench_rot2 decode nf4 w4a16
if [ -n "$qpold" ]; then
  run "quant_prefill_bench checks (stage pipeline)" 120 sh -c "$b/quant_prefill_bench checks | grep -E 'checks|FAIL' | head -20"
  for k in kernel_bench kernel_bench_qpold kernel_bench kernel_bench_qpold; do
    run "prefill 24-64 tokens, $k" 60 sh -c "STEPAUDIO_BENCH_PREFILL=24,32,64 $b/$k prefill w4a16 nf4 | grep -E 'step' | head -18"
  done
fi
echo "=== runs"
grep -E "^==|^rc [1-9]|gemv M=|copy band|FAIL|checks|native:|ms/token|custom|step |passed" "$out/runs.txt" | cut -c1-160 | head -150
