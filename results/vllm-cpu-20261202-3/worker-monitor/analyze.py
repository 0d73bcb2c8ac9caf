"""Join the side monitor (monitor.tsv: 1-s samples of vLLM's worker's schedstat and /proc/stat per
core) with the loop's commands.tsv: for each bench, the worker's main-thread time on a CPU and time
runnable-but-waiting, and each core's busy and stolen share over the bench's wall time."""
import csv, sys
from datetime import datetime, timezone
mon, cmds, day = sys.argv[1], sys.argv[2], sys.argv[3]  # day: YYYY-MM-DD of the run
rows = []
for line in open(mon):
    t, tag, pid, r, w, n, mr, mw, c0, c1, la = line.rstrip("\n").split("\t")
    rows.append((float(t), tag, pid, int(r), int(w), int(n), int(mr), int(mw),
                 [int(x) for x in c0.split(",")], [int(x) for x in c1.split(",")], la))
HZ = 100  # USER_HZ: /proc/stat ticks per second
def busy(c): return c[0] + c[1] + c[2] + c[5] + c[6]  # user nice system irq softirq
print("phase\twall_s\tworker_main_run_share\tworker_main_wait_share\tworker_all_run_share\t"
      "core0_busy\tcore0_steal\tcore1_busy\tcore1_steal\tcore1_busy_not_worker\tloadavg")
for c in csv.DictReader(open(cmds), delimiter="\t"):
    if not c["phase"].startswith("bench-"):
        continue
    t0 = datetime.fromisoformat(f"{day}T{c['start_utc']}+00:00").timestamp()
    t1 = t0 + int(c["seconds"])
    inside = [r for r in rows if t0 <= r[0] <= t1 + 0.5 and r[2]]
    if len(inside) < 2 or inside[0][2] != inside[-1][2]:
        continue
    a, b = inside[0], inside[-1]
    dt = b[0] - a[0]
    d = lambda i: (b[i] - a[i]) / 1e9 / dt
    c0 = [y - x for x, y in zip(a[8], b[8])]; c1 = [y - x for x, y in zip(a[9], b[9])]
    share = lambda v: v / HZ / dt
    print(f"{c['phase']}\t{dt:.1f}\t{d(6):.3f}\t{d(7):.3f}\t{d(3):.3f}\t{share(busy(c0)):.3f}\t{share(c0[7]):.3f}\t"
          f"{share(busy(c1)):.3f}\t{share(c1[7]):.3f}\t{share(busy(c1)) - d(3):.3f}\t{c['loadavg_before']}")
# Decoding seconds only: the 1-s samples where the worker's main thread ran > 0.5 s (the bench
# client's start-up and the gaps between benches are left out), pooled per served model.
print()
print("tag\tdecoding_s\tworker_main_run_share\tworker_main_wait_share\tcore1_busy_not_worker\tcore1_steal\tcore0_busy")
agg = {}
for a, b in zip(rows, rows[1:]):
    if not a[2] or a[2] != b[2]:
        continue
    dt = b[0] - a[0]
    run = (b[6] - a[6]) / 1e9
    if run / dt < 0.5:
        continue
    c1 = [y - x for x, y in zip(a[9], b[9])]; c0 = [y - x for x, y in zip(a[8], b[8])]
    g = agg.setdefault(a[1], [0.0] * 6)
    for i, v in enumerate((dt, run, (b[7] - a[7]) / 1e9, busy(c1) / HZ - (b[3] - a[3]) / 1e9, c1[7] / HZ, busy(c0) / HZ)):
        g[i] += v
for tag, g in agg.items():
    print(f"{tag}\t{g[0]:.0f}\t{g[1] / g[0]:.3f}\t{g[2] / g[0]:.3f}\t{g[3] / g[0]:.3f}\t{g[4] / g[0]:.4f}\t{g[5] / g[0]:.3f}")
