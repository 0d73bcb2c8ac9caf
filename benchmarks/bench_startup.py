"""Whole-command wall time of `inferecon predict` and the default `inferecon frontier`, Python
start-up, imports, computing, printing and (frontier) writing the CSV and PNG included.

    python benchmarks/bench_startup.py [--repeats N]

Goals on a 2-core machine without a GPU: predict < 0.5 s, frontier < 1 s. Each command runs
`--repeats` times after one untimed warm-up run (disk cache); the median and the fastest wall
time are printed, with the median CPU time (user + sys of the command) — on a shared machine
the wall time also counts waiting for a core, the CPU time does not — the load average, and
which of pandas, matplotlib, scipy and torch the command imported (`python -X importtime`),
since those imports are most of a slow start.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HEAVY = ("pandas", "matplotlib", "scipy", "torch")


def command(*args: str) -> list[str]:
    # The interpreter this script runs under, so the installed inferecon is the one measured;
    # `-m inferecon` is what the `inferecon` console script runs, without its own wrapper.
    return [sys.executable, "-m", "inferecon", *args]


def heavy_imports(cmd: list[str]) -> list[str]:
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=True)
    top = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in top]


def run_times(cmd: list[str], repeats: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each run."""
    subprocess.run(cmd, capture_output=True, check=True)  # warm-up: disk cache, .pyc files
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases = [
            ("predict", 0.5, command("predict", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "4", "--batch", "16",
                                     "--context", "8192", "--precision", "8")),
            ("frontier", 1.0, command("frontier", "--model", "llama-3-70b", "--out", tmp)),
        ]
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.repeats} runs each")
        print(f"{'command':9s} {'wall median s':>13s} {'wall fastest s':>14s} {'CPU median s':>12s} {'goal s':>7s}  "
              f"{'heavy imports':18s} command line")
        for name, goal, cmd in cases:
            walls, cpus = run_times(cmd, args.repeats)
            heavy = heavy_imports(cmd)
            shown = " ".join(["inferecon"] + cmd[3:]).replace(tmp, "TMP")
            print(f"{name:9s} {statistics.median(walls):13.3f} {min(walls):14.3f} {statistics.median(cpus):12.3f} "
                  f"{goal:7.1f}  {', '.join(heavy) or 'none':18s} {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
