#!/usr/bin/env bash
# wgmma-run.sh — one GPU-machine call (session 17): the 4-bit prefill GEMM on wgmma (quant_prefill_wg,
# kernels/linear_quant_prefill.cu) against the mma.sync kernel.
#   1. quant_prefill_bench checks (every entry-point check, every forced mma.sync shape, the forced wgmma checks);
#   2. quant_prefill_bench bench with STEPAUDIO_PREFILL_WGMMA=1 (the entry point on wgmma at every M; "best" is the
#      best forced mma.sync shape, cuBLAS bf16 beside);
#   3. with CHECKS_ONLY unset and the checks passed: the library, native_kernel_tests (prefill, linear: the bf16 GEMM
#      on wgmma too), and the model's prefill at 128 / 400 / 1000 tokens (MODELS, default "w4a16 nf4 bf16"),
#      STEPAUDIO_PREFILL_WGMMA=1 / 0 (carry .carry/bundle). BENCH=0 skips step 2.
# Logs: $OUT/logs.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=/tmp/wgmma-logs; rm -rf "$out"; mkdir -p "$out"
pack() { [ -n "${OUT:-}" ] && tar -czf "$OUT/logs.tgz" -C /tmp wgmma-logs; }
trap pack EXIT
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
b=/tmp/wgb; mkdir -p $b
fl="-O3 -std=c++17 --use_fast_math -lineinfo -DSA_HAVE_CUDA=1 -DSA_HAVE_WGMMA=1 -Xcompiler -fopenmp -Inative/include -Inative/src -Ikernels -Itests/native -arch=sm_90a"
pids=()
for f in tests/native/quant_prefill_bench.cu kernels/linear_quant_prefill.cu kernels/linear_w4a16.cu kernels/linear_nf4.cu \
         native/src/cpu_w4a16.cpp native/src/cpu_nf4.cpp native/src/api.cpp; do
  nvcc $fl -Xptxas=-v -c "$f" -o "$b/$(basename "$f").o" > "$b/$(basename "$f").log" 2>&1 &
  pids+=($!)
done
if [ -z "${CHECKS_ONLY:-}" ]; then
  mkdir -p .publish && tar -xJf .carry/bundle/bundle.tar.xz -C .publish
  python3 tests/oracle/step1_oracle.py full /tmp/step1-full > "$out/ckpt.log" 2>&1 &
  ( cmake -S . -B build -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a &&
    cmake --build build -j 12 --target stepaudio_native native_kernel_tests ) > "$out/cmake.log" 2>&1 &
fi
wait "${pids[@]}"
cp $b/*.log "$out/"
grep -hE "error" -A3 $b/*.log | head -30
grep -A2 "quant_prefill_wg" $b/linear_quant_prefill.cu.log | grep -E "registers|spill" | head -12
grep -ihE "wgmma|serializ" $b/linear_quant_prefill.cu.log | head -8
nvcc -arch=sm_90a -Xcompiler -fopenmp $b/*.o -lcublas -o $b/quant_prefill_bench > $b/link.log 2>&1 || { cat $b/link.log | head; exit 1; }
echo "built at $(el) s"
timeout 240 $b/quant_prefill_bench checks > "$out/checks.txt" 2>&1; rc=$?
echo "checks rc $rc at $(el) s: $(grep -cE '^\s*\[?PASS|passed' "$out/checks.txt") lines; tail:"; tail -3 "$out/checks.txt"
grep -E "FAIL" -A3 "$out/checks.txt" | head -40
[ $rc -ne 0 ] && exit 1
if [ "${BENCH:-1}" = 1 ]; then
  STEPAUDIO_PREFILL_WGMMA=1 timeout 240 $b/quant_prefill_bench bench "$out/sweep.txt" > "$out/bench.txt" 2>&1
  echo "bench rc $? at $(el) s"; grep -vE "^\s*$" "$out/bench.txt" | cut -c1-140 | tail -70
fi
[ -n "${CHECKS_ONLY:-}" ] && exit 0
wait
timeout 200 build/native_kernel_tests prefill > "$out/native-prefill.txt" 2>&1
echo "native prefill checks rc $?: $(grep -E '^native:' "$out/native-prefill.txt")"; grep FAIL -A2 "$out/native-prefill.txt" | head
timeout 200 build/native_kernel_tests linear > "$out/native-linear.txt" 2>&1
echo "native linear checks rc $?: $(grep -E '^native:' "$out/native-linear.txt")"; grep FAIL -A2 "$out/native-linear.txt" | head
export STEPAUDIO_NATIVE_LIB="$PWD/build/libstepaudio_native.so"
rm -rf /tmp/step1-w4a16
case " ${MODELS:-w4a16 nf4 bf16} " in *" w4a16 "*) ;; *) false ;; esac &&
timeout 150 .publish/cli/stepaudio quantize --format w4a16 -m /tmp/step1-full -o /tmp/step1-w4a16 > "$out/quantize.txt" 2>&1
for v in 1 0; do
  for args in "w4a16 --model /tmp/step1-w4a16" "nf4 --model /tmp/step1-full --variant bnb" "bf16 --model /tmp/step1-full"; do
    set -- $args; name=$1; shift
    case " ${MODELS:-w4a16 nf4 bf16} " in *" $name "*) ;; *) continue ;; esac
    STEPAUDIO_PREFILL_WGMMA=$v timeout 120 .publish/cli/stepaudio bench "$@" --device cuda --contexts 64 \
      --prefill-lengths 128,400,1000 --copy-gbps 3000 > "$out/model-$name-$v.txt" 2>&1
    echo "-- $name STEPAUDIO_PREFILL_WGMMA=$v"; grep -E "^prefill|seed-form" "$out/model-$name-$v.txt"
  done
done
