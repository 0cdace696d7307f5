#!/usr/bin/env bash
# w4fast-run.sh — one GPU-machine call for the W4A16 decode kernel (kernels/linear_w4a16.cu) inside a short device
# budget: a quick per-file sm_90a build in parallel (plus the sm_80 half of the W4A16 kernel, to see it compiles),
# the old kernel file of OLD_TREE (a checkout or a copy of main's kernels/: OLD_TREE/kernels/linear_w4a16.cu) and
# build-time variants of the new one (VARIANTS="name:-DKNOB=v name2:-DKNOB=w,-DKNOB2=u", knobs of linear_w4a16.cu) linked
# into w4a16_bench; then, in order of priority within DEADLINE seconds: w4a16_bench new (checks, shape sweep with
# cuBLAS, stack), old, the decode step (kernel_bench decode w4a16 w4a16-awq) new and old, the native kernel checks,
# the variants' benches, and the old / new benches once more (noise). Logs in $OUT; a summary last.
cd "$(dirname "$0")/../.."
AB_DIR=/tmp/w4 AB_OLD=${OLD_TREE:+$OLD_TREE/kernels/linear_w4a16.cu} . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu -- "sm80:-arch=sm_80"
quick="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1"
run "w4a16_bench new (checks, cuBLAS)" 70 $b/w4a16_bench
[ -n "$old" ] && run "w4a16_bench old" 30 $quick $b/w4a16_bench_old
run "decode step new" 25 $b/kernel_bench decode w4a16 w4a16-awq
[ -n "$old" ] && run "decode step old" 25 $b/kernel_bench_old decode w4a16 w4a16-awq
timeout $(left 60) $b/native_kernel_tests > "$out/native-tests.txt" 2>&1; echo "native tests rc $? at $(el) s" >> "$out/runs.txt"
for v in $variants; do
  run "w4a16_bench variant ${v%%:*} (${v#*:})" 25 $quick $b/w4a16_bench_${v%%:*}
  run "decode step variant ${v%%:*}" 20 $b/kernel_bench_${v%%:*} decode w4a16 w4a16-awq
done
run "w4a16_bench new (again, for noise)" 25 $quick $b/w4a16_bench
run "decode step new (again)" 20 $b/kernel_bench decode w4a16 w4a16-awq
[ -n "$old" ] && run "w4a16_bench old (again)" 25 $quick $b/w4a16_bench_old
[ -n "$old" ] && run "decode step old (again)" 20 $b/kernel_bench_old decode w4a16 w4a16-awq
for v in $variants; do  # the W4A16 checks against each variant's kernel
  run "native W4A16 checks, variant ${v%%:*}" 40 sh -c "$b/native_kernel_tests_${v%%:*} w4a16 | grep -E '^native:|FAIL'"
done
echo "done at $(el) s" >> "$out/runs.txt"
echo "==== summary"
cat "$out/build.txt" | head -40
grep -E "^\[FAIL\]|^native:|passed" "$out/native-tests.txt" | head -20
grep -E "^==|^rc|checks:|M= 1 |M=16|decode step w4a16 |w4a16 \+|cublas bf16  |skipped|done|FAIL|^native" "$out/runs.txt" | cut -c1-150
sed -nE 's/.*(w4a16_[a-z]+I[^E]*E[^E]*E[^E]*E[^E]*E)[^ ]*.*for .(sm_[0-9a]+).*(Used [0-9]+).*/\2 \1 \3/p; s/.*(w4a16_[a-z]+I[^E]*E[^E]*E[^E]*E[^E]*E)[^ ]*.*for .(sm_[0-9a]+).* ([0-9]+ bytes spill stores).*/\2 \1 \3/p' "$out/ptxas.txt" | grep -v " 0 bytes" | head -60
