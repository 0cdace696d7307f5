#!/usr/bin/env bash
# trace-ab.sh — one GPU-machine call: the decode step's timeline (`kernel_bench trace`, a -DSA_TRACE=1 build, sm_90a)
# for this tree and for OLD_TREE (a copy of this tree with OLD_TREE's kernels/ files laid over it), side by side:
# what each launch of a layer adds to the critical path, old against new. FORMATS (default "w4a16").
# Usage on the device: OLD_TREE=.carry/old bash tests/gpu/trace-ab.sh   (carry .carry/old)
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/out}; mkdir -p "$out"
build() {  # build SRC_DIR BUILD_DIR
  cmake -S "$1" -B "$2" -DSTEPAUDIO_REQUIRE_CUDA=ON -DCMAKE_BUILD_TYPE=Release -DSTEPAUDIO_CUDA_ARCHITECTURES=90a \
    -DCMAKE_CUDA_FLAGS=-DSA_TRACE=1 -DCMAKE_CXX_FLAGS=-DSA_TRACE=1 > "$2.log" 2>&1 &&
    cmake --build "$2" -j 8 --target kernel_bench >> "$2.log" 2>&1 || { grep -E "error" "$2.log" | head; echo "build of $1 failed"; }
}
mkdir -p /tmp/trace
build . /tmp/trace/new &
if [ -n "${OLD_TREE:-}" ]; then
  rm -rf /tmp/trace/oldsrc && mkdir -p /tmp/trace/oldsrc && tar --exclude=./build --exclude=./.carry --exclude=./.publish -cf - . | tar -xf - -C /tmp/trace/oldsrc
  cp -r "$OLD_TREE"/kernels/. /tmp/trace/oldsrc/kernels/
  build /tmp/trace/oldsrc /tmp/trace/old &
fi
wait
for v in new old; do
  [ -x /tmp/trace/$v/kernel_bench ] || continue
  echo "==== $v"
  timeout 60 /tmp/trace/$v/kernel_bench trace ${FORMATS:-w4a16} 2>&1 | tee "$out/trace-$v.txt" | grep -vE "^\s+[0-9]+ " | head -30
done
