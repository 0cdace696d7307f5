#!/usr/bin/env bash
# skinny-profile.sh — one GPU-machine call (or the tail of one): why do the 4-bit linears slow down from M = 8 to
# M = 12 (one 8-token MMA tile -> two)? Nsight Compute on one launch each of the NF4 and W4A16 kernels at Step1's
# gate_up (16384 x 3072: the persistent streaming kernels) and down (3072 x 8192: the one-tile-per-block kernels),
# M = 1, 8, 12, 16, with the sections that tell which pipe or stall bounds them (shared-memory / L1 wavefronts, LSU,
# tensor pipe, issue, stall reasons). Prints one table; packs each launch's details page and raw metrics into $OUT/skinny-logs.tgz.
#   Uses $AB_DIR/{nf4_bench,w4a16_bench} when an earlier script of the same call built them (tests/gpu/ab-build.sh),
#   else builds them. SHAPES (default "gate_up down"), MS (default "1 8 12 16"). Nothing to carry.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
command -v ncu > /dev/null || { echo "ncu is not on this machine's PATH"; exit 2; }
if [ ! -x "${AB_DIR:-/tmp/ab}/nf4_bench" ] || [ ! -x "${AB_DIR:-/tmp/ab}/w4a16_bench" ]; then
  DEADLINE=300 . tests/gpu/ab-build.sh
  ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu tests/native/w4a16_bench.cu
  cat "$out/build.txt"
fi
b=${AB_DIR:-/tmp/ab}
mkdir -p /tmp/skinny-logs  # the details pages, raw CSVs and ncu logs, packed into one file at the end (the device
                           # tool returns at most 8 files)
declare -A nf4_shape=([gate_up]=16384x3072 [down]=3072x8192) w4_shape=([gate_up]=16384:3072 [down]=3072:8192)
sections="--section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis --section WarpStateStats --section InstructionStats --section Occupancy --section LaunchStats"
for shape in ${SHAPES:-gate_up down}; do
  for m in ${MS:-1 8 12 16}; do
    for fmt in nf4 w4a16; do
      name=$fmt-$shape-m$m rep=/tmp/skinny-$fmt-$shape-m$m
      if [ $fmt = nf4 ]; then
        prog="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=$m NF4_BENCH_SHAPES=${nf4_shape[$shape]} $b/nf4_bench"
        regex='nf4_gemv'
      else
        prog="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=$m W4A16_BENCH_SHAPES=${w4_shape[$shape]} $b/w4a16_bench"
        regex='w4a16_(stream|skinny|wide)'
      fi
      timeout 120 ncu --clock-control none $sections --kernel-name-base mangled --kernel-name "regex:$regex" \
        --launch-skip 3 --launch-count 1 -f -o $rep $prog > "/tmp/skinny-logs/ncu-run-$name.txt" 2>&1
      echo "== $name (ncu rc $?)"
      ncu -i $rep.ncu-rep --page details > "/tmp/skinny-logs/$name-details.txt" 2>&1
      ncu -i $rep.ncu-rep --page raw --csv --print-units base > "/tmp/skinny-$name-raw.csv" 2>&1
      cp "/tmp/skinny-$name-raw.csv" /tmp/skinny-logs/ 2>/dev/null
    done
  done
done
# One row per launch: time, DRAM %, L1 % (throughput, hit rate, bytes read from L2), shared-memory wavefronts and LSU instructions per KB of packed weight, tensor
# pipe %, issue active %, warps per scheduler, and the three largest stall reasons (cycles per issued instruction).
python3 - "$out" ${SHAPES:-gate_up down} -- ${MS:-1 8 12 16} <<'PY' | tee "$out/skinny-table.txt"
import csv, sys, os
out = sys.argv[1]; args = sys.argv[2:]; cut = args.index("--"); shapes, ms = args[:cut], args[cut + 1:]
packed = {"gate_up": 16384 * 3072 / 2 / 1024, "down": 3072 * 8192 / 2 / 1024}  # KB of codes
def load(path):
    try:
        rows = list(csv.reader(open(path)))
    except OSError:
        return {}
    hdr = next((i for i, r in enumerate(rows) if r and r[0] == "ID"), None)
    if hdr is None or len(rows) < hdr + 3: return {}
    return dict(zip(rows[hdr], rows[-1]))
def num(d, key):
    v = d.get(key, "").replace(",", "")
    try: return float(v)
    except ValueError: return None
def fmt(v, p=1): return "-" if v is None else f"{v:.{p}f}"
print("| launch | kernel | µs | DRAM % | L1 % | L1 hit % | L2 → L1 MB | smem wavefronts / KB | LSU inst / KB | tensor % | issue % | warps/sched | top stalls |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for shape in shapes:
    for m in ms:
        for f in ("nf4", "w4a16"):
            d = load(f"/tmp/skinny-{f}-{shape}-m{m}-raw.csv")
            if not d: print(f"| {f} {shape} M={m} | (no profile) |"); continue
            kb = packed[shape]
            stalls = sorted(((num(d, k) or 0, k[len("smsp__average_warps_issue_stalled_"):-len("_per_issue_active.ratio")])
                             for k in d if k.startswith("smsp__average_warps_issue_stalled_") and k.endswith("_per_issue_active.ratio")), reverse=True)[:3]
            t = num(d, "gpu__time_duration.sum")  # ns (--print-units base)
            wf = num(d, "l1tex__data_pipe_lsu_wavefronts_mem_shared.sum")
            lsu = num(d, "sm__inst_executed_pipe_lsu.sum") or num(d, "smsp__inst_executed_pipe_lsu.sum")
            print(f"| {f} {shape} M={m} | {d.get('Kernel Name', '?')[:40]} | {fmt(t / 1e3 if t else None, 2)} | "
                  f"{fmt(num(d, 'dram__throughput.avg.pct_of_peak_sustained_elapsed'))} | "
                  f"{fmt(num(d, 'l1tex__throughput.avg.pct_of_peak_sustained_active'))} | "
                  f"{fmt(num(d, 'l1tex__t_sector_hit_rate.pct'))} | "
                  f"{fmt((num(d, 'lts__t_sectors_srcunit_tex_op_read.sum') or 0) * 32 / 1e6)} | "
                  f"{fmt(wf / kb if wf else None, 0)} | {fmt(lsu / kb if lsu else None, 0)} | "
                  f"{fmt(num(d, 'sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active'))} | "
                  f"{fmt(num(d, 'smsp__issue_active.avg.pct_of_peak_sustained_active'))} | "
                  f"{fmt(num(d, 'smsp__warps_active.avg.per_cycle_active'), 2)} | "
                  + ", ".join(f"{n} {v:.2f}" for v, n in stalls) + " |")
PY
tar -czf "$out/skinny-logs.tgz" -C /tmp skinny-logs
