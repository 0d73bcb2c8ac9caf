"""PyTorch all-reduce benchmark tables (ml-engineering's all_reduce_bench.py): a markdown table
of payload, busbw and algbw ("GBps" = 1e9 B/s, payloads in KiB/MiB/GiB), read into the same
NcclTable as nccl-tests output. The table prints no time: algbw = bytes / time gives it back,
to algbw's two-decimal rounding."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from inferecon.ingest.nccl_tests import NcclSpec, NcclTable, Point, check_factor, world_and_nodes
from inferecon.core.errors import UserError

_UNITS = {"b": 1, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "kb": 1e3, "mb": 1e6, "gb": 1e9}
_TORCH_ROW = re.compile(r"^\|\s*([\d.]+)\s*([KMGT]?i?B)\s*\|\s*([\d.]+)\s*GB(?:ps|/s)\s*\|\s*([\d.]+)\s*GB(?:ps|/s)\s*\|",
                        re.I)


def is_torch_bench(text: str) -> bool:
    return bool(re.search(r"\|\s*payload\s*\|\s*busbw\s*\|\s*algbw\s*\|", text))


def read_torch_bench(spec: NcclSpec | str, gpus_per_node: int = 8) -> list[NcclTable]:
    spec = NcclSpec.parse(spec) if isinstance(spec, str) else spec
    path = Path(spec.path)
    raw = path.read_bytes()
    text = raw.decode("utf-8", errors="replace")
    points, bad, first = [], [], 0
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s.startswith("|") or re.search(r"payload|---", s):
            continue
        m = _TORCH_ROW.match(s)
        if not m:
            bad.append((lineno, "not a payload | busbw | algbw row"))
            continue
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
        busbw, algbw = float(m.group(3)), float(m.group(4))
        if algbw <= 0:
            bad.append((lineno, "algbw is 0"))
            continue
        first = first or lineno
        points.append(Point(lineno, int(size), 0, "", "out", size / (algbw * 1e3), algbw, busbw))
    if not points:
        raise UserError(f"{path}: no all_reduce_bench rows (| payload | busbw | algbw |) found")
    op = spec.op or "all_reduce"
    world, wsrc, nodes, nsrc, _ = world_and_nodes(path, spec, op, {}, points, gpus_per_node)
    check_factor(path, op, world, wsrc, points)
    return [NcclTable(str(path), hashlib.sha256(raw).hexdigest(), op, "user" if spec.op else "format",
                      world, wsrc, nodes, nsrc, mode="eager", first_line=first, points=points, bad_rows=bad,
                      notes=["PyTorch all_reduce_bench table: time = payload / algbw"])]
