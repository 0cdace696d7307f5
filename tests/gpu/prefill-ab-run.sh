#!/usr/bin/env bash
# prefill-ab-run.sh — one GPU-machine call: this tree's kernels/linear_quant_prefill.cu against an older copy of it
# (a refactor that should change nothing), then, with MODEL=1, the model on this tree (model-run.sh).
#   1. quant_prefill_bench checks with this tree's file (every entry-point check, every forced shape, the wgmma ones);
#   2. `quant_prefill_bench entry` (the entry point and cuBLAS at M = 17..1000 on the Step1 shapes), new and old
#      alternating (which goes first alternates too), ROUNDS times each (default 2), then per row the mean of each and the change in %;
#   3. MODEL=1 (carry .carry/bundle): tests/gpu/model-run.sh with MODEL_DEADLINE s (default 300).
# Prepare here: mkdir -p scratch && git show BASE:kernels/linear_quant_prefill.cu > scratch/lqp_old.cu (untracked,
# never committed). DEADLINE (default 150 s) for steps 1-2. Logs: $OUT/runs.txt, $OUT/model.tgz.
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
[ -f scratch/lqp_old.cu ] || { echo "scratch/lqp_old.cu is missing (see the header)"; exit 2; }
AB_DIR=/tmp/qpab AB_OLD=scratch/lqp_old.cu DEADLINE=${DEADLINE:-150} . tests/gpu/ab-build.sh
ab_build kernels/linear_quant_prefill.cu tests/native/quant_prefill_bench.cu
cat "$out/build.txt"; grep -E "quant_prefill" "$out/ptxas.txt" | cut -c1-150 | head -30
run "quant_prefill_bench checks, new" 90 sh -c "$b/quant_prefill_bench checks | grep -E 'checks:|FAIL'"
for i in $(seq "${ROUNDS:-2}"); do  # new first in odd rounds, old first in even ones
  order="new old"; [ $((i % 2)) = 0 ] && order="old new"
  for v in $order; do
    if [ $v = new ]; then run "entry, new" 40 $b/quant_prefill_bench entry /dev/null
    else run "entry_old" 40 $b/quant_prefill_bench_old entry /dev/null; fi
  done
done
grep -E "^==|^rc [1-9]|checks:|FAIL" "$out/runs.txt"
# The entry point's µs per (format, shape, M): the mean of the new and of the old runs, and new vs old.
awk '/^== entry, new/ { side = "new" } /^== entry_old/ { side = "old" } /^(w4|nf4) / && side {
       key = $1 " " $2 " " $3; if (!(key in seen)) { seen[key]; order[++n] = key } sum[key, side] += $7; cnt[key, side]++ }
     END { printf "%-16s %9s %9s %7s\n", "fmt shape M", "new us", "old us", "change";
           for (i = 1; i <= n; i++) { k = order[i]; a = sum[k, "new"] / cnt[k, "new"]; o = sum[k, "old"] / cnt[k, "old"];
             printf "%-16s %9.2f %9.2f %+6.1f%%\n", k, a, o, (a - o) / o * 100 } }' "$out/runs.txt"
if [ "${MODEL:-0}" = 1 ]; then
  (OUT=/tmp/model-out DEADLINE=${MODEL_DEADLINE:-300} bash tests/gpu/model-run.sh > /tmp/model-out.txt 2>&1)
  tar -czf "$out/model.tgz" -C /tmp model-out model-out.txt 2>/dev/null
  echo "### the model on this tree"; sed -n '/summary/,$p' /tmp/model-out.txt; grep -E "skipped|failed" /tmp/model-out.txt
fi
