"""How fast the op-level step model (model/ops.py) evaluates configurations, beside the
paper's four-term model on the same layouts.

    python benchmarks/bench_ops.py [--op-db PATH] [--gpu h100-sxm] [--engine vllm] [--n 1000000]

Fits the op-DB profile of GPU x engine (`calibrate --op-db`'s own fit, calibration/opdb_fit.py)
from the per-op database (default: the installed aiconfigurator-core), then evaluates n random
layouts of the default frontier search space (Llama 3 70B and DeepSeek-V3, context 4096) three
ways: the published profile (four terms), the op-DB profile with its op fits removed (four terms
with the fitted GEMM and collective lines), and the op-DB profile (op level). Best of 7, by wall
clock and by this process's CPU time; the load average is printed before and after, the wall
figure scales with what else the machine runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time

import numpy as np

from inferecon.model.catalog import get_model
from inferecon.model.frontier import SearchSpace, build_layouts
from inferecon.model.published import get_profile
from inferecon.model.terms import Layouts, evaluate


def rate(model, hw, engine, n: int) -> tuple[float, float]:
    """Configurations per second: (by the best wall time, by the best CPU time of this process).
    On a shared machine the CPU figure is the steadier one: it leaves out waiting for a core."""
    base = build_layouts(model, hw, SearchSpace(), with_spec=False)
    pick = np.random.default_rng(0).integers(0, len(base), n)
    lay = Layouts(tp_r=base.tp_r[pick], tp_c=base.tp_c[pick], pp=base.pp[pick], ep=base.ep[pick],
                  micro_batch=base.micro_batch[pick], gamma=base.gamma[pick])
    wall = cpu = float("inf")
    for _ in range(7):
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(model, hw, lay, 4096, engine=engine)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return n / wall, n / cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--op-db", default=None, help="per-op database folder (default: the installed aiconfigurator-core)")
    ap.add_argument("--gpu", default="h100-sxm")
    ap.add_argument("--engine", default="vllm")
    ap.add_argument("--n", type=int, default=1_000_000, help="configurations per call (default %(default)s)")
    args = ap.parse_args(argv)
    from inferecon.calibration.opdb_fit import calibrate_from_opdb

    cal = calibrate_from_opdb(args.op_db, args.gpu, args.engine)
    print(f"machine: {os.cpu_count()} CPUs, load {open('/proc/loadavg').read().split()[:3]}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}; op-DB profile {cal.profile.name}")
    ways = (("published, four terms", get_profile(args.gpu), None),
            ("op-DB profile, four terms", cal.profile.without_op_fits(), cal.engine),
            ("op-DB profile, op level", cal.profile, cal.engine))
    for name in ("llama-3-70b", "deepseek-v3"):
        model = get_model(name)
        for label, hw, eng in ways:
            wall, cpu = rate(model, hw, eng, args.n)
            print(f"{name:12s} {label:26s} {wall / 1e6:5.2f} M configurations/s (CPU time: {cpu / 1e6:5.2f} M/s; "
                  f"{args.n:,} per call, best of 7)", flush=True)
    print(f"load at the end {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
