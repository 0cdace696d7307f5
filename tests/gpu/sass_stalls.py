#!/usr/bin/env python3
"""sass_stalls.py CSV [TOP] — digest Nsight Compute's `--page source --print-source sass --csv` output of one kernel:
the instructions where warps were sampled most often (with each instruction's sampled stall reasons where the CSV has
them) and the samples summed per opcode. Which column holds what differs between ncu versions, so columns are found by
name: the first whose name contains "Warp Stall Sampling (All", the source text "Source", and every column whose name
starts with "stall_" (per-reason samples)."""
import collections
import csv
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ncu_metrics import number  # noqa: E402  (the same number parsing as the raw-metrics digest)


rows = list(csv.reader(open(sys.argv[1], newline="")))
top = int(sys.argv[2]) if len(sys.argv) > 2 else 40
head_i = next((i for i, r in enumerate(rows) if "Source" in r), None)
if head_i is None:
    print("no header with a Source column; first lines:")
    for r in rows[:5]:
        print("  ", r[:8])
    sys.exit()
head, body = rows[head_i], [r for r in rows[head_i + 1:] if len(r) == len(rows[head_i])]
src = head.index("Source")
samp = next((i for i, n in enumerate(head) if "Warp Stall Sampling (All" in n), None)
if samp is None:
    print("no stall-sampling column; columns:", head)
    sys.exit()
reasons = [i for i, n in enumerate(head) if n.startswith("stall_")]
total = sum(number(r[samp]) for r in body) or 1.0
print(f"{len(body)} SASS lines, {total:.0f} samples; columns used: {head[samp]!r}, {len(reasons)} reason columns")
print(f"top {top} instructions by samples (% of all):")
for r in sorted(body, key=lambda r: -number(r[samp]))[:top]:
    why = sorted(((number(r[i]), head[i][6:]) for i in reasons), reverse=True)[:3]
    why_s = " ".join(f"{n}:{v:.0f}" for v, n in why if v > 0)
    print(f"  {100 * number(r[samp]) / total:5.1f}%  {r[src].strip()[:70]:70s} {why_s}")
per_op = collections.Counter()
for r in body:
    op = r[src].strip().split(" ")[0] if r[src].strip() else "?"
    if op.startswith("@"):
        op = r[src].strip().split(" ")[1]
    per_op[op.split(".")[0]] += number(r[samp])
print("samples per opcode:", ", ".join(f"{op} {100 * v / total:.1f}%" for op, v in per_op.most_common(14)))
if reasons:
    sums = sorted(((sum(number(r[i]) for r in body), head[i][6:]) for i in reasons), reverse=True)
    print("samples per reason:", ", ".join(f"{n} {100 * v / total:.1f}%" for v, n in sums[:10] if v > 0))
