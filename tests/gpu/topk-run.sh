#!/usr/bin/env bash
# topk-run.sh — one GPU-machine call for the sampler (kernels/sampler.cu) inside a short device budget: a per-file
# sm_90a build in parallel, the old sampler of OLD_SAMPLER (a copy of main's kernels/sampler.cu) linked into a second
# kernel_bench; then, in order of priority within DEADLINE seconds: the sampler checks, kernel_bench sampler new and
# old (twice, alternating, for noise), the decode-step graph checks, then build-time variants of the new sampler
# (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u"): kernel_bench sampler and the sampler checks against each.
# Logs in $OUT; a summary last.
cd "$(dirname "$0")/../.."
AB_DIR=/tmp/topk AB_OLD=${OLD_SAMPLER:-} DEADLINE=${DEADLINE:-210} . tests/gpu/ab-build.sh
ab_build kernels/sampler.cu
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
