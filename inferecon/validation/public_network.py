"""The published network constants against public nccl-tests tables from real clusters: each
table ingested and fitted (alpha + bytes/beta, 1-4 pieces, nested k-fold held-out error over its
message sizes), and the fit and the published profile's prediction
(`model.network.collective_time_s`) at 8 B, 1 MB, 64 MB and 1 GB. A size outside a table's
measured range is None: the fit is not extrapolated. benchmarks/bench_public_network.py prints
these rows; tests/test_ingest_real.py checks them on ../shared/reference/measured."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from inferecon.calibration.build_files import fit_table
from inferecon.ingest.files import read_collective_file, read_link_file
from inferecon.model.network import collective_time_s
from inferecon.model.published import get_profile

SIZES = [("8 B", 8), ("1 MB", 1e6), ("64 MB", 64e6), ("1 GB", 1e9)]


def fitted_us(fits, nbytes):
    piece = [f for f in sorted(fits, key=lambda f: f.min_bytes) if nbytes >= f.min_bytes][-1]
    return piece.alpha_us + nbytes / (piece.beta_gbps * 1e3)


def _profile_for(path: Path, gpu: str):
    """The file's own GPU where its name says H200 (the public set's one H200 table), else --gpu."""
    return get_profile("h200" if "H200" in path.name else gpu)


def rows(directory: Path, gpu: str):
    out = []
    for path in sorted(directory.glob("nccl-tests_*.txt")) + sorted(directory.glob("torch_all_reduce_bench_*")):
        hw = _profile_for(path, gpu)
        for t in read_collective_file(str(path), gpus_per_node=hw.network.gpus_per_node):
            ff = fit_table(t)
            lo, hi = min(p.size for p in t.points), max(p.size for p in t.points)
            cells = []
            for _, b in SIZES:
                if not lo <= b <= hi:
                    cells.append(None)
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    pub = float(np.asarray(collective_time_s(hw, t.op, t.world, 1, b))) * 1e6
                cells.append((fitted_us(ff.fits, b), pub))
            out.append((path.name, t, ff, cells, hw.name))
    return out


def link_rows(directory: Path, gpu: str):
    """Measured GPU-to-GPU copy bandwidth against the published NVLink figure per direction."""
    out = []
    for path in sorted(directory.glob("p2pBandwidthLatencyTest_*")) + sorted(directory.glob("nvbandwidth_*.txt")):
        df = read_link_file(path)
        hw = _profile_for(path, gpu)
        for op, g in df[df["benchmark"].isin(["p2p", "host_link"])].groupby("op"):
            pub = hw.network.intra.bandwidth_gbps * hw.network.intra.efficiency if op == "d2d" else None
            out.append((path.name, op, len(g), float(np.median(g["gbps"])), pub))
    return out
