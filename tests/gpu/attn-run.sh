#!/usr/bin/env bash
# attn-run.sh — one GPU-machine call for the decode attention (kernels/attention.cu) inside a short device budget:
# a per-file sm_90a build in parallel, plus the old attention.cu of OLD_TREE (a copy of main's kernels/:
# OLD_TREE/kernels/attention.cu) linked into kernel_bench_old; then, in order of priority within DEADLINE seconds:
# the attention and decode-graph native checks, `kernel_bench ablate w4a16 attention` (the W4A16 step at context 64
# with and without attention) new and old, `kernel_bench attention` new and old, build-time variants of the new
# kernel (VARIANTS="name:-DKNOB=v,-DKNOB2=w ...": their attention checks, ablation and attention table), the new
# kernel at other STEPAUDIO_ATTN_MIN_TILES (SWEEP="1 4"), and new / old once more (noise). Logs in $OUT; a summary
# last.
cd "$(dirname "$0")/../.."
AB_DIR=/tmp/attnb AB_OLD=${OLD_TREE:+$OLD_TREE/kernels/attention.cu} . tests/gpu/ab-build.sh
sweep=${SWEEP:-}
ab_build kernels/attention.cu
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
