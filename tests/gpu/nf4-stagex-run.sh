#!/usr/bin/env bash
# nf4-stagex-run.sh — one GPU-machine call (session 21): NF4 with x staged in shared memory per warp
# (SA_NF4_STAGE_X=1, kernels/linear_nf4.cu; one token tile with m·K·2 <= 16 KB) against main, after the ablation
# that took the x loads out (tests/gpu/nf4-multiply-run.sh: down -25%, gate_up -8%, qkv / o -14%).
# The variant's NF4 native checks and nf4_bench checks first (unrun code), then nf4_bench at M = 1, 2 and 8 and the
# NF4 decode step, main and variant, twice each. DEADLINE (default 240 s). Nothing to carry without MODEL=1.
# MODEL=1 (carry .carry/bundle, from tests/gpu/prepare-bundle.sh): then the model with x staged (model-run.sh with
# CUDA_FLAGS=-DSA_NF4_STAGE_X=1, MODEL_DEADLINE s, default 200: NF4 decode tok/s and seed form first), its logs packed
# into $OUT/model-stagex.tgz. Main's model figures to compare with: the last session's on the same GPU (BENCHMARKS.md).
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/sxab DEADLINE=${DEADLINE:-240} VARIANTS="stagex:-DSA_NF4_STAGE_X=1" . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu
cat "$out/build.txt"; grep -E "nf4_gemv.*ILi1" "$out/ptxas.txt" | cut -c1-160 | head -12
run "native nf4 checks, stagex" 90 sh -c "$b/native_kernel_tests_stagex nf4 | grep -E '^native:|FAIL'"
run "nf4_bench checks, stagex" 60 sh -c "NF4_BENCH_M=1,2,8 $b/nf4_bench_stagex | grep -iE 'check|FAIL' | tail -4"
nf4="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1,2,8 NF4_BENCH_SHAPES=16384x3072,8192x3072,3584x3072,3072x3072,3072x8192"
for v in "" _stagex "" _stagex; do run "nf4_bench${v:-, main}" 40 $nf4 $b/nf4_bench$v; done
for v in "" _stagex "" _stagex; do run "decode${v:-, main}" 40 $b/kernel_bench$v decode nf4; done
grep -E "^==|^rc [1-9]|gemv M=|FAIL|native:|check|ms/token" "$out/runs.txt" | cut -c1-120 | tail -90
if [ "${MODEL:-0}" = 1 ]; then
  (CUDA_FLAGS=-DSA_NF4_STAGE_X=1 OUT=/tmp/model-sx DEADLINE=${MODEL_DEADLINE:-200} bash tests/gpu/model-run.sh \
     > /tmp/model-sx.txt 2>&1)
  tar -czf "$out/model-stagex.tgz" /tmp/model-sx /tmp/model-sx.txt 2>/dev/null
  echo "### the model, x staged"; sed -n '/summary/,$p' /tmp/model-sx.txt; grep -E "skipped|failed" /tmp/model-sx.txt
fi
