"""Read what operators already run, as measurements: nccl-tests `*_perf` output (text as it
appears in real logs, or -J JSON) and PyTorch all_reduce_bench tables as collective rows;
nvbandwidth (text or -j JSON) and p2pBandwidthLatencyTest matrices as GPU link rows. Rows
come out with the record columns of the result store (plus `source`, `source_line`), so
calibration fits them like its own measurements.

nccl-tests reports one averaged time per size (no raw samples): a row's samples_us holds that
one value. The readers live in ingest_nccl.py, ingest_torch_bench.py and ingest_links.py; this module
picks one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from inferecon.ingest.links import read_link_file
from inferecon.ingest.nccl_tests import NcclSpec, NcclTable, read_nccl_tests
from inferecon.ingest.torch_bench import is_torch_bench, read_torch_bench
from inferecon.core.errors import UserError

__all__ = ["NcclSpec", "NcclTable", "read_collective_file", "parse_nccl_tests", "parse_nvbandwidth",
           "read_link_file"]


def read_collective_file(spec: NcclSpec | str, gpus_per_node: int = 8) -> list[NcclTable]:
    """Every collective table of one file: nccl-tests text or JSON, or an all_reduce_bench table."""
    spec = NcclSpec.parse(spec) if isinstance(spec, str) else spec
    path = Path(spec.path)
    if not path.is_file():
        what = "a folder" if path.is_dir() else "a device, pipe or socket" if path.exists() else None
        raise UserError(f"{path}: {what}, not a file" if what else f"{path}: no such file")
    head = path.read_bytes()[:200_000].decode("utf-8", errors="replace")
    if is_torch_bench(head):
        return read_torch_bench(spec, gpus_per_node)
    return read_nccl_tests(spec, gpus_per_node)


def parse_nccl_tests(path: str | Path, op: str | None = None) -> pd.DataFrame:
    """All rows of one file as one table (every table in it, one row per message size each)."""
    tables = read_collective_file(NcclSpec(str(path), op))
    return pd.concat([t.frame() for t in tables], ignore_index=True)


def parse_nvbandwidth(path: str | Path) -> pd.DataFrame:
    return read_link_file(path)
