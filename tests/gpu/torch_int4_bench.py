# The 4-bit kernels PyTorch itself ships, timed the way w4a16_bench / nf4_bench time ours, as an outside reference for
# issue #5's "M = 16 at least 3x cuBLAS bf16" and issue #4's NF4 GEMV targets (is a target beyond what public kernels
# reach at Step1's shapes?). Not a test: a table on stdout.
#   int4   PyTorch's int4 weight-only kernel (aten._weight_int4pack_mm: bf16 x int4, group 128, bf16 scale + zero per
#          group; the one gpt-fast / torchao use) against cuBLAS bf16 (torch.matmul), M = 1 and 16;
#   nf4    bitsandbytes' NF4 GEMV (blocksize 64, double quant) at M = 1, when the machine has bitsandbytes.
# Every launch is captured in one CUDA graph over enough weight copies (> 200 MB) that the 50 MB L2 never holds them;
# median of 5 replays, µs per launch. Bandwidth counts packed bytes (codes + per-group statistics), as ours does.
# Usage: python3 tests/gpu/torch_int4_bench.py [int4|nf4|all]
import math
import sys

import torch

DEV = torch.device("cuda:0")
# (name, N, K): y[M, N] = x[M, K] · W^T, Step1's fused shapes and the two large ones of w4a16_bench.
SHAPES = [("qkv", 3584, 3072), ("o", 3072, 3072), ("gate_up", 16384, 3072), ("down", 3072, 8192),
          ("8192sq", 8192, 8192), ("lm_head", 74752, 3072)]
ROTATE_BYTES = 200e6


def copies_for(nbytes):
    return max(2, math.ceil(ROTATE_BYTES / nbytes))


def time_graph(calls, launches_per_graph=240):
    """µs per call: the calls (one per weight copy) repeated in one captured graph, median of 5 replays."""
    reps = max(1, launches_per_graph // len(calls))
    for c in calls:  # warm-up outside capture (lazy init, workspace allocation)
        c()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            for c in calls:
                c()
    for _ in range(3):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(); graph.replay(); end.record(); torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000 / (reps * len(calls)))
    return sorted(times)[2]


def cublas_bf16(n, k, m):
    weights = [torch.randn((n, k), device=DEV, dtype=torch.bfloat16) for _ in range(copies_for(n * k * 2))]
    x = torch.randn((m, k), device=DEV, dtype=torch.bfloat16)
    y = torch.empty((m, n), device=DEV, dtype=torch.bfloat16)
    t = time_graph([(lambda w=w: torch.matmul(x, w.t(), out=y)) for w in weights])
    del weights
    return t


def bench_int4():
    print("| shape N x K | M | torch int4 µs | cuBLAS bf16 µs | int4 vs cuBLAS | int4 GB/s (packed) |")
    print("|---|---|---|---|---|---|")
    for name, n, k in SHAPES:
        packed = n * k // 2 + (k // 128) * n * 4  # codes + bf16 (scale, zero) per group
        count = copies_for(packed)
        codes = [torch.ops.aten._convert_weight_to_int4pack(
                     torch.randint(0, 256, (n, k // 2), dtype=torch.uint8, device=DEV), 8) for _ in range(count)]
        stats = [(torch.rand((k // 128, n, 2), device=DEV) * 0.01).to(torch.bfloat16) for _ in range(count)]
        for m in (1, 16):
            x = torch.randn((m, k), device=DEV, dtype=torch.bfloat16)
            t4 = time_graph([(lambda q=q, s=s: torch.ops.aten._weight_int4pack_mm(x, q, 128, s))
                             for q, s in zip(codes, stats)])
            tc = cublas_bf16(n, k, m)
            print(f"| {name} {n} x {k} | {m} | {t4:.2f} | {tc:.2f} | {tc / t4:.2f}x | {packed / t4 / 1e3:.0f} |",
                  flush=True)
        del codes, stats
        torch.cuda.empty_cache()


def bench_nf4():
    try:
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnbf
    except ImportError as e:
        print(f"nf4: no bitsandbytes on this machine ({e})")
        return
    print(f"bitsandbytes {bnb.__version__}")
    print("| shape N x K | M | bnb NF4 µs | bnb GB/s (packed) |")
    print("|---|---|---|---|")
    for name, n, k in SHAPES[:5]:
        packed = n * k // 2 + n * k // 64 + n * k // 64 // 256 * 4  # codes + u8 absmax + fp32 nested absmax
        states = [bnbf.quantize_4bit(torch.randn((n, k), device=DEV, dtype=torch.bfloat16) * 0.02, quant_type="nf4",
                                     compress_statistics=True, blocksize=64) for _ in range(copies_for(packed))]
        x = torch.randn((1, k), device=DEV, dtype=torch.bfloat16)
        t = time_graph([(lambda st=st: bnb.matmul_4bit(x, st[0].t(), quant_state=st[1])) for st in states])
        print(f"| {name} {n} x {k} | 1 | {t:.2f} | {packed / t / 1e3:.0f} |", flush=True)
        del states
        torch.cuda.empty_cache()


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what not in ("int4", "nf4", "all"):
        sys.exit(f"usage: {sys.argv[0]} [int4|nf4|all]")
    props = torch.cuda.get_device_properties(0)
    print(f"{props.name}, {props.multi_processor_count} SMs, torch {torch.__version__}")
    if what in ("int4", "all"):
        bench_int4()
    if what in ("nf4", "all"):
        bench_nf4()
