"""nccl-tests output as it appears in the wild, read into collective measurement rows.

Real logs are rarely the clean table of the README: `mpirun --tag-output` puts `[1,0]<stdout>:`
before every line (and again mid-line where two writes interleave), `srun -l` puts `0: `,
job runners prefix timestamps or host names or drop the leading `#` of comment lines,
NCCL_DEBUG=INFO lines from other ranks land between rows, a file may hold several tables,
the device list may be missing, and `#wrong` may read `N/A`. This reader takes a row wherever
it finds `size count type ...` followed by the timing columns, names every row it could not
read by line number, and says where the world size and node count came from:

- "device list": the `# Rank N ... on HOST device ...` lines (ranks, distinct hosts);
- "count column": size / (count x type bytes) — exact for all_gather, reduce_scatter and
  alltoall, whose `size` is the total over ranks (nccl-tests' doc/PERFORMANCE.md);
- "busbw/algbw": the integer n whose nccl-tests factor (2(n-1)/n for all_reduce, (n-1)/n for
  the gathers) matches every row with algbw >= 1 GB/s within the table's two-decimal
  rounding: below that the rounding, not the factor, decides the ratio;
- "user": `FILE:op:world:nodes`; nodes with no device list and no user figure are
  "assumed" to be world / GPUs per node.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from inferecon.core.busfactor import bus_factor
from inferecon.core.errors import UserError

# nccl-tests binary stem -> inferecon op name
OPS = {
    "all_reduce": "all_reduce", "allreduce": "all_reduce",
    "all_gather": "all_gather", "allgather": "all_gather",
    "reduce_scatter": "reduce_scatter", "reducescatter": "reduce_scatter",
    "alltoall": "all_to_all", "all_to_all": "all_to_all",
    "sendrecv": "send_recv", "send_recv": "send_recv",
    "broadcast": "broadcast",
    "reduce": "reduce",
}
# busbw = algbw x factor: nccl-tests' table, kept once in core/busfactor.py
# ops whose `size` column is the total over ranks and `count` the per-rank share
_TOTAL_SIZE_OPS = ("all_gather", "reduce_scatter", "all_to_all")
DTYPE_BYTES = {
    "int8": 1, "uint8": 1, "char": 1, "int32": 4, "uint32": 4, "int": 4, "int64": 8, "uint64": 8,
    "half": 2, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "float": 4, "float32": 4,
    "double": 8, "float64": 8, "f8e4m3": 1, "f8e5m2": 1, "fp8_e4m3": 1, "fp8_e5m2": 1,
}
REDOPS = {"sum", "prod", "max", "min", "avg", "none", "premulsum", "mulsum"}
BUSBW_CHECK_MIN_ALGBW_GBPS = 1.0  # two-decimal rounding is < 1% of the ratio above this
ROUND_GBPS = 0.005  # nccl-tests prints bandwidths with two decimals

# Launcher prefixes that may appear anywhere in a line (Open MPI repeats its tag mid-line when
# two writes of one rank interleave).
_TAG = re.compile(r"\[\d+,\d+\]<(?:stdout|stderr)>:")
_RANK_LINE = re.compile(r"\bRank\s+(\d+)\b(?:\s+Group\s+\d+)?(?:\s+Pid\s+\d+)?\s+on\s+(\S+)\s+device\s+(\d+)\s+"
                        r"\[[^\]]*\]\s+(.+?)\s*$")
_ROW = re.compile(r"(?<![\w.:/-])(\d+)\s+(\d+)\s+([A-Za-z][A-Za-z0-9_]*)\s+(.*)$")
_HEADER = re.compile(r"\bsize\b.*\bcount\b.*\btype\b.*\btime\b.*\balgbw\b.*\bbusbw\b|"
                     r"\bbytes\b.*\bN\b.*\btype\b.*\btime\b.*\balgbw\b")


class Point(NamedTuple):
    """One timed side of one table row."""

    line: int  # line in the file (result index for JSON)
    size: int  # bytes, nccl-tests' size column
    count: int
    dtype: str
    side: str  # "out" (out-of-place) or "in" (in-place)
    time_us: float
    algbw_gbps: float
    busbw_gbps: float


@dataclass
class NcclTable:
    """One nccl-tests table and what is known about it."""

    path: str
    sha256: str
    op: str
    op_source: str
    world: int
    world_source: str
    nodes: int
    nodes_source: str
    device_name: str = ""
    mode: str = "eager"
    first_line: int = 0
    points: list = field(default_factory=list)  # [Point]
    bad_rows: list = field(default_factory=list)  # (line, reason)
    notes: list = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{Path(self.path).name}#{self.first_line}"

    def frame(self) -> pd.DataFrame:
        """Measurement rows in the collectives record format, one per message size: the faster
        of the out-of-place and in-place timings. NCCL runs the same algorithm on the same
        bytes either way; where the two differ a lot, the slower one was disturbed (the first
        row of a run pays warm-up; real tables hold single rows 2-4x slow on one side only)."""
        best = {}
        for p in self.points:
            if p.size not in best or p.time_us < best[p.size].time_us:
                best[p.size] = p
        return pd.DataFrame(rows_for(self, [best[s] for s in sorted(best)]))


def rows_for(t: NcclTable, points) -> list[dict]:
    out = []
    for line, size, _count, _dtype, side, t_us, algbw, busbw in points:
        out.append({
            "benchmark": "collectives", "benchmark_version": 0, "schema_version": 1,
            "case_id": f"nccl-tests:{t.op}/{t.mode}/{side}/{int(size)}B/w{t.world}n{t.nodes}",
            "device": "cuda", "device_name": t.device_name, "gpu_count": t.world,
            "op": t.op, "mode": t.mode, "placement": side, "bytes": int(size), "world_size": t.world,
            "nodes": t.nodes, "gpus_per_node": max(1, t.world // max(t.nodes, 1)),
            "scope": "inter" if t.nodes > 1 else "intra", "backend": "nccl",
            "samples_us": [float(t_us)], "median_us": float(t_us), "iqr_us": 0.0, "reps": 1,
            "noisy": False, "throttled": False, "skipped": "", "algbw_gbps": float(algbw),
            "busbw_gbps": float(busbw), "source": t.path, "source_line": int(line), "source_table": t.label,
        })
    return out


@dataclass(frozen=True)
class NcclSpec:
    """What the user said about a file: `FILE[:op[:world[:nodes]]]`."""

    path: str
    op: str | None = None
    world: int | None = None
    nodes: int | None = None

    @classmethod
    def parse(cls, spec: str) -> "NcclSpec":
        if Path(spec).exists():
            return cls(spec)
        parts = spec.split(":")
        # The path itself may hold a colon: take the longest existing prefix.
        for cut in range(len(parts), 0, -1):
            if Path(":".join(parts[:cut])).exists():
                path, rest = ":".join(parts[:cut]), parts[cut:]
                break
        else:
            path, rest = parts[0], parts[1:]
        if len(rest) > 3:
            raise UserError(f"--nccl-tests {spec}: expected FILE[:op[:world[:nodes]]]")
        op = _op_name(rest[0]) if rest and rest[0] else None
        if rest and rest[0] and op is None:
            raise UserError(f"--nccl-tests {spec}: unknown collective {rest[0]!r} "
                            f"(one of {', '.join(sorted(set(OPS.values())))})")
        nums = []
        for what, v in zip(("world size", "node count"), rest[1:]):
            if not v.isdigit() or int(v) < 1:
                raise UserError(f"--nccl-tests {spec}: {what} must be a positive integer, got {v!r}")
            nums.append(int(v))
        world = nums[0] if nums else None
        nodes = nums[1] if len(nums) > 1 else None
        if world and nodes and nodes > world:
            raise UserError(f"--nccl-tests {spec}: {nodes} nodes cannot hold {world} ranks")
        return cls(path, op, world, nodes)


def _op_name(text: str) -> str | None:
    t = text.lower().replace("-", "_")
    for key in sorted(OPS, key=len, reverse=True):
        if re.search(rf"(?<![a-z]){key}(?:_perf|\b|_)", t) or t == key:
            return OPS[key]
    return None


def _clean(line: str) -> str:
    line = _TAG.sub(" ", line)
    # srun -l / pdsh style "N: " or "host: " prefixes and leading timestamps, in either order.
    for _ in range(3):
        before = line
        line = re.sub(r"^\s*\[?(?:\d{4}-\d\d-\d\d[T ])?\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?\]?\s+",
                      "", line)
        line = re.sub(r"^\s*[\w.-]+:\s(?=\s*[#\d\[]|\s*$|\s*[A-Za-z])", "", line, count=1)
        if line == before:
            break
    return line.rstrip()


def _num(tok: str) -> float | None:
    try:
        v = float(tok)
    except ValueError:
        return None
    return v if math.isfinite(v) else None


def read_nccl_tests(spec: NcclSpec | str, gpus_per_node: int = 8) -> list[NcclTable]:
    """Every table of one nccl-tests output file (text or -J JSON)."""
    spec = NcclSpec.parse(spec) if isinstance(spec, str) else spec
    path = Path(spec.path)
    try:
        raw = path.read_bytes()
        text = raw.decode("utf-8", errors="replace")
    except OSError as exc:
        raise UserError(f"{path}: cannot read nccl-tests output ({exc.strerror or exc})") from None
    sha = hashlib.sha256(raw).hexdigest()
    if text.lstrip().startswith("{"):
        tables = [_json_table(path, text, sha, spec, gpus_per_node)]
    else:
        tables = _text_tables(path, text, sha, spec, gpus_per_node)
    return tables


# --------------------------------------------------------------------------------------------
# text


@dataclass
class _Block:
    first_line: int
    header: list | None = None
    time_unit: str | None = None
    rows: list = field(default_factory=list)  # (line, _ROW match)
    bad: list = field(default_factory=list)


def _text_tables(path, text, sha, spec, gpus_per_node):
    ranks: dict[int, tuple[str, str]] = {}
    program = graph = None
    blocks: list[_Block] = []
    meta_for: list[tuple[dict, str | None, int | None]] = []  # ranks, program, graph at each block
    cur: _Block | None = None
    file_op = _op_name_in_text(text)
    for lineno, line in enumerate(text.splitlines(), 1):
        s = _clean(line)
        body = s.lstrip("#> ").strip()
        m = _RANK_LINE.search(s)
        if m:
            if cur is not None and cur.rows:  # a new device list starts a new run
                cur, ranks = None, {}
            ranks[int(m.group(1))] = (m.group(2), m.group(4))
            continue
        m = re.search(r"Collective test starting:\s*(\S+)", s)
        if m:
            program, cur = m.group(1), None
            continue
        m = re.search(r"\bnThread\s+\d+\s+nGpus\s+\d+", s)
        if m:
            if cur is not None and cur.rows:
                cur = None
                ranks = {}
            g = re.search(r"\bgraph:\s*(\d+)", s)
            graph = int(g.group(1)) if g else graph
            continue
        if _HEADER.search(body):
            cols = [c.lower() for c in body.split()]
            if cur is None or cur.rows:
                cur = _Block(lineno)
                blocks.append(cur)
                meta_for.append((dict(ranks), program, graph))
            cur.header = cols
            continue
        if "(us)" in body or "(ms)" in body:
            if cur is not None and not cur.rows:
                cur.time_unit = "ms" if "(ms)" in body and "(us)" not in body else "us"
            continue
        m = _ROW.search(s)
        if not m or (s.lstrip().startswith("#")):
            continue
        if not _looks_like_row(m):
            # A log line that happens to start with two numbers is no row; one shaped exactly
            # like the table's rows but with a type this reader does not know is named.
            if cur is not None and cur.header and len(m.group(4).split()) + 3 == len(cur.header):
                cur.bad.append((lineno, f"unknown data type {m.group(3)!r}"))
            continue
        if cur is None:
            # Rows with no column header above them (a header lost on the way): a block anyway.
            cur = _Block(lineno)
            blocks.append(cur)
            meta_for.append((dict(ranks), program, graph))
        cur.rows.append((lineno, m))
    tables = []
    bad_everywhere = []
    for block, (rk, prog, gr) in zip(blocks, meta_for):
        if not block.rows:
            bad_everywhere += block.bad
            continue
        t = _table_from_block(path, sha, spec, gpus_per_node, block, rk, prog or file_op, gr)
        if t is not None:
            tables.append(t)
        else:
            bad_everywhere += block.bad
    if not tables:
        where = f" (unreadable rows at lines {', '.join(str(b[0]) for b in bad_everywhere[:5])})" if bad_everywhere else ""
        raise UserError(f"{path}: no nccl-tests result rows found{where}; is this a *_perf output?")
    return tables


def _op_name_in_text(text: str) -> str | None:
    m = re.search(r"Collective test (?:starting|concluded):\s*(\S+)", text)
    if m:
        return m.group(1)
    m = re.search(r"\b([a-z_]+)_perf(?:_mpi)?\b", text)
    return m.group(1) if m and _op_name(m.group(1)) else None


def _looks_like_row(m) -> bool:
    return m.group(3).lower() in DTYPE_BYTES


def _row_values(block: _Block, m):
    """(count, dtype, [(side, time, algbw, busbw)]) of one row, or a reason it cannot be read."""
    count, dtype, rest = int(m.group(2)), m.group(3).lower(), m.group(4)
    toks = rest.split()
    # Header-driven where the header's column list matches the row.
    if block.header and len(block.header) == len(toks) + 3:
        cols = block.header[3:]
        sides = []
        seen = 0
        for i, c in enumerate(cols):
            if c == "time":
                seen += 1
                side = "out" if seen == 1 else "in"
                try:
                    j = cols.index("algbw", i)
                    k = cols.index("busbw", i)
                except ValueError:
                    return "no algbw/busbw columns after time"
                w = cols.index("#wrong", k) if "#wrong" in cols[k:] else None
                if w is not None and _num(toks[w]) and _num(toks[w]) > 0:
                    return f"{toks[w]} wrong elements in the {side}-of-place result (nccl-tests' data check failed)"
                sides.append((side, toks[i], toks[j], toks[k]))
        out = []
        for side, t, a, b in sides:
            tv, av, bv = _num(t), _num(a), _num(b)
            if tv is None and t.upper() == "N/A":
                continue
            if None in (tv, av, bv):
                return f"non-numeric timing ({t} {a} {b})"
            out.append((side, tv, av, bv))
        return count, dtype, out
    # Positional: [redop] [root] then groups of time algbw busbw wrong.
    i = 0
    if i < len(toks) and toks[i].lower() in REDOPS:
        i += 1
    if i < len(toks) and re.fullmatch(r"-?\d+", toks[i]) and len(toks) - i - 1 in (3, 4, 6, 7, 8):
        i += 1
    rest = toks[i:]
    wrongs = [rest[3], rest[7]] if len(rest) == 8 else [rest[3]] if len(rest) == 4 else []
    if any(_num(w) and _num(w) > 0 for w in wrongs):  # "N/A" (no check) and 0 pass
        return f"#wrong {'/'.join(wrongs)}: nccl-tests' data check failed"
    if len(rest) == 8:
        groups = [("out", rest[0:3]), ("in", rest[4:7])]
    elif len(rest) == 6:
        groups = [("out", rest[0:3]), ("in", rest[3:6])]
    elif len(rest) in (3, 4):
        groups = [("out", rest[0:3])]
    else:
        return f"{len(toks)} columns after the type, expected time algbw busbw [#wrong] per side"
    out = []
    for side, (t, a, b) in groups:
        tv, av, bv = _num(t), _num(a), _num(b)
        if None in (tv, av, bv):
            return f"non-numeric timing ({t} {a} {b})"
        out.append((side, tv, av, bv))
    return count, dtype, out


def _table_from_block(path, sha, spec, gpus_per_node, block, ranks, program, graph):
    points, bad = [], list(block.bad)
    for lineno, m in block.rows:
        got = _row_values(block, m)
        if isinstance(got, str):
            bad.append((lineno, got))
            continue
        count, dtype, sides = got
        size = int(m.group(1))
        why = _inconsistent(size, sides, block.time_unit)
        if why:
            bad.append((lineno, why))
            continue
        for side, t, a, b in sides:
            points.append(Point(lineno, size, count, dtype, side, t, a, b))
    block.bad = bad
    if not points:
        return None
    op, op_source = _resolve_op(path, spec, program)
    # Time unit: the header says, else algbw does (old versions printed ms).
    unit = block.time_unit
    if unit is None:
        ratios = [p.size / (p.algbw_gbps * 1e3) / p.time_us for p in points
                  if p.algbw_gbps >= BUSBW_CHECK_MIN_ALGBW_GBPS and p.time_us > 0]
        unit = "ms" if ratios and sorted(ratios)[len(ratios) // 2] > 30 else "us"
    if unit == "ms":
        points = [p._replace(time_us=p.time_us * 1e3) for p in points]
    notes = []
    seen: dict[tuple, int] = {}
    for p in points:
        seen[p.size, p.side] = seen.get((p.size, p.side), 0) + 1
    repeated = sorted({size for (size, _), k in seen.items() if k > 1})
    if repeated:
        # Two runs writing into one log (e.g. one job launched twice) repeat every size.
        notes.append(f"{len(repeated)} sizes appear more than once in this table (interleaved runs?); "
                     "the fastest of each is used")
    zero = [p for p in points if p.size == 0]
    if zero:
        notes.append(f"{len({p.line for p in zero})} rows of size 0 (fewer elements than ranks) not used")
        points = [p for p in points if p.size > 0]
    world, world_source, nodes, nodes_source, device = world_and_nodes(path, spec, op, ranks, points, gpus_per_node)
    check_factor(path, op, world, world_source, points)
    _check_redop(path, op, block)  # after the factor: same-factor collectives (all_gather, reduce_scatter)
    t = NcclTable(str(path), sha, op, op_source, world, world_source, nodes, nodes_source,
                  device_name=device, mode="graph" if graph else "eager", first_line=block.first_line,
                  points=points, bad_rows=bad, notes=notes)
    return t


# nccl-tests prints "none" in the redop column of the collectives that do not reduce, and the
# operator (sum ...) for those that do: a table whose redop contradicts its collective is another
# collective's table (two logs concatenated, all_gather's name on a reduce_scatter table).
_REDUCING = {"all_reduce", "reduce_scatter", "reduce"}
_NON_REDUCING = {"all_gather", "broadcast", "all_to_all"}


def _check_redop(path, op, block) -> None:
    idx = block.header.index("redop") - 3 if block.header and "redop" in block.header else None
    for lineno, m in block.rows:
        toks = m.group(4).split()
        if idx is not None and 0 <= idx < len(toks):
            redop = toks[idx].lower()
        elif toks and toks[0].lower() in REDOPS:
            redop = toks[0].lower()
        else:
            continue
        if (op in _REDUCING and redop == "none") or (op in _NON_REDUCING and redop not in ("none", "")):
            raise UserError(f"{path}:{lineno}: this row's redop is {redop!r}, but {op} "
                            f"{'reduces' if op in _REDUCING else 'does not reduce'}: a table of another "
                            "collective (concatenated logs?); split the file or name each table's collective")


def _inconsistent(size, sides, unit) -> str:
    """Why a parsed row is not an nccl-tests row ('' when it is): algbw must be size / time
    (to the printed rounding), whichever unit the time column is in."""
    for side, t, a, b in sides:
        if t <= 0 or a < 0 or b < 0:
            return f"{side}-of-place time {t} / bandwidths {a} {b} out of range"
        if size == 0 or a < 2 * ROUND_GBPS:
            continue
        scale = {"us": [1e3], "ms": [1e6]}.get(unit or "", [1e3, 1e6])
        if not any(abs(size / (t * k) - a) <= ROUND_GBPS + 0.01 * a for k in scale):
            return f"algbw {a} is not size / time ({size} B / {t})"
    return ""


def _resolve_op(path, spec, program):
    if spec.op:
        return spec.op, "user"
    for text, source in ((program, "file"), (path.name, "file name")):
        op = _op_name(text or "")
        if op:
            return op, source
    raise UserError(f"{path}: cannot tell which collective this nccl-tests output measured; "
                    "name it, e.g. --nccl-tests FILE:all_reduce")


def world_and_nodes(path, spec, op, ranks, points, gpus_per_node):
    device = ""
    if ranks:
        hosts = {h for h, _ in ranks.values()}
        device = next(iter(ranks.values()))[1]
    if spec.world:
        world, wsrc = spec.world, "user"
    elif ranks:
        world, wsrc = len(ranks), "device list"
    else:
        world, wsrc = _world_from_counts(op, points), "count column"
        if world is None:
            world, wsrc = _world_from_ratio(path, op, points), "busbw/algbw"
    if spec.nodes:
        nodes, nsrc = spec.nodes, "user"
    elif ranks:
        nodes, nsrc = len(hosts), "device list"
    else:
        nodes, nsrc = max(1, math.ceil(world / gpus_per_node)), f"assumed ({gpus_per_node} GPUs per node)"
    return world, wsrc, nodes, nsrc, device


def _world_from_counts(op, points):
    if op not in _TOTAL_SIZE_OPS:
        return None
    ns = set()
    for p in points:
        if p.count > 0 and p.dtype in DTYPE_BYTES:
            ns.add(p.size / (p.count * DTYPE_BYTES[p.dtype]))
    ns = {round(n) for n in ns if abs(n - round(n)) < 1e-9}
    return ns.pop() if len(ns) == 1 and next(iter(ns)) >= 2 else None


def _consistent(op, n, points) -> bool:
    f = bus_factor(op, n)
    for p in points:
        a, b = p.algbw_gbps, p.busbw_gbps
        if a >= BUSBW_CHECK_MIN_ALGBW_GBPS and abs(b - f * a) > ROUND_GBPS * (1 + f) + 1e-9 + 1e-6 * b:
            return False
    return True


def _world_from_ratio(path, op, points):
    if bus_factor(op, 2) == bus_factor(op, 3):
        raise UserError(f"{path}: no device list, and {op}'s busbw equals its algbw at any world size: "
                        f"give it as FILE:{op}:WORLD[:NODES]")
    big = [p for p in points if p.algbw_gbps >= BUSBW_CHECK_MIN_ALGBW_GBPS]
    if not big:
        raise UserError(f"{path}: no device list and no row with algbw >= {BUSBW_CHECK_MIN_ALGBW_GBPS} GB/s "
                        f"to read the world size from: give it as FILE:{op}:WORLD[:NODES]")
    fits = [n for n in range(2, 4097) if _consistent(op, n, big)]
    if len(fits) != 1:
        what = "no" if not fits else f"{len(fits)} ({fits[0]}..{fits[-1]})"
        raise UserError(f"{path}: no device list, and {what} world sizes match busbw/algbw: "
                        f"give it as FILE:{op}:WORLD[:NODES]")
    return fits[0]


def check_factor(path, op, world, source, points):
    """A table whose busbw/algbw is not nccl-tests' factor for this op and world size was
    mislabelled (another collective, or another rank count): refuse it rather than mis-fit."""
    if _consistent(op, world, points):
        return
    f = bus_factor(op, world)
    bad = next(p for p in points if not _consistent(op, world, [p]))
    raise UserError(f"{path}:{bad.line}: busbw/algbw = {bad.busbw_gbps / bad.algbw_gbps:.4f} at {bad.size} B, but {op} over "
                    f"{world} ranks ({source}) has factor {f:.4f}: wrong collective or rank count?")


# --------------------------------------------------------------------------------------------
# -J JSON


def _json_table(path, text, sha, spec, gpus_per_node):
    """The table of an nccl-tests -J document, every field read as untrusted data (ingest/fields.py):
    a wrong type is refused naming the field; rows whose data check failed (nwrong > 0) or whose
    alg_bw is not size / time (times in another unit than nccl-tests' µs) are not fitted."""
    from inferecon.ingest.fields import JsonFields

    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{exc.lineno}: not valid nccl-tests JSON ({exc.msg})") from None
    except RecursionError:
        raise UserError(f"{path}: JSON nested too deeply to be an nccl-tests -J document") from None
    except ValueError as exc:  # a number of more than 4,300 digits
        raise UserError(f"{path}: not an nccl-tests -J document ({exc})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: not an nccl-tests -J document (a JSON object with results)")
    f = JsonFields(path, "nccl-tests -J document")
    cfg = f.obj(doc.get("config"), "config", required=False) or {}
    devices = f.items(cfg.get("devices", doc.get("devices")), "config.devices", required=False)
    ranks = {}
    for i, d in enumerate(devices):
        d = f.obj(d, f"config.devices[{i}]")
        rank = f.whole(d.get("rank", i), f"config.devices[{i}].rank", 0, 1 << 20)
        ranks[rank] = (str(d.get("hostname", "")), str(d.get("device_info", "")))
    args = f.items(doc.get("args"), "args", required=False)
    program = next((a for a in args if isinstance(a, str) and "_perf" in a), None)
    op, op_source = _resolve_op(path, spec, program)
    points, bad = [], []
    results = f.items(doc.get("results"), "results")
    for i, r in enumerate(results):
        where = f"results[{i}]"
        r = f.obj(r, where)
        size = f.whole(r.get("size"), f"{where}.size", 0, 1 << 50)
        count = f.whole(r.get("count", 0), f"{where}.count", 0, 1 << 50)
        dtype = (f.text(r.get("type"), f"{where}.type") or "float").lower()
        sides = []
        for side, key in (("out", "out_of_place"), ("in", "in_place")):
            body = f.obj(r.get(key), f"{where}.{key}", required=False)
            if not body:
                continue
            t = f.number(body.get("time", body.get("cpu_time")), f"{where}.{key}.time", 0, 1e12, unit="us")
            a = f.number(body.get("alg_bw"), f"{where}.{key}.alg_bw", 0, 1e6, unit="GB/s")
            b = f.number(body.get("bus_bw"), f"{where}.{key}.bus_bw", 0, 1e6, unit="GB/s")
            wrong = f.number(body.get("nwrong", body.get("wrong")), f"{where}.{key}.nwrong", 0, required=False)
            if wrong:
                bad.append((i, f"{where}.{key}: {wrong:g} wrong elements (nccl-tests' data check failed)"))
                continue
            sides.append((side, t, a, b))
        why = _inconsistent(size, sides, "us")  # -J times are in µs: alg_bw must equal size / time
        if why:
            # nccl-tests computes alg_bw from the time it writes, at full precision here: one
            # result that disagrees means the times were edited or converted (x1000: ms read as
            # µs), and the rows that pass (too small to check) would carry the same error.
            raise UserError(f"{path}: {where}: {why} with the time in µs, as nccl-tests writes it: times in "
                            "another unit, or an edited file? (refused: no fit from it)")
        points += [Point(i, size, count, dtype, side, t, a, b) for side, t, a, b in sides]
    if not points:
        reasons = "; ".join(b for _, b in bad[:3])
        raise UserError(f"{path}: no usable nccl-tests results in this JSON" + (f" ({reasons})" if reasons else ""))
    zero = [p for p in points if p.size == 0]
    points = [p for p in points if p.size > 0]
    if not points:
        raise UserError(f"{path}: every nccl-tests result has size 0: nothing to fit")
    world, wsrc, nodes, nsrc, device = world_and_nodes(path, spec, op, ranks, points, gpus_per_node)
    check_factor(path, op, world, wsrc, points)
    graph = f.whole(cfg.get("graph", 0), "config.graph", 0, 1 << 30, required=False) or 0
    mode = "graph" if graph else "eager"
    notes = [f"{len(zero)} results of size 0 not used"] if zero else []
    return NcclTable(str(path), sha, op, op_source, world, wsrc, nodes, nsrc, device_name=device, mode=mode,
                     first_line=1, points=points, bad_rows=bad, notes=notes)
