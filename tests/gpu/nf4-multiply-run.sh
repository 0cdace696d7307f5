#!/usr/bin/env bash
# nf4-multiply-run.sh — one GPU-machine call for session 21's question: which part of the NF4 multiply costs the 3.5 µs
# of gate_up's ~14 (session 20: with no multiply at all the streaming kernel reaches 80% of copy)? Timing ablations of
# kernels/linear_nf4.cu (SA_NF4_ABLATE, wrong results by design, both decode kernels): nomath (3, session 20's), nolut
# (4: no pair-table loads), nomma (5: no MMA), nox (6: no x loads), nocodes (7: no ring reads of the codes). Each
# against main in the same call (nf4_bench at M = 1 on the five Step1 shapes, and the NF4 decode step), then Nsight
# Compute on main's streaming kernel (gate_up) and v4 (down): stall reasons and the most-sampled SASS lines.
# DEADLINE (default 420 s). Nothing to carry. On the device: bash tests/gpu/nf4-multiply-run.sh
cd "$(dirname "$0")/../.."
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
AB_DIR=/tmp/nmab DEADLINE=${DEADLINE:-420} \
  VARIANTS="nomath:-DSA_NF4_ABLATE=3 nolut:-DSA_NF4_ABLATE=4 nomma:-DSA_NF4_ABLATE=5 nox:-DSA_NF4_ABLATE=6 nocodes:-DSA_NF4_ABLATE=7" \
  . tests/gpu/ab-build.sh
ab_build kernels/linear_nf4.cu tests/native/nf4_bench.cu
cat "$out/build.txt"; grep -E "nf4_gemv" "$out/ptxas.txt" | cut -c1-160 | head -12
bench="env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1 NF4_BENCH_SHAPES=16384x3072,8192x3072,3584x3072,3072x3072,3072x8192"
run "nf4_bench main" 40 $bench $b/nf4_bench
for v in nomath nolut nomma nox nocodes; do run "nf4_bench $v" 40 $bench $b/nf4_bench_$v; done
run "nf4_bench main, again" 40 $bench $b/nf4_bench
for v in "" _nomath _nolut _nomma _nox _nocodes; do
  run "decode nf4${v:- main}" 40 env STEPAUDIO_BENCH_CONTEXTS=64 $b/kernel_bench$v decode nf4
done
run "nf4 checks main" 60 sh -c "$b/native_kernel_tests nf4 | grep -E '^native:|FAIL'"
# Nsight Compute on main: gate_up through the streaming kernel, down through v4 (each the 4th launch).
for k in "stream:nf4_gemv_stream:16384x3072" "v4:nf4_gemvILi1:3072x8192"; do
  IFS=: read -r name regex shape <<< "$k"
  [ $(left 1000) -gt 60 ] || break
  timeout $(left 120) ncu --clock-control none --set full --import-source no --kernel-name-base mangled \
    --kernel-name "regex:$regex" --launch-skip 3 --launch-count 1 -f -o /tmp/nm-$name \
    env NF4_BENCH_NO_CHECKS=1 NF4_BENCH_M=1 NF4_BENCH_SHAPES=$shape $b/nf4_bench > "$out/ncu-$name.txt" 2>&1
  echo "ncu $name rc $?" >> "$out/runs.txt"
  ncu -i /tmp/nm-$name.ncu-rep --page raw --csv > "$out/ncu-$name-raw.csv" 2>&1
  ncu -i /tmp/nm-$name.ncu-rep --page source --print-source sass --csv > "$out/ncu-$name-sass.csv" 2>&1
  python3 tests/gpu/ncu_metrics.py "$out/ncu-$name-raw.csv" > "$out/ncu-$name-summary.txt" 2>&1
  python3 tests/gpu/sass_stalls.py "$out/ncu-$name-sass.csv" 40 >> "$out/ncu-$name-summary.txt" 2>&1
done
grep -E "^==|^rc [1-9]|gemv M=|FAIL|native:|ms/token|^ncu" "$out/runs.txt" | cut -c1-150 | head -120
for v in stream v4; do echo "--- ncu $v"; head -70 "$out/ncu-$v-summary.txt" 2>/dev/null | cut -c1-150; done
