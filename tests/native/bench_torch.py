# bench_torch.py — the cuBLAS side of kernel_bench: torch.nn.functional.linear at the same Step1 shapes, timed the
# same way (CUDA graph of 10 launches rotating over weight copies, median of 60 replays). Runs on the GPU machine.
import statistics

import torch
import torch.nn.functional as F

SHAPES = [("qkv", 3584, 3072), ("o", 3072, 3072), ("gate_up", 16384, 3072), ("down", 3072, 8192),
          ("lm_head", 74752, 3072)]
LAUNCHES, SAMPLES = 10, 60


def time_graph(fn):
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(3):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for i in range(LAUNCHES):
            fn(i)
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(SAMPLES):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(1000.0 * a.elapsed_time(b) / LAUNCHES)
    return statistics.median(times)


def main():
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    src = torch.empty(1 << 29, device="cuda", dtype=torch.int16)
    dst = torch.empty_like(src)
    copy_us = time_graph(lambda i: dst.copy_(src))  # µs per copy
    print(f"torch copy_ of 1 GiB: {2 * src.numel() * 2 / (copy_us * 1e3):.0f} GB/s (read + write)")
    del src, dst
    print(f"{'linear':8} {'N':>6} {'K':>6} {'M':>5} {'cuBLAS us':>10} {'GB/s':>9} {'%3.0TB/s':>8}")
    for name, n, k in SHAPES:
        w_bytes = n * k * 2
        copies = max(2, min(16, (256 << 20) // w_bytes + 1))
        ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * 0.02 for _ in range(copies)]
        for m in (1, 4, 16, 512):
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            us = time_graph(lambda i: F.linear(x, ws[i % copies]))
            gbs = (w_bytes + 2 * m * k + 2 * m * n) / (us * 1e3)
            print(f"{name:8} {n:6d} {k:6d} {m:5d} {us:10.2f} {gbs:9.0f} {100 * gbs / 3000:7.1f}%", flush=True)
        del ws
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
