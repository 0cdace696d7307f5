#!/usr/bin/env bash
# nf4ring-run.sh — one GPU-machine call for the NF4 decode kernel (kernels/linear_nf4.cu) inside a short device budget:
# a per-file sm_90a build in parallel (plus the sm_80 half of the NF4 kernel, to see it compiles), the old kernel file
# of OLD_TREE (a copy of main's kernels/: OLD_TREE/kernels/linear_nf4.cu) and build-time variants of the new one
# (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u", knobs of linear_nf4.cu) linked into nf4_bench and kernel_bench;
# then, in order of priority within DEADLINE seconds: nf4_bench new (checks, M = NF4_M), old, the decode step
# (kernel_bench decode nf4) new and old, the native kernel checks (TESTS_FILTER), the variants, and new / old once
# more (noise), the NF4 native checks against each variant. Logs in $OUT; a summary last.
cd "$(dirname "$0")/../.."
AB_DIR=/tmp/nf4r AB_OLD=${OLD_TREE:+$OLD_TREE/kernels/linear_nf4.cu} . tests/gpu/ab-build.sh
nf4m=${NF4_M:-1,16}; filter=${TESTS_FILTER:-}
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu -- "sm80:-arch=sm_80"
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
