"""Bandwidth matrices of nvbandwidth (text, or JSON from -j) and of the CUDA sample
p2pBandwidthLatencyTest, read into rows per GPU pair:

- GPU <-> GPU copies: `p2p` rows, GB/s per direction (a bidirectional matrix's entries are the
  sum of both directions, so they are halved);
- host <-> device copies: `host_link` rows, GB/s;
- a GPU's copy within its own memory (nvbandwidth device_local_copy, the p2p test's
  diagonal): `memory` rows, op "copy", bytes counted read + write as DESIGN.md says.

Every row keeps its file and line. Prefixes such as `> ` (a quoted post) are ignored.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd

from inferecon.core.errors import UserError

NVB_DEFAULT_BUFFER_BYTES = 512 * 1024 * 1024  # nvbandwidth's default --bufferSize (MiB)
P2P_TEST_BUFFER_BYTES = 40_000_000  # p2pBandwidthLatencyTest copies 10M ints per repetition


def _read(path, what):
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read {what} output ({exc.strerror or exc})") from None
    return path, raw.decode("utf-8", errors="replace"), hashlib.sha256(raw).hexdigest()


def _float(tok):
    try:
        return float(tok)
    except (TypeError, ValueError):
        return None


def _kind(name: str, description: str) -> str:
    """'local', 'h2d', 'd2h' or 'd2d' from an nvbandwidth testcase name / matrix title."""
    t = f"{name} {description}".lower()
    if "local" in t:
        return "local"
    if "host_to_device" in t or "cpu(row) -> gpu" in t:
        return "h2d"
    if "device_to_host" in t or "cpu(row) <- gpu" in t:
        return "d2h"
    return "d2d"


def read_link_file(path) -> pd.DataFrame:
    """An nvbandwidth or p2pBandwidthLatencyTest output, whichever the text is."""
    path, text, sha = _read(path, "bandwidth matrix")
    if "P2P=" in text and "Bandwidth" in text and "Matrix" in text:
        return _p2p_test(path, text, sha)
    return _nvbandwidth(path, text, sha)


# --------------------------------------------------------------------------------------------
# nvbandwidth


def _nvbandwidth(path, text, sha):
    cases = _nvb_json(path, text) if text.lstrip().startswith("{") else _nvb_text(text)
    if not cases:
        raise UserError(f"{path}: no nvbandwidth testcase with a bandwidth matrix found")
    buf = NVB_DEFAULT_BUFFER_BYTES
    m = re.search(r"[Bb]uffer[ _]?[Ss]ize\D+(\d+)", text)
    if m:
        buf = int(m.group(1)) * 1024 * 1024
    m = re.search(r"Device 0:\s*(.+?)\s*(\(|$)", text, re.M)
    device = m.group(1) if m else ""
    rows = []
    for name, description, cells in cases:
        kind = _kind(name, description)
        bidir = "bidirectional" in name.lower()
        for line, r, c, gbps in cells:
            if gbps is None or gbps <= 0:
                continue  # N/A: the diagonal of a GPU-to-GPU matrix
            per_dir = gbps / 2 if bidir else gbps
            rows.append(_row(path, sha, line, device, f"nvbandwidth:{name}", kind, r, c, per_dir, buf))
    if not rows:
        raise UserError(f"{path}: nvbandwidth output holds no positive bandwidth")
    return pd.DataFrame(rows)


def _row(path, sha, line, device, testcase, kind, r, c, gbps, buf):
    common = {"schema_version": 1, "benchmark_version": 0, "device": "cuda", "device_name": device,
              "iqr_us": 0.0, "reps": 1, "noisy": False, "throttled": False, "skipped": "",
              "source": str(path), "source_sha256": sha, "source_line": line, "testcase": testcase,
              "src": r, "dst": c}
    if kind == "local":
        moved = 2 * buf
        t_us = moved / (2 * gbps * 1e3)  # the tools count the buffer once per copy
        return {**common, "benchmark": "memory", "case_id": f"{testcase}:gpu{c}", "op": "copy",
                "bytes": buf, "bytes_moved": moved, "gbps": 2 * gbps, "median_us": t_us,
                "samples_us": [t_us], "kernel": testcase.split(":")[0]}
    t_us = buf / (gbps * 1e3)
    bench = "p2p" if kind == "d2d" else "host_link"
    return {**common, "benchmark": bench, "case_id": f"{testcase}:{r}->{c}", "op": kind, "bytes": buf,
            "gbps": gbps, "median_us": t_us, "samples_us": [t_us]}


def _nvb_text(text):
    """[(testcase, matrix title, [(line, row, column, GB/s or None), ...]), ...]"""
    cases, name, title, cells, cols = [], None, "", [], None
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip().lstrip(">").strip()
        m = re.match(r"Running (\S+?)\.?$", s)
        if m:
            if name and cells:
                cases.append((name, title, cells))
            name, title, cells, cols = m.group(1), "", [], None
            continue
        if name is None:
            continue
        if "bandwidth (GB/s)" in s:
            title, cols = s, None
            continue
        if s.startswith("SUM ") or not s:
            continue
        toks = s.split()
        if cols is None and toks and all(t.isdigit() for t in toks):
            cols = [int(t) for t in toks]  # the column-index header of a matrix
            continue
        if cols is not None and len(toks) >= 2 and toks[0].isdigit():
            r = int(toks[0])
            for c, tok in zip(cols, toks[1:]):
                cells.append((lineno, r, c, _float(tok)))
    if name and cells:
        cases.append((name, title, cells))
    return cases


# Above this a link figure is a corrupt file (HBM is ~8 TB/s; NVLink 5 1.8 TB/s per GPU).
MAX_LINK_GBPS = 1e5


def _nvb_json(path, text):
    """nvbandwidth -j output read as untrusted data (ingest/fields.py): the containers must be
    an object and lists, a cell a number (nvbandwidth writes them as strings, "389.71") or "N/A";
    true, NaN, infinity or a figure above any link's are refused naming the cell."""
    from inferecon.ingest.fields import JsonFields

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid nvbandwidth JSON ({exc.msg})") from None
    except (ValueError, RecursionError):
        raise UserError(f"{path}: not an nvbandwidth -j document (numbers too long or nesting too deep)") from None
    f = JsonFields(path, "nvbandwidth -j document")
    doc = f.obj(doc, "the document")
    root = f.obj(doc.get("nvbandwidth", doc), "nvbandwidth")
    cases = []
    for i, tc in enumerate(f.items(root.get("testcases"), "nvbandwidth.testcases", required=False)):
        where = f"testcases[{i}]"
        tc = f.obj(tc, where)
        matrix = f.items(tc.get("bandwidth_matrix"), f"{where}.bandwidth_matrix", required=False)
        cells = []
        for r, row in enumerate(matrix):
            for c, v in enumerate(f.items(row, f"{where}.bandwidth_matrix[{r}]")):
                cell = f"{where}.bandwidth_matrix[{r}][{c}]"
                if isinstance(v, str) and v.strip().upper() in ("N/A", "NA", ""):
                    cells.append((i, r, c, None))
                    continue
                if isinstance(v, str):
                    try:
                        v = float(v)
                    except ValueError:
                        raise f.fail(cell, "a bandwidth in GB/s or N/A", v) from None
                cells.append((i, r, c, f.number(v, cell, 0.0, MAX_LINK_GBPS, unit="GB/s")))
        if cells:
            name = f.text(tc.get("name"), f"{where}.name") or "unknown"
            cases.append((name, f.text(tc.get("bandwidth_description"), f"{where}.bandwidth_description") or "", cells))
    return cases


# --------------------------------------------------------------------------------------------
# p2pBandwidthLatencyTest (CUDA samples)


def _p2p_test(path, text, sha):
    rows, title, cols = [], None, None
    device = ""
    m = re.search(r"Device:\s*\d+,\s*(.+?),\s*pciBusID", text)
    if m:
        device = m.group(1)
    for lineno, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        m = re.search(r"(Unidirectional|Bidirectional) P2P=(Enabled|Disabled) Bandwidth.*Matrix \(GB/s\)", s)
        if m:
            title, cols = m.group(0), None
            bidir, enabled = m.group(1) == "Bidirectional", m.group(2) == "Enabled"
            continue
        if title is None:
            continue
        if "Latency" in s:  # latency matrices follow: not bandwidth
            title = None
            continue
        toks = s.split()
        if toks[:1] == ["D\\D"]:
            cols = [int(t) for t in toks[1:] if t.isdigit()]
            continue
        if cols is not None and len(toks) == len(cols) + 1 and toks[0].isdigit():
            r = int(toks[0])
            for c, tok in zip(cols, toks[1:]):
                v = _float(tok)
                if v is None or v <= 0:
                    continue
                per_dir = v / 2 if bidir else v
                kind = "local" if r == c else "d2d"
                if kind == "local" and bidir:
                    continue  # a copy within one GPU has no second direction to halve
                if kind == "d2d" and not enabled:
                    continue  # P2P disabled: copies staged through the host, not the NVLink path
                case = f"p2pBandwidthLatencyTest:{'bidir' if bidir else 'unidir'}"
                rows.append(_row(path, sha, lineno, device, case, kind, r, c, per_dir, P2P_TEST_BUFFER_BYTES))
        elif cols is not None and not toks:
            cols = None
    if not rows:
        raise UserError(f"{path}: no P2P bandwidth matrix rows found (is this p2pBandwidthLatencyTest output?)")
    return pd.DataFrame(rows)
