#!/usr/bin/env bash
# rows-ablate-run.sh — the second call of session 27 on W4A16 v10 (w4a16_rows): rows-run.sh found it only even with
# the ring kernel at 9–16 tokens. What holds it? Timing ablations (SA_W4A16_ROWS_ABLATE, wrong results by design):
# nostage (x not staged: the staging's place on the critical path), nomma (no MMA: the ring, the x reads and the
# epilogue only); and two correct variants with 2 / 4 independent partial-sum chains per token tile (c2, c4: is
# the 8-deep MMA chain per step the limit?). w4a16_bench at M = 12, 16 on gate_up and lm_head against main (the ring
# kernel), main twice; the W4A16 native checks of c2 and c4. DEADLINE (default 240 s). Nothing to carry.
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/rowsab DEADLINE=${DEADLINE:-240} \
  VARIANTS="rows:-DSA_W4A16_ROWS=1 c2:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_CHAINS=2 c4:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_CHAINS=4 nostage:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_ABLATE=1 nomma:-DSA_W4A16_ROWS=1,-DSA_W4A16_ROWS_ABLATE=2" \
  . tests/gpu/ab-build.sh
ab_build kernels/linear_w4a16.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "w4a16_rowsILb0" "$out/ptxas.txt" | cut -c100-230 | head -8
bench="env W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 W4A16_BENCH_M=12,16 W4A16_BENCH_SHAPES=16384:3072,74752:3072"
run "w4a16_bench main" 30 $bench $b/w4a16_bench
for v in rows c2 c4 nostage nomma; do run "w4a16_bench $v" 30 $bench $b/w4a16_bench_$v; done
run "w4a16_bench main, again" 30 $bench $b/w4a16_bench
run "w4a16_bench rows, again" 30 $bench $b/w4a16_bench_rows
run "W4A16 native checks, c2" 60 sh -c "$b/native_kernel_tests_c2 w4a16 | grep -E '^native:|FAIL'"
run "W4A16 native checks, c4" 60 sh -c "$b/native_kernel_tests_c4 w4a16 | grep -E '^native:|FAIL'"
grep -E "^==|^rc [1-9]|M=1[26]|FAIL|native:|skipped" "$out/runs.txt" | sed -E 's/ \| cublas.*//' | cut -c1-120 | head -60
