#!/usr/bin/env bash
# skinny-wg-run.sh — one GPU-machine call (session 18): the skinny wgmma kernel (quant_skinny_wg, engine 3 of
# kernels/linear_quant_prefill.cu) at M = 1..16 against the decode kernels and cuBLAS bf16.
#   1. quant_prefill_bench checks (every entry-point check, forced mma.sync / wgmma / skinny-wgmma checks);
#   2. quant_prefill_bench skinny (Step1's linears, lm_head and 8192^2 at M = 1, 4, 8, 12, 16; split sweep to the log).
# Nothing to carry. Logs: $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=/tmp/skwg-logs; rm -rf "$out"; mkdir -p "$out"
pack() { [ -n "${OUT:-}" ] && tar -czf "$OUT/logs.tgz" -C /tmp skwg-logs; }
trap pack EXIT
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
b=/tmp/skwgb; rm -rf $b; mkdir -p $b
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -DSA_HAVE_WGMMA=1 -Xcompiler -fopenmp -Inative/include -Inative/src -Ikernels -Itests/native -arch=sm_90a"
pids=()
for f in tests/native/quant_prefill_bench.cu kernels/linear_quant_prefill.cu kernels/linear_w4a16.cu kernels/linear_nf4.cu \
         native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp native/src/api.cpp; do
  nvcc $fl -Xptxas=-v -c "$f" -o "$b/$(basename "$f").o" > "$b/$(basename "$f").log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
cp $b/*.log "$out/"
grep -hE "error" -A3 $b/*.log | head -30
grep -A2 "quant_skinny_wg" $b/linear_quant_prefill.cu.log | grep -E "registers|spill" | head -12
grep -ihE "wgmma|serializ" $b/linear_quant_prefill.cu.log | cut -c1-200 | head -3
nvcc -arch=sm_90a -Xcompiler -fopenmp $b/*.o -lcublas -o $b/quant_prefill_bench > $b/link.log 2>&1 || { head $b/link.log; exit 1; }
# A second build with SA_SKINNY_WAIT=0: every group's wgmmas drained before the next group's dequantization.
nvcc $fl -Xptxas=-v -DSA_SKINNY_WAIT=0 -c kernels/linear_quant_prefill.cu -o $b/lqp_wait0.o > "$out/lqp_wait0.log" 2>&1
nvcc -arch=sm_90a -Xcompiler -fopenmp $(ls $b/*.o | grep -v -e linear_quant_prefill.cu.o -e lqp_wait0) $b/lqp_wait0.o -lcublas \
  -o $b/quant_prefill_bench_w0 >> $b/link.log 2>&1 || { head $b/link.log; exit 1; }
echo "C7513 warnings: wait 1 $(grep -c C7513 $b/linear_quant_prefill.cu.log), wait 0 $(grep -c C7513 $out/lqp_wait0.log)"
echo "built at $(el) s"
if [ -n "${NCU:-}" ]; then  # NCU=1: Nsight Compute on one W4A16 lm_head launch at M = 1 (split 1, 24 groups a block)
  rep=/tmp/skwg-ncu
  SKINNY_ONLY=lm_head timeout 240 ncu --clock-control none --set full --import-source no --kernel-name-base mangled \
    --kernel-name regex:quant_skinny_wgILi${NCU_FMT:-0}ELi8 --launch-skip 3 --launch-count 1 -f -o $rep \
    $b/quant_prefill_bench skinny /dev/null > "$out/ncu-run.txt" 2>&1
  echo "ncu rc $? at $(el) s"; tail -3 "$out/ncu-run.txt"
  ncu -i $rep.ncu-rep --page details > "$out/ncu-details.txt" 2>&1
  ncu -i $rep.ncu-rep --page raw --csv > "$out/ncu-raw.csv" 2>&1
  ncu -i $rep.ncu-rep --page source --print-source sass,cuda --csv > "$out/ncu-sass.csv" 2>&1
  grep -E "Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Issue Slots Busy|No Eligible|Active Warps Per" "$out/ncu-details.txt" | head -20
  python3 - "$out/ncu-raw.csv" "$out/ncu-sass.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
if len(rows) >= 3:
    names, vals = rows[0], rows[-1]
    pick = [(n, v) for n, v in zip(names, vals) if n.startswith("smsp__average_warps_issue_stalled_") and n.endswith("_per_issue_active.ratio")]
    for n, v in sorted(pick, key=lambda p: -float(p[1].replace(",", "") or 0))[:10]:
        print(f"  stall {n[len('smsp__average_warps_issue_stalled_'):-len('_per_issue_active.ratio')]:28s} {v}")
try:
    rows = list(csv.reader(open(sys.argv[2])))
    hdr = next(i for i, r in enumerate(rows) if any("Warp Stall Sampling (All" in c for c in r))
    h = rows[hdr]; si = next(i for i, c in enumerate(h) if "Warp Stall Sampling (All" in c)
    src = next((i for i, c in enumerate(h) if c == "Source"), 1)
    body = [r for r in rows[hdr + 1:] if len(r) > si and r[si].replace(",", "").isdigit()]
    tot = sum(int(r[si].replace(",", "")) for r in body) or 1
    for r in sorted(body, key=lambda r: -int(r[si].replace(",", "")))[:16]:
        print(f"  {100*int(r[si].replace(',', ''))/tot:5.1f}%  {r[src][:110]}")
except Exception as e:
    print("sass parse:", e)
PY
  exit 0
fi
timeout 240 $b/quant_prefill_bench checks > "$out/checks.txt" 2>&1; rc=$?
echo "checks rc $rc at $(el) s; tail:"; tail -3 "$out/checks.txt"
grep -E "FAIL" -A3 "$out/checks.txt" | head -40
[ $rc -ne 0 ] && [ -z "${BENCH_ANYWAY:-}" ] && exit 1
timeout 240 $b/quant_prefill_bench skinny "$out/sweep.txt" > "$out/skinny.txt" 2>&1
echo "skinny rc $? at $(el) s"; grep -vE "^\s*$" "$out/skinny.txt" | cut -c1-120 | grep -E "^(fmt| *[a-z0-9]+ +[a-z_0-9]+ +(1|8|16) \|)" | tail -40
timeout 120 $b/quant_prefill_bench_w0 checks > "$out/checks_w0.txt" 2>&1; echo "wait0 checks rc $?"; tail -1 "$out/checks_w0.txt"
timeout 240 $b/quant_prefill_bench_w0 skinny "$out/sweep_w0.txt" > "$out/skinny_w0.txt" 2>&1
echo "wait0 skinny rc $?"; grep -vE "^\s*$" "$out/skinny_w0.txt" | cut -c1-120 | grep -E "^(fmt| *[a-z0-9]+ +[a-z_0-9]+ +(1|8|16) \|)" | tail -40
