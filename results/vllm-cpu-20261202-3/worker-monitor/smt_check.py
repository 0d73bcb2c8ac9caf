# Time one fp32 and one bf16 GEMV-like matmul (x[1,1024] @ W[1024,4096], W cold-ish: 8 copies
# cycled, 16 MB each fp32) on this process's core, median of 7 blocks of 50 calls.
import sys, time, statistics, torch
torch.set_num_threads(1)
out = []
for dt in (torch.float32, torch.bfloat16):
    ws = [torch.randn(4096, 1024, dtype=dt) for _ in range(8)]
    x = torch.randn(1, 1024, dtype=dt)
    blocks = []
    for b in range(7):
        t = time.perf_counter()
        for i in range(50):
            torch.nn.functional.linear(x, ws[i % 8])
        blocks.append((time.perf_counter() - t) / 50 * 1e6)
    out.append(f"{str(dt)[6:]} {statistics.median(blocks):.0f}us")
print(sys.argv[1], *out, flush=True)
