# The copy ceiling every "% of copy" in BENCHMARKS.md is relative to: a 2 GiB device-to-device copy through torch,
# median of 10 after 3 warm-ups, bytes read + written; prints GB/s. Used by device-run.sh and quick-run.sh.
import torch

x = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
y = torch.empty_like(x)
for _ in range(3):
    y.copy_(x)
s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
ts = []
for _ in range(10):
    s.record(); y.copy_(x); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
ts.sort()
print(f"{2 * x.numel() / (ts[5] * 1e-3) / 1e9:.0f}")
