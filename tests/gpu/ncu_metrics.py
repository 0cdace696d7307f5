#!/usr/bin/env python3
"""ncu_metrics.py RAW_CSV — digest Nsight Compute's `--page raw --csv` output of one launch: the warp stall reasons
(cycles per issued instruction, largest first) and the headline counters (time, DRAM, issue rate, occupancy, the
pipes). Used by profile-deep.sh and nf4-barrier-run.sh; sass_stalls.py does the per-instruction view."""
import csv
import sys

HEADLINE = (
    "gpu__time_duration.sum", "dram__bytes_read.sum", "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "smsp__issue_active.avg.pct_of_peak_sustained_active", "smsp__inst_executed.sum",
    "smsp__warps_eligible.avg.per_cycle_active", "sm__warps_active.avg.pct_of_peak_sustained_active",
    "l1tex__t_sector_hit_rate.pct", "sm__inst_executed_pipe_alu.sum", "sm__inst_executed_pipe_fma.sum",
    "sm__inst_executed_pipe_lsu.sum", "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_alu_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_fma_cycles_active.avg.pct_of_peak_sustained_active")
STALL, PER_ISSUE = "smsp__average_warps_issue_stalled_", "_per_issue_active.ratio"


def number(v):
    try:
        return float(v.replace(",", ""))
    except ValueError:
        return 0.0


def main(path):
    rows = list(csv.reader(open(path, newline="")))
    if len(rows) < 3:
        print("no raw metrics")
        return
    names, vals = rows[0], rows[-1]
    stalls = [(n[len(STALL):-len(PER_ISSUE)], v) for n, v in zip(names, vals) if n.startswith(STALL) and n.endswith(PER_ISSUE)]
    for n, v in sorted(stalls, key=lambda p: -number(p[1]))[:12]:
        print(f"  stall {n:28s} {v}")
    for n, v in zip(names, vals):
        if n in HEADLINE:
            print(f"  {n:64s} {v}")


if __name__ == "__main__":
    main(sys.argv[1])
