"""How fast the cost model evaluates configurations, and how long the default frontier takes.

    python benchmarks/bench_frontier.py

Reports (best of several repeats, wall clock on this machine):
- configurations evaluated per second by the vectorised cost model (a large random batch of
  layouts, batch sizes and speculative settings for Llama 3 70B and DeepSeek-V3 on H100);
- wall time of the default Llama 3 70B frontier on published H100 specs (search only, and the
  whole `inferecon frontier` command including Python start-up, CSV and PNG);
- the uncertainty band's own cost (200 draws of the frontier points and their near
  neighbours), and the whole command with the band (the default) and without (--draws 0).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from inferecon.model.published import get_profile
from inferecon.model.catalog import get_model
from inferecon.model.frontier import SearchSpace, build_layouts, search, search_near
from inferecon.model.terms import Layouts, evaluate


def best_of(fn, repeats=5):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def configs_per_second(model_name: str, n: int, with_draft: bool) -> float:
    hw = get_profile("h100-sxm")
    model = get_model(model_name)
    draft = get_model("llama-3-8b") if with_draft else None
    base = build_layouts(model, hw, SearchSpace(), with_spec=with_draft)
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(base), n)
    lay = Layouts(tp_r=base.tp_r[pick], tp_c=base.tp_c[pick], pp=base.pp[pick], ep=base.ep[pick],
                  micro_batch=base.micro_batch[pick], gamma=base.gamma[pick])
    best, _ = best_of(lambda: evaluate(model, hw, lay, 4096, draft=draft, acceptance=0.8 if draft else 0.0))
    return n / best


def main() -> None:
    print(f"machine: {os.cpu_count()} CPUs, load {open('/proc/loadavg').read().split()[:3]}, numpy {np.__version__}, "
          f"python {sys.version.split()[0]}")
    n = 2_000_000
    for name, draft in (("llama-3-70b", False), ("llama-3-70b", True), ("deepseek-v3", False)):
        rate = configs_per_second(name, n, draft)
        tag = " with speculative decoding" if draft else ""
        print(f"cost model, {name}{tag}: {rate / 1e6:.2f} M configurations/s ({n:,} per call)")

    hw, model = get_profile("h100-sxm"), get_model("llama-3-70b")
    n_cfg = len(build_layouts(model, hw, SearchSpace(), with_spec=False))
    best, med = best_of(lambda: search(model, hw, 4096))
    print(f"default frontier search, llama-3-70b on h100-sxm ({n_cfg:,} configurations): "
          f"best {best * 1e3:.1f} ms, median {med * 1e3:.1f} ms")
    n_spec = len(build_layouts(model, hw, SearchSpace(), with_spec=True))
    best, med = best_of(lambda: search(model, hw, 4096, draft=get_model("llama-3-8b"), acceptance=0.8))
    print(f"frontier search with a draft model ({n_spec:,} configurations): best {best * 1e3:.1f} ms, "
          f"median {med * 1e3:.1f} ms")

    from inferecon.model.uncertainty import DEFAULT_DRAWS, frontier_band

    front, near = search_near(model, hw, 4096)
    best, med = best_of(lambda: frontier_band(model, hw, front, 4096, near))
    print(f"uncertainty band, {DEFAULT_DRAWS} draws of {len(front)} frontier points + {len(near)} near neighbours "
          f"({DEFAULT_DRAWS * (len(front) + len(near)):,} configurations): best {best * 1e3:.1f} ms, "
          f"median {med * 1e3:.1f} ms")

    for extra, what in (([], "with the band (default)"), (["--draws", "0"], "without the band (--draws 0)")):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "inferecon.cli", "frontier", "--model", "llama-3-70b", "--gpu", "h100-sxm",
                   "--out", out, *extra]
            best, med = best_of(lambda: subprocess.run(cmd, check=True, capture_output=True), repeats=3)
        print(f"whole `inferecon frontier` command {what} (start-up, search, table, CSV, PNG): best {best:.2f} s, "
              f"median {med:.2f} s")
    print(f"load at the end {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
