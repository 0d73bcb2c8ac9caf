"""Reader of per-op measurement databases in aiconfigurator-core's layout.

    <root>/<system>/<op>/<backend>/<version>/collection_meta.yaml
    <root>/<system>/<op>/<backend>/<version>/<table>.parquet

`system` is the database's GPU name (h100_sxm, h200_sxm, a100_sxm, b200_sxm …), `op` the op
family (gemm, attention, comm, moe …), `backend` the engine (vllm, sglang, trtllm) or nccl,
`version` that backend's version. aiconfigurator-core ships such a tree for the GPUs NVIDIA
measured; its collector writes the same tree on an operator's own node, so any folder laid
out this way is read the same.

The installed package is found through its distribution metadata, never by importing it
(its top-level module loads a compiled extension that this reader does not need).

What the reader does to each table, so that no caller has to know the database's habits:
- latencies (ms) become `time_us`; NCCL and custom all-reduce message sizes (elements)
  become `message_bytes`; decode attention's KV length is isl + step (the row's `step` is
  the number of tokens already generated after an isl-token prompt), MLA's too, its heads
  those of one GPU over one latent KV head of MLA_LATENT_DIM;
- dtype labels become inferecon's (bfloat16 -> bf16 …);
- each row whose device, framework or version label disagrees with the folder it sits in
  is flagged (`flag` names why; "" for a clean row), and so is each row whose dtype label
  names a kernel the collector did not time (MISLABELLED) — callers leave flagged rows out;
- GEMM rows whose weights fit in L2 are marked `l2_resident` when the caller gives the L2
  size: the tables time GEMMs as CUDA-graph replays, so such weights stay in L2 between
  replays and the row reads faster than a decode step, which streams them from HBM;
- the table's collection metadata (GPU, framework and version, image, collection date) is
  kept as an `OpSource`.
A missing or unreadable table, a table without the columns its kind needs, and metadata
that disagrees with the folder it sits in are one-line `UserError`s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from inferecon.core.errors import UserError, existing_dir
from inferecon.model.opfits import MLA_LATENT_DIM, OpSource

DISTRIBUTION = "aiconfigurator-core"
DATA_SUBPATH = "aiconfigurator_core/systems/data"
META_FILE = "collection_meta.yaml"

# Database dtype labels -> inferecon's names. Labels not listed pass through unchanged.
DTYPES = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float": "fp32", "float32": "fp32",
          "fp8_e4m3": "fp8"}
# Bytes per element of a collective's message, by the table's (raw) dtype label.
MESSAGE_ELEMENT_BYTES = {"half": 2, "float16": 2, "fp16": 2, "bfloat16": 2, "bf16": 2, "int8": 1, "fp8": 1,
                         "uint8": 1, "float": 4, "float32": 4, "fp32": 4}
COLLECTIVES = {"all_reduce": "all_reduce", "allreduce": "all_reduce", "all_gather": "all_gather",
               "reduce_scatter": "reduce_scatter", "alltoall": "all_to_all", "all_to_all": "all_to_all"}
LATENCY_COLUMN = "latency"  # milliseconds in every table of the layout

# Columns each table kind needs (beyond `latency`); a table without them is malformed.
REQUIRED = {
    "gemm_perf": ("gemm_dtype", "m", "n", "k"),
    "generation_attention_perf": ("batch_size", "isl", "step", "num_heads", "num_key_value_heads", "head_dim",
                                  "kv_cache_dtype"),
    "context_attention_perf": ("batch_size", "isl", "num_heads", "num_key_value_heads", "head_dim",
                               "kv_cache_dtype"),
    "generation_mla_perf": ("batch_size", "isl", "step", "num_heads", "kv_cache_dtype"),
    "context_mla_perf": ("batch_size", "isl", "num_heads", "kv_cache_dtype"),
    "nccl_perf": ("op_name", "nccl_dtype", "num_gpus", "message_size"),
    "custom_allreduce_perf": ("allreduce_dtype", "num_gpus", "message_size"),
    "moe_perf": ("moe_dtype", "num_tokens", "hidden_size", "inter_size", "topk", "num_experts", "moe_tp_size",
                 "moe_ep_size"),
    "computescale_perf": ("m", "k", "quant_dtype"),
}


@dataclass(frozen=True)
class OpTable:
    source: OpSource
    rows: "object"  # pandas.DataFrame of normalised columns, `time_us` and `flag` in every one
    path: Path

    @property
    def clean(self):
        """Rows whose labels agree with their metadata (and, for GEMMs, not L2-resident)."""
        df = self.rows
        keep = df["flag"] == ""
        if "l2_resident" in df:
            keep &= ~df["l2_resident"]
        return df[keep]


@dataclass(frozen=True)
class OpDatabase:
    root: Path
    label: str  # "aiconfigurator-core 0.12.0", or the folder given

    def systems(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(q.is_dir() for q in p.iterdir()))

    def backends(self, system: str, op: str) -> list[str]:
        d = self.root / system / op
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def versions(self, system: str, op: str, backend: str) -> list[str]:
        d = self.root / system / op / backend
        if not d.is_dir():
            return []
        return sorted((p.name for p in d.iterdir() if p.is_dir()), key=version_key)

    def tables(self, system: str, op: str, backend: str, version: str) -> list[str]:
        d = self.root / system / op / backend / version
        return sorted(p.stem for p in d.glob("*.parquet"))

    def read(self, system: str, op: str, backend: str, version: str, table: str,
             l2_bytes: float | None = None) -> OpTable:
        folder = self.root / system / op / backend / version
        where = f"{self.label}: {system}/{op}/{backend}/{version}"
        meta = _read_meta(folder / META_FILE, where)
        path = folder / f"{table}.parquet"
        df = _read_parquet(path, f"{where}/{table}.parquet")
        table_meta = (meta.get("tables") or {}).get(table) or {}
        if not isinstance(table_meta, dict):
            raise UserError(f"{where}/{META_FILE}: entry for table {table!r} is not a mapping")
        if "rows" in table_meta and _as_int(table_meta["rows"]) != len(df):
            raise UserError(f"{where}/{table}.parquet: {len(df)} rows, its {META_FILE} records {table_meta['rows']}")
        runtime = meta.get("runtime") or {}
        df = _normalise(df, table, f"{where}/{table}.parquet", l2_bytes)
        df["flag"] = _flags(df, system, backend, version)
        _flag_mislabelled(df, backend, table)
        source = OpSource(
            database=self.label, system=system, op=op, backend=backend, version=version, table=table,
            device=_first_label(df, "device"), provenance=str(meta.get("provenance", "") or ""),
            collected_at=None if table_meta.get("collected_at") is None else str(table_meta["collected_at"]),
            runtime={str(k): str(v) for k, v in runtime.items() if isinstance(v, (str, int, float))},
            rows=int(len(df)), rows_flagged=int((df["flag"] != "").sum()),
            rows_l2_resident=int(df["l2_resident"].sum()) if "l2_resident" in df else 0,
        )
        if table_meta.get("status") not in (None, "complete"):
            source = replace(source, runtime={**source.runtime, "table_status": str(table_meta["status"])})
        return OpTable(source=source, rows=df, path=path)


def installed_database() -> OpDatabase:
    """The tables aiconfigurator-core ships, found through its distribution metadata."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise UserError(f"{DISTRIBUTION} is not installed: pip install 'inferecon[opdb]', "
                        "or give --op-db the folder of a per-op database") from None
    root = Path(str(dist.locate_file(DATA_SUBPATH)))
    if not root.is_dir():
        # An installation that moved its data: find the folder through the file list.
        marker = next((f for f in (dist.files or []) if str(f).replace("\\", "/").endswith("/" + META_FILE)
                       and DATA_SUBPATH in str(f).replace("\\", "/")), None)
        if marker is None:
            raise UserError(f"{DISTRIBUTION} {dist.version} is installed but ships no {DATA_SUBPATH}/")
        text = str(marker).replace("\\", "/")
        root = Path(str(dist.locate_file(text[: text.index(DATA_SUBPATH) + len(DATA_SUBPATH)])))
    return OpDatabase(root=root, label=f"{DISTRIBUTION} {dist.version}")


def open_database(path: str | Path | None) -> OpDatabase:
    """The installed package's tables (path None or ""), or a folder in the same layout."""
    if path is None or str(path) == "":
        return installed_database()
    root = existing_dir(path, "folder", flag="per-op database")
    if (root / DATA_SUBPATH).is_dir():  # the package's own root given
        root = root / DATA_SUBPATH
    db = OpDatabase(root=root, label=str(path))
    if not any((root / s).is_dir() for s in db.systems()):
        raise UserError(f"per-op database {path}: no <system>/<op>/<backend>/<version>/ folders in it")
    return db


def version_key(text: str):
    """Sort key of a version label: 0.5.6.post2 < 0.5.9 < 0.5.14; 1.3.0rc10 < 1.3.0rc20 < 1.3.0."""
    try:
        from packaging.version import InvalidVersion, Version

        try:
            return (0, Version(text), "")
        except InvalidVersion:
            pass
    except ImportError:
        pass
    nums = [int(n) for n in re.findall(r"\d+", text)]
    return (1, tuple(nums), text)


# -- internals ---------------------------------------------------------------------------

def _read_meta(path: Path, where: str) -> dict:
    try:
        import yaml
    except ImportError:
        raise UserError("reading a per-op database needs PyYAML: pip install 'inferecon[opdb]'") from None
    if not path.is_file():
        raise UserError(f"{where}: no {META_FILE}")
    try:
        meta = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}/{META_FILE}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("runtime"), dict):
        raise UserError(f"{where}/{META_FILE}: no 'runtime' mapping (framework, version)")
    folder = path.parent
    backend, version = folder.parent.name, folder.name
    framework = str(meta["runtime"].get("framework", ""))
    meta_version = str(meta["runtime"].get("version", ""))
    # The metadata's framework may carry a variant prefix (wideep_sglang for sglang).
    if backend.lower() not in _alnum(framework):
        raise UserError(f"{where}/{META_FILE}: records framework {framework!r}, the folder says {backend!r}")
    if meta_version != version:
        raise UserError(f"{where}/{META_FILE}: records version {meta_version!r}, the folder says {version!r}")
    return meta


def _read_parquet(path: Path, where: str):
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{where}: missing table")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise UserError(f"{where}: not a readable Parquet table ({type(exc).__name__})") from None


def _alnum(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(text).lower())


def _as_int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _first_label(df, column: str) -> str:
    if column not in df or df.empty:
        return ""
    clean = df[df["flag"] == ""]
    values = (clean if not clean.empty else df)[column].astype(str)
    return str(values.mode().iloc[0])


def _gpu_token(system: str) -> str:
    """The GPU name a system's rows should carry: h100_sxm -> H100, a100_sxm -> A100."""
    return system.split("_")[0].upper()


def _flags(df, system: str, backend: str, version: str):
    """Why each row disagrees with the folder it sits in ("" when it agrees)."""
    import numpy as np

    flag = np.full(len(df), "", dtype=object)
    pattern = re.compile(rf"(?<![A-Z0-9]){re.escape(_gpu_token(system))}(?![A-Z0-9])")
    # Each rule is decided once per distinct label (a table holds a handful among 100k rows).
    rules = (("device", lambda label: pattern.search(label.upper()) is not None),
             ("version", lambda label: label == version),
             # NCCL tables name the engine that drove NCCL, not NCCL: no framework rule there.
             ("framework", (lambda label: _alnum(backend) in _alnum(label)) if backend != "nccl" else None))
    for column, agrees in rules:
        if column not in df or agrees is None:
            continue
        labels = df[column].astype(str)
        bad = [label for label in labels.unique() if not agrees(label)]
        if bad:
            wrong = labels.isin(bad).to_numpy()
            flag[wrong & (flag == "")] = column
    return flag


# Rows whose label names a kernel the collector did not time: (backend, table, dtype) -> the flag.
# SGLang's "int8_wo" GEMM rows: aiconfigurator's collector/sglang/collect_gemm.py, at the versions
# whose tables hold them, quantises the activations per token in PyTorch ops and runs
# sgl_kernel's int8_scaled_mm, a W8A8 kernel ("Dynamically quantize activation, then run int8
# GEMM"), not a weight-only one; on H100 at 8192 x 8192, M = 1, the rows read 50.8 us against
# bf16's 47.8 us for half the weight bytes.
MISLABELLED = {("sglang", "gemm_perf", "int8_wo"): "kernel: W8A8 with dynamic activation quantisation, not weight-only"}


def _flag_mislabelled(df, backend: str, table: str) -> None:
    if "dtype" not in df:
        return
    for (b, t, dtype), why in MISLABELLED.items():
        if b == backend and t == table:
            df.loc[(df["dtype"] == dtype) & (df["flag"] == ""), "flag"] = why


def _need(df, table: str, where: str):
    needed = REQUIRED.get(table, ()) + (LATENCY_COLUMN,)
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise UserError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")


def _normalise(df, table: str, where: str, l2_bytes: float | None):
    import numpy as np
    import pandas as pd

    _need(df, table, where)
    out = pd.DataFrame(index=df.index)
    for label in ("device", "framework", "version"):
        if label in df:
            out[label] = df[label].astype(str)
    latency = pd.to_numeric(df[LATENCY_COLUMN], errors="coerce")
    bad = ~np.isfinite(latency) | (latency <= 0)
    if bad.all():
        raise UserError(f"{where}: no row with a positive, finite latency")
    out["time_us"] = latency * 1e3
    out["kernel"] = df["kernel_source"].astype(str) if "kernel_source" in df else ""
    ints = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
    if table == "gemm_perf":
        from inferecon.model.opfits import GEMM_OPERAND_BYTES

        out["dtype"] = df["gemm_dtype"].astype(str).map(lambda s: DTYPES.get(s, s))
        for c in ("m", "n", "k"):
            out[c] = ints(c)
        wbytes = out["dtype"].map(lambda d: GEMM_OPERAND_BYTES.get(d, (2.0, 2.0, 2.0))[1])
        out["weight_bytes"] = out["n"] * out["k"] * wbytes
        out["l2_resident"] = (out["weight_bytes"] <= l2_bytes) if l2_bytes else False
    elif table in ("generation_attention_perf", "context_attention_perf"):
        out["batch"] = ints("batch_size")
        out["isl"] = ints("isl")
        step = ints("step") if "step" in df else 0
        # Decode rows: the KV cache holds the isl-token prompt plus the `step` tokens generated so far.
        out["kv_len"] = out["isl"] + step if table == "generation_attention_perf" else out["isl"]
        out["n_heads"] = ints("num_heads")
        out["n_kv_heads"] = ints("num_key_value_heads")
        out["head_dim"] = ints("head_dim")
        out["kv_dtype"] = df["kv_cache_dtype"].astype(str).map(lambda s: DTYPES.get(s, s))
        out["window"] = ints("window_size") if "window_size" in df else 0
        out["beam"] = ints("beam_width") if "beam_width" in df else 1
    elif table in ("generation_mla_perf", "context_mla_perf"):
        out["batch"] = ints("batch_size")
        out["isl"] = ints("isl")
        # Prefill rows (context_mla_perf): a prompt of isl tokens, nothing cached before it.
        out["kv_len"] = out["isl"] + ints("step") if table == "generation_mla_perf" else out["isl"]
        # `num_heads` is the heads on one GPU (aiconfigurator queries it at 128 // tp for
        # DeepSeek-V3): MLA decode reads one latent "KV head" of kv_lora_rank + rope dims.
        out["n_heads"] = ints("num_heads")
        out["n_kv_heads"] = 1
        out["head_dim"] = MLA_LATENT_DIM
        out["kv_dtype"] = df["kv_cache_dtype"].astype(str).map(lambda s: DTYPES.get(s, s))
        out["window"] = 0
        out["beam"] = 1
    elif table in ("nccl_perf", "custom_allreduce_perf"):
        dcol = "nccl_dtype" if table == "nccl_perf" else "allreduce_dtype"
        raw = df[dcol].astype(str)
        unknown = sorted(set(raw) - set(MESSAGE_ELEMENT_BYTES))
        if unknown:
            raise UserError(f"{where}: message dtype {unknown[0]!r} has no known element size")
        out["dtype"] = raw.map(lambda s: DTYPES.get(s, s))
        out["world_size"] = ints("num_gpus")
        # Message sizes are element counts in this layout.
        out["message_bytes"] = ints("message_size") * raw.map(MESSAGE_ELEMENT_BYTES)
        if table == "nccl_perf":
            ops = df["op_name"].astype(str)
            unknown = sorted(set(ops) - set(COLLECTIVES))
            if unknown:
                raise UserError(f"{where}: unknown collective {unknown[0]!r}")
            out["collective"] = ops.map(COLLECTIVES)
            out["implementation"] = "nccl"
            out["mode"] = "eager"
        else:
            out["collective"] = "all_reduce"
            tag = (df["backend"].astype(str) if "backend" in df else out["kernel"]).str.lower()
            # TRT-LLM's table records no mode: its all-reduce runs inside the engine's CUDA graph.
            out["mode"] = np.where(tag.str.contains("eager"), "eager", "graph")
    elif table == "moe_perf":
        from inferecon.model.opfits import GEMM_OPERAND_BYTES  # noqa: F401  (dtype names shared)

        out["dtype"] = df["moe_dtype"].astype(str).map(lambda s: DTYPES.get(s, s))
        for src, dst in (("num_tokens", "tokens"), ("hidden_size", "hidden"), ("inter_size", "inter"),
                         ("topk", "topk"), ("num_experts", "experts"), ("moe_tp_size", "tp"), ("moe_ep_size", "ep")):
            out[dst] = ints(src)
        out["distribution"] = df["distribution"].astype(str) if "distribution" in df else "balanced"
    elif table == "computescale_perf":
        out["m"] = ints("m")
        out["k"] = ints("k")
        out["dtype"] = df["quant_dtype"].astype(str)
    numeric = [c for c in out.columns if c not in ("device", "framework", "version", "kernel", "dtype", "kv_dtype",
                                                  "collective", "implementation", "mode", "distribution",
                                                  "l2_resident")]
    nonfinite = out[numeric].isna().any(axis=1) | bad
    out = out[~nonfinite].reset_index(drop=True)
    if out.empty:
        raise UserError(f"{where}: no row with finite numbers")
    return out
