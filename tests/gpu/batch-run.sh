#!/usr/bin/env bash
# batch-run.sh — one GPU-machine call (session 30): what batched decoding would give with today's kernels.
# `kernel_bench batch` times the folded decode step for 1–16 independent sequences in lockstep (the linears at
# M = sequences, attention and the sampler per sequence on forked graph branches; tests/native/kernel_bench.cpp,
# StepShape::sequences) for bf16, W4A16 and NF4, at 64 and 1024 keys per sequence; `kernel_bench decode` beside it
# checks the one-sequence row against the decode step. Nothing to carry. Logs: $OUT/batch.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/batch.txt"
if ! { cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
       cmake --build build -j "$(nproc)" --target kernel_bench; } > "$out/build.log" 2>&1; then
  grep -E "error" "$out/build.log" | head -30; echo "CUDA build failed"; exit 1
fi
STEPAUDIO_BENCH_CONTEXTS=64 timeout 60 build/kernel_bench decode bf16 w4a16 nf4 2>&1 | grep -E "folded|error" >> "$out/batch.txt"
STEPAUDIO_BENCH_CONTEXTS=64,1024 timeout 240 build/kernel_bench batch bf16 w4a16 nf4 >> "$out/batch.txt" 2>&1
echo "rc $?" >> "$out/batch.txt"
grep -E "decode step|batch step|error|rc " "$out/batch.txt" | cut -c1-150
