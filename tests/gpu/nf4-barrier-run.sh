#!/usr/bin/env bash
# nf4-barrier-run.sh — one GPU-machine call for session 20's question: what keeps the NF4 streaming kernel
# (nf4_gemv_stream: gate_up, qkv, o) at ~60% of copy, when session 13 found a shared-memory ring limited by its
# per-tile block barrier? Timing ablations of kernels/linear_nf4.cu (SA_NF4_ABLATE, wrong results by design):
#   nobar (1): no tile-end block barrier; nored (2): no barrier, no reduction / store; nomath (3): no multiply (the
#   ring, scales and barriers only); slots3: three ring slots per warp (session 3 on the H100: 5% slower on gate_up).
# And the candidate that follows from it: lagged (SA_NF4_STREAM_LAGGED=1, one token tile: no block barrier per tile,
# the reduction one tile behind through mbarriers), checked (native_kernel_tests nf4) and timed.
# Then Nsight Compute on main's nf4_gemv_stream (gate_up, M = 1): stall reasons and the SASS lines where warps wait.
# Measured on the tree of commit 674a292 (kernels/NOTES_QUANT.md, session 20); the lagged variant there warps 0-3
# reduced, since replaced by the rotating form (SA_NF4_STREAM_LAGGED=1 is now the default).
# DEADLINE (default 480 s). Nothing to carry. On the device: bash tests/gpu/nf4-barrier-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/nbab DEADLINE=${DEADLINE:-480} \
  VARIANTS="lagged:-DSA_NF4_STREAM_LAGGED=1 nobar:-DSA_NF4_ABLATE=1 nored:-DSA_NF4_ABLATE=2 nomath:-DSA_NF4_ABLATE=3 slots3:-DSA_NF4_RING_SLOTS=3" \
  . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu tests/native/w4a16_bench.cu
cat "$out/build.txt"; grep -E "nf4_gemv_stream" "$out/ptxas.txt" | cut -c1-160 | head -12
bench="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1 NF4_BENCH_SHAPES=16384x3072,8192x3072,3584x3072,3072x3072,3072x8192"
run "nf4_bench main" 40 $bench $b/nf4_bench
for v in lagged nobar nored nomath slots3; do run "nf4_bench $v" 40 $bench $b/nf4_bench_$v; done
run "nf4 checks lagged" 60 $b/native_kernel_tests_lagged nf4
run "nf4_bench main, again" 40 $bench $b/nf4_bench
run "w4a16_bench gate_up (reference)" 40 env W4A16_BENCH_M=1 W4A16_BENCH_NO_CHECKS=1 W4A16_BENCH_NO_CUBLAS=1 \
  W4A16_BENCH_SHAPES=16384:3072,3584:3072,3072:3072,3072:8192 $b/w4a16_bench
run "decode nf4 main" 40 $b/kernel_bench decode nf4
run "decode nf4 lagged" 40 $b/kernel_bench_lagged decode nf4
run "decode nf4 nobar" 40 $b/kernel_bench_nobar decode nf4
run "decode nf4 nomath" 40 $b/kernel_bench_nomath decode nf4
run "nf4 checks slots3" 60 $b/native_kernel_tests_slots3 nf4
# Nsight Compute: main's kernel, then the lagged build, gate_up at M = 1 (each the 4th launch).
for v in main lagged; do
  exe=$b/nf4_bench; [ $v = main ] || exe=$b/nf4_bench_$v
  [ $(left 1000) -gt 60 ] || break
  timeout $(left 120) ncu --clock-control none --set full --import-source no --kernel-name-base mangled \
    --kernel-name "regex:nf4_gemv_stream" --launch-skip 3 --launch-count 1 -f -o /tmp/nb-$v \
    env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1 NF4_BENCH_SHAPES=16384x3072 $exe > "$out/ncu-$v.txt" 2>&1
  echo "ncu $v rc $?" >> "$out/runs.txt"
  ncu -i /tmp/nb-$v.ncu-rep --page raw --csv > "$out/ncu-$v-raw.csv" 2>&1
  ncu -i /tmp/nb-$v.ncu-rep --page source --print-source sass --csv > "$out/ncu-$v-sass.csv" 2>&1
  ncu -i /tmp/nb-$v.ncu-rep --page details > "$out/ncu-$v-details.txt" 2>&1
  python3 tests/gpu/ncu_metrics.py "$out/ncu-$v-raw.csv" > "$out/ncu-$v-summary.txt" 2>&1
  python3 tests/gpu/sass_stalls.py "$out/ncu-$v-sass.csv" 45 >> "$out/ncu-$v-summary.txt" 2>&1
done
grep -E "^==|^rc |gemv M=|copy band|FAIL|checks:|native:|ms/token|custom|^ncu|passed|prefill|tokens" "$out/runs.txt" | cut -c1-170 | head -160
for v in main lagged; do echo "--- ncu $v"; head -75 "$out/ncu-$v-summary.txt" 2>/dev/null | cut -c1-150; done
