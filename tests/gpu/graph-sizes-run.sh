#!/usr/bin/env bash
# graph-sizes-run.sh — does a decode graph sized for the sequence pay (Step1Model.DecodeGraphSizes; kernels/NOTES.md,
# session 12)? Times the folded 4-bit decode step with one cache-sized graph (STEPAUDIO_BENCH_GRAPH_SIZES=0) and
# with others (SIZES="0 64,512": the session 13 A/B), alternating, at 64 keys (the 64-size graph: one split, no
# combine kernel) and 300 keys (a 512-size graph: 8 splits instead of 33). Also prints the back-to-back replay figure.
# On the GPU machine: bash tests/gpu/graph-sizes-run.sh   (builds kernel_bench into build/ unless it is there)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
if [ ! -x build/kernel_bench ]; then
  { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
    cmake --build build -j 16 --target kernel_bench; } > "$out/graph-sizes-build.log" 2>&1 ||
    { tail -20 "$out/graph-sizes-build.log"; exit 2; }
fi
nvidia-smi --query-gpu=name --format=csv,noheader
for r in ${REPEATS:-1 2}; do
  for sizes in ${SIZES:-0 64,512}; do
    echo "== run $r, graph sizes $sizes"
    STEPAUDIO_BENCH_GRAPH_SIZES=$sizes STEPAUDIO_BENCH_CONTEXTS=${CONTEXTS:-64,300} timeout 80 build/kernel_bench decode w4a16 nf4 2>&1 |
      tee -a "$out/graph-sizes.txt" | grep -E "folded|back to back" | cut -c1-120
  done
done
