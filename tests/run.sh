#!/usr/bin/env bash
# Runs every test of the project and prints, last, the line "N passed, N failed, N skipped".
#  1. builds libstepaudio_native with CMake (CUDA kernels too when nvcc is found);
#  2. runs the native kernel checks (GPU kernels vs the CPU reference; they skip visibly without a GPU);
#  3. runs the C# suite (xunit v3). With dotnet on PATH it is built here; on a machine without dotnet (the GPU
#     machine) set STEPAUDIO_TEST_EXE to a self-contained published StepAudio.Tests executable.
# Exit status: 0 only when nothing failed.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${STEPAUDIO_BUILD_DIR:-$root/build}
logs=${STEPAUDIO_LOG_DIR:-$build/logs}
mkdir -p "$logs"

echo "== building libstepaudio_native ($build)"
if ! { cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release && cmake --build "$build" -j "$(nproc)"; } >"$logs/native-build.log" 2>&1; then
  tail -n 40 "$logs/native-build.log"
  echo "native build failed (log: $logs/native-build.log)"
  echo "0 passed, 1 failed, 0 skipped"
  exit 1
fi
export STEPAUDIO_NATIVE_LIB="$build/libstepaudio_native.so"

passed=0; failed=0; skipped=0
add_counts() { # "P F S"
  passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
}

echo "== native kernel checks"
"$build/native_kernel_tests" 2>&1 | tee "$logs/native-tests.log"
line=$(grep -E '^native: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$logs/native-tests.log" | tail -n 1)
if [ -n "$line" ]; then
  read -r p f s < <(echo "$line" | sed -E 's/^native: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/')
  add_counts "$p" "$f" "$s"
else
  echo "native kernel checks printed no summary (crash?)"; add_counts 0 1 0
fi

echo "== C# tests"
exe=${STEPAUDIO_TEST_EXE:-}
if [ -z "$exe" ]; then
  if ! dotnet build "$root/tests/StepAudio.Tests/StepAudio.Tests.csproj" -c Release -nologo -v q >"$logs/dotnet-build.log" 2>&1; then
    grep -E 'error|Error' "$logs/dotnet-build.log" | head -n 30
    echo "C# build failed (log: $logs/dotnet-build.log)"
    echo "$passed passed, $((failed + 1)) failed, $skipped skipped"
    exit 1
  fi
  exe="$root/tests/StepAudio.Tests/bin/Release/net10.0/StepAudio.Tests"
fi
"$exe" -noColor ${STEPAUDIO_TEST_ARGS:-} 2>&1 | tee "$logs/dotnet-tests.log"
summary=$(grep -E 'Total: [0-9]+, Errors: [0-9]+, Failed: [0-9]+, Skipped: [0-9]+' "$logs/dotnet-tests.log" | tail -n 1)
if [ -n "$summary" ]; then
  total=$(echo "$summary" | sed -E 's/.*Total: ([0-9]+).*/\1/')
  errors=$(echo "$summary" | sed -E 's/.*Errors: ([0-9]+).*/\1/')
  fails=$(echo "$summary" | sed -E 's/.*Failed: ([0-9]+).*/\1/')
  skips=$(echo "$summary" | sed -E 's/.*Skipped: ([0-9]+).*/\1/')
  notrun=$(echo "$summary" | sed -E 's/.*Not Run: ([0-9]+).*/\1/')
  add_counts $((total - fails - skips - notrun)) $((fails + errors)) $((skips + notrun))
else
  echo "the C# test runner printed no summary (crash?)"; add_counts 0 1 0
fi

echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
