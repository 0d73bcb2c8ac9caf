"""Read what operators already run: nccl-tests `*_perf` output (text, or JSON from -J) as
collective measurements, and nvbandwidth output (text, or JSON from -j) as memory and
GPU-to-GPU copy measurements. Rows come out with the collectives / memory record columns of
the result store, so calibration fits them like its own measurements.

nccl-tests reports one averaged time per size (no raw samples): the row's samples_us holds
that one value, and the fit weighs it like any other case.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from inferecon.errors import UserError

# nccl-tests binary -> inferecon op name
_NCCL_OPS = {
    "all_reduce": "all_reduce", "allreduce": "all_reduce",
    "all_gather": "all_gather", "allgather": "all_gather",
    "reduce_scatter": "reduce_scatter", "reducescatter": "reduce_scatter",
    "alltoall": "all_to_all", "all_to_all": "all_to_all",
    "sendrecv": "send_recv", "send_recv": "send_recv",
}
_BUS = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
        "reduce_scatter": lambda n: (n - 1) / n, "all_to_all": lambda n: (n - 1) / n,
        "send_recv": lambda n: 1.0}


def _op_from(text: str) -> str | None:
    t = text.lower()
    for key in sorted(_NCCL_OPS, key=len, reverse=True):
        if key in t:
            return _NCCL_OPS[key]
    return None


def _rows(op, world, nodes, mode, device_name, source, points):
    """points: [(size_bytes, time_us, algbw, busbw)]."""
    out = []
    for size, t_us, algbw, busbw in points:
        out.append({
            "benchmark": "collectives", "benchmark_version": 0, "schema_version": 1,
            "case_id": f"nccl-tests:{op}/{mode}/{int(size)}B/w{world}n{nodes}",
            "device": "cuda", "device_name": device_name, "gpu_count": world,
            "op": op, "mode": mode, "bytes": int(size), "world_size": world, "nodes": nodes,
            "gpus_per_node": world // max(nodes, 1), "scope": "inter" if nodes > 1 else "intra",
            "backend": "nccl", "samples_us": [float(t_us)], "median_us": float(t_us), "iqr_us": 0.0,
            "reps": 1, "noisy": False, "throttled": False, "skipped": "",
            "algbw_gbps": float(algbw), "busbw_gbps": float(busbw), "source": source,
        })
    return out


def parse_nccl_tests(path: str | Path, op: str | None = None) -> pd.DataFrame:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read nccl-tests output ({exc})") from None
    if text.lstrip().startswith("{"):
        return _parse_nccl_json(path, text, op)
    hosts, device_name, graph = set(), "", 0
    ranks = 0
    program = None
    points = []
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"#\s+Rank\s+\d+\s+Group\s+\d+\s+Pid\s+\d+\s+on\s+(\S+)\s+device\s+\d+\s+\[[^\]]*\]\s+(.*)", s)
        if m:
            ranks += 1
            hosts.add(m.group(1))
            device_name = m.group(2).strip()
            continue
        m = re.search(r"Collective test starting:\s*(\S+)", s)
        if m:
            program = m.group(1)
        m = re.search(r"\bgraph:\s*(\d+)", s)
        if m:
            graph = int(m.group(1))
        if not s or s.startswith("#"):
            continue
        toks = s.split()
        if len(toks) < 6 or not toks[0].isdigit():
            continue
        nums = [t for t in toks[3:] if _is_num(t) or t == "N/A"]
        # [root] time algbw busbw #wrong time algbw busbw #wrong: drop root when present.
        if len(nums) % 4 == 1:
            nums = nums[1:]
        if len(nums) < 3:
            continue
        points.append((int(toks[0]), float(nums[0]), float(nums[1]), float(nums[2])))
    op = op or _op_from(program or "") or _op_from(path.name)
    if op is None:
        raise UserError(f"{path}: cannot tell which collective this nccl-tests output measured; "
                        "name it, e.g. --nccl-tests FILE:all_reduce")
    if not points or ranks == 0:
        raise UserError(f"{path}: no nccl-tests result rows found (is this a *_perf output?)")
    world, nodes = ranks, max(1, len(hosts))
    _check_busbw(path, op, world, points)
    return pd.DataFrame(_rows(op, world, nodes, "graph" if graph else "eager", device_name, str(path), points))


def _parse_nccl_json(path, text, op):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid nccl-tests JSON ({exc.msg})") from None
    cfg = doc.get("config", {})
    devices = cfg.get("devices") or doc.get("devices") or []
    world = len(devices) or int(cfg.get("ngpus", 0)) * int(cfg.get("nthreads", 1))
    nodes = max(1, len({d.get("hostname") for d in devices})) if devices else 1
    name = devices[0].get("device_info", "") if devices else ""
    args = doc.get("args") or []
    op = op or _op_from(args[0] if args else "") or _op_from(path.name)
    if op is None:
        raise UserError(f"{path}: cannot tell which collective this nccl-tests output measured; "
                        "name it, e.g. --nccl-tests FILE:all_reduce")
    points = []
    for r in doc.get("results", []):
        body = r.get("out_of_place") or r.get("in_place")
        if not body:
            continue
        t = body.get("time", body.get("cpu_time"))
        points.append((int(r["size"]), float(t), float(body["alg_bw"]), float(body["bus_bw"])))
    if not points or world < 1:
        raise UserError(f"{path}: no nccl-tests results in this JSON")
    _check_busbw(path, op, world, points)
    mode = "graph" if int(cfg.get("graph", 0) or 0) else "eager"
    return pd.DataFrame(_rows(op, world, nodes, mode, name, str(path), points))


def _check_busbw(path, op, world, points):
    """A file whose busbw/algbw ratio is not nccl-tests' factor for this op and world size was
    mislabelled (another collective, or another rank count): refuse it rather than mis-fit."""
    want = _BUS[op](world)
    for size, _, algbw, busbw in points:
        if algbw > 0.05 and abs(busbw / algbw - want) > 0.05 * max(want, 1e-9) + 0.02:
            raise UserError(f"{path}: busbw/algbw = {busbw / algbw:.3f} at {size} B, but {op} over {world} ranks "
                            f"has factor {want:.3f}: wrong collective or rank count?")


def _is_num(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------
# nvbandwidth

NVB_DEFAULT_BUFFER_BYTES = 512 * 1024 * 1024  # nvbandwidth's default --bufferSize (MiB)


def parse_nvbandwidth(path: str | Path) -> pd.DataFrame:
    """Rows per testcase: device-local copies become `memory` rows (op copy, bytes counted
    read + write as DESIGN.md says); GPU-to-GPU copies become `p2p` rows (GB/s per pair)."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read nvbandwidth output ({exc})") from None
    cases = _nvb_json(path, text) if text.lstrip().startswith("{") else _nvb_text(text)
    if not cases:
        raise UserError(f"{path}: no nvbandwidth testcase with a bandwidth matrix found")
    buf = NVB_DEFAULT_BUFFER_BYTES
    m = re.search(r"[Bb]uffer[ _]?[Ss]ize\D+(\d+)", text)
    if m:
        buf = int(m.group(1)) * 1024 * 1024
    device = ""
    m = re.search(r"Device 0:\s*(.+?)\s*(\(|$)", text, re.M)
    if m:
        device = m.group(1)
    rows = []
    for name, values in cases:
        vals = [v for v in values if v is not None and v > 0]
        if not vals:
            continue
        local = "local" in name
        for i, gbps in enumerate(vals):
            common = {"schema_version": 1, "benchmark_version": 0, "device": "cuda", "device_name": device,
                      "gpu_count": len(vals), "iqr_us": 0.0, "reps": 1, "noisy": False, "throttled": False,
                      "skipped": "", "source": str(path), "testcase": name}
            if local:
                moved = 2 * buf
                t_us = moved / (gbps * 2 * 1e3)  # nvbandwidth counts the buffer once per copy
                rows.append({**common, "benchmark": "memory", "case_id": f"nvbandwidth:{name}:gpu{i}",
                             "op": "copy", "bytes": buf, "bytes_moved": moved, "gbps": 2 * gbps,
                             "median_us": t_us, "samples_us": [t_us], "kernel": "nvbandwidth"})
            else:
                t_us = buf / (gbps * 1e3)
                rows.append({**common, "benchmark": "p2p", "case_id": f"nvbandwidth:{name}:{i}",
                             "op": name, "bytes": buf, "gbps": gbps, "median_us": t_us, "samples_us": [t_us]})
    if not rows:
        raise UserError(f"{path}: nvbandwidth output holds no positive bandwidth")
    return pd.DataFrame(rows)


def _nvb_text(text):
    cases, name, values, in_matrix = [], None, [], False
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"Running (\S+?)\.?$", s)
        if m:
            if name and values:
                cases.append((name, values))
            name, values, in_matrix = m.group(1), [], False
            continue
        if name is None:
            continue
        if "bandwidth (GB/s)" in s:
            in_matrix = True
            continue
        if s.startswith("SUM "):
            in_matrix = False
            continue
        toks = s.split()
        if all(t.isdigit() for t in toks):
            continue  # the column-index header of a matrix
        if in_matrix and len(toks) >= 2 and toks[0].isdigit():
            values += [float(t) if _is_num(t) else None for t in toks[1:]]
    if name and values:
        cases.append((name, values))
    return cases


def _nvb_json(path, text):
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not valid nvbandwidth JSON ({exc.msg})") from None
    root = doc.get("nvbandwidth", doc)
    cases = []
    for tc in root.get("testcases", []):
        matrix = tc.get("bandwidth_matrix") or []
        vals = [float(v) if _is_num(str(v)) else None for row in matrix for v in row]
        if vals:
            cases.append((tc.get("name", "unknown"), vals))
    return cases
