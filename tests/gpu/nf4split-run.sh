#!/usr/bin/env bash
# nf4split-run.sh — one GPU-machine call, prepared in session 20 and not yet run: the NF4 decode kernels with each unit
# of a pair multiplied as two MMA chains of two steps (SA_NF4_SPLIT_CHAINS=1, kernels/linear_nf4.cu): four independent
# chains per pair instead of two, for the "wait" stalls Nsight Compute found (kernels/NOTES_QUANT.md, session 20).
# ptxas (sm_80, nvcc 11.8): no spills. The NF4 native checks with the variant first (unrun code), then nf4_bench at
# M = 1 and 8 and the NF4 decode step, main and variant, twice. Can follow w4lag-run.sh in the same call (its own
# AB_DIR). DEADLINE (default 300 s).
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/nf4split DEADLINE=${DEADLINE:-300} VARIANTS="split:-DSA_NF4_SPLIT_CHAINS=1" . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu
cat "$out/build.txt"; grep -E "nf4_gemv" "$out/ptxas.txt" | cut -c1-160 | head -12
run "native nf4 checks, split" 90 sh -c "$b/native_kernel_tests_split nf4 | grep -E '^native:|FAIL'"
nf4="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1,8 NF4_BENCH_SHAPES=16384x3072,8192x3072,3584x3072,3072x3072,3072x8192"
for v in "" _split "" _split; do run "nf4_bench${v:-, main}" 40 $nf4 $b/nf4_bench$v; done
for v in "" _split "" _split; do run "decode${v:-, main}" 40 $b/kernel_bench$v decode nf4; done
grep -E "^==|^rc [1-9]|gemv M=|FAIL|native:|ms/token" "$out/runs.txt" | cut -c1-160 | tail -80
