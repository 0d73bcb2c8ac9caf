"""Whole-command wall time of `inferecon predict` (published profile, and an op-DB profile from
`calibrate --op-db`) and the default `inferecon frontier`, Python start-up, imports, computing,
printing and (frontier) writing the CSV and PNG included.

    python benchmarks/bench_startup.py [--repeats N] [--op-db-profile DIR] [--only NAME,...]

Goals on a 2-core machine without a GPU: predict < 0.5 s, frontier < 1 s. Each command runs
`--repeats` times after one untimed warm-up run (disk cache, .pyc files); the median and the
fastest wall time are printed, with the median CPU time (user + sys of the command and its
threads: numpy's BLAS threads start at import, so it can exceed the wall time) — on a shared
machine the wall time also counts waiting for a core, the CPU time does not — the load
average before and after, and which of pandas, matplotlib, scipy and torch the command imported
(`python -X importtime`), since those imports are most of a slow start.

The commands run as an installed inferecon runs, with its bytecode cached (pip compiles it at
install): the warm-up run writes the .pyc files (into the package's __pycache__, ignored by git)
even where PYTHONDONTWRITEBYTECODE is set, as in this project's sessions, where a source tree
without them would compile every module on every run (measured: ≈ 0.07 s more for predict).

The op-DB profile is DIR/profile.json and DIR/engine.json of `--op-db-profile DIR`, or, without
it, one fitted first (untimed) by `inferecon calibrate --op-db --gpu h100-sxm --engine vllm`
from the installed aiconfigurator-core; without either that case is skipped, saying why.
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
from pathlib import Path

HEAVY = ("pandas", "matplotlib", "scipy", "torch")


def command(*args: str) -> list[str]:
    # The interpreter this script runs under, so the installed inferecon is the one measured;
    # `-m inferecon` is what the `inferecon` console script runs, without its own wrapper.
    return [sys.executable, "-m", "inferecon", *args]


def heavy_imports(cmd: list[str], env) -> list[str]:
    r = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], capture_output=True, text=True, check=True, env=env)
    top = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    return [m for m in HEAVY if m in top]


def run_times(cmd: list[str], repeats: int, env) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each run."""
    subprocess.run(cmd, capture_output=True, check=True, env=env)  # warm-up: disk cache, .pyc files
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, env=env)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def opdb_profile(given: str | None, tmp: str, env) -> tuple[Path | None, str]:
    """(folder with profile.json and engine.json, or None; why not)."""
    if given:
        return Path(given), ""
    out = Path(tmp) / "opdb"
    r = subprocess.run(command("calibrate", "--op-db", "--gpu", "h100-sxm", "--engine", "vllm", "--out", str(out)),
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["calibrate --op-db failed"])[-1]
    return out, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--op-db-profile", default=None, metavar="DIR",
                    help="folder of an op-DB fit (profile.json, engine.json); default: fit one first")
    ap.add_argument("--only", default="predict,predict-opdb,frontier",
                    help="commands to time, comma-separated (default %(default)s)")
    args = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    only = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("predict", 0.5, command("predict", "--model", "llama-3-70b", "--gpu", "h100", "--tp", "4", "--batch",
                                          "16", "--context", "8192", "--precision", "8"))]
        if "predict-opdb" in only:
            folder, why = opdb_profile(args.op_db_profile, tmp, env)
            if folder is None:
                print(f"predict-opdb skipped: no op-DB profile ({why})")
            else:
                cases.append(("predict-opdb", 0.5, command(
                    "predict", "--model", "llama-3-70b", "--hardware", str(folder / "profile.json"),
                    "--engine", str(folder / "engine.json"), "--tp", "8", "--batch", "16")))
        cases.append(("frontier", 1.0, command("frontier", "--model", "llama-3-70b", "--out", tmp)))
        cases = [c for c in cases if c[0] in only]
        print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; {args.repeats} runs each; bytecode cached")
        print(f"{'command':12s} {'wall median s':>13s} {'wall fastest s':>14s} {'CPU median s':>12s} {'goal s':>7s}  "
              f"{'heavy imports':18s} command line")
        for name, goal, cmd in cases:
            walls, cpus = run_times(cmd, args.repeats, env)
            heavy = heavy_imports(cmd, env)
            shown = " ".join(["inferecon"] + cmd[3:]).replace(tmp, "TMP")
            print(f"{name:12s} {statistics.median(walls):13.3f} {min(walls):14.3f} {statistics.median(cpus):12.3f} "
                  f"{goal:7.1f}  {', '.join(heavy) or 'none':18s} {shown}", flush=True)
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
