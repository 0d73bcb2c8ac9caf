"""A HardwareProfile from operators' files alone, with no run directory and no torch: the
network terms come from nccl-tests (or all_reduce_bench) tables and nvbandwidth /
p2pBandwidthLatencyTest matrices, everything else from the named published profile.

Each collective table is fitted on its own (α + bytes/β, 1 to 4 pieces, nested k-fold
held-out error over message sizes) and reported per file; its provenance in the profile names
the file, its sha256 and the lines used. Files are checked against the profile they join: a
table measured on another GPU model, or with another number of GPUs per node, is refused
unless forced, with the reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inferecon.calibration.build import CalibrationResult
from inferecon.calibration.fit import FitResult
from inferecon.calibration.fit_network import fit_points
from inferecon.calibration.fit_uncertainty import calibrated_uncertainty
from inferecon.ingest.files import NcclSpec, read_collective_file, read_link_file
from inferecon.model.published import get_profile, match_published
from inferecon.core.errors import UserError
from inferecon.model.hardware import HardwareProfile, Provenance


@dataclass
class FileFit:
    """One ingested table, its fit and what the report says about it."""

    table: object  # NcclTable
    fits: list  # CollectiveFit per piece
    result: FitResult
    in_profile: bool = True
    why_not: str = ""

    def summary(self) -> dict:
        t, r = self.table, self.result
        sizes = [p.size for p in t.points]
        return {
            "file": t.path, "sha256": t.sha256, "table_line": t.first_line, "collective": t.op,
            "collective_from": t.op_source, "world_size": t.world, "world_from": t.world_source,
            "nodes": t.nodes, "nodes_from": t.nodes_source, "device_name": t.device_name, "mode": t.mode,
            "min_bytes": min(sizes), "max_bytes": max(sizes), "rows_used": r.n_points,
            "lines_used": sorted({int(p.line) for p in t.points}),
            "unreadable_rows": [{"line": ln, "reason": why} for ln, why in t.bad_rows], "notes": t.notes,
            "form": r.form, "pieces": [{"min_bytes": f.min_bytes, "max_bytes": f.max_bytes, "alpha_us": f.alpha_us,
                                        "beta_gbps": f.beta_gbps} for f in self.fits],
            "breaks_bytes": r.extra.get("breaks_bytes", []), "heldout_mape": r.heldout_mape,
            "train_mape": r.train_mape, "in_profile": self.in_profile, "why_not": self.why_not,
        }


def fit_table(table) -> FileFit:
    df = table.frame()
    x, y = df["bytes"].to_numpy(float), df["median_us"].to_numpy(float)
    scope = "inter" if table.nodes > 1 else "intra"
    label = f"network:{table.op}/w{table.world}/{scope}/{table.mode}"
    fits, result = fit_points(table.op, table.world, scope, table.mode, x, y, label)
    result.extra.update({"file": table.path, "sha256": table.sha256, "table_line": table.first_line,
                         "lines_used": sorted({int(v) for v in df["source_line"]}),
                         "world_from": table.world_source, "nodes_from": table.nodes_source})
    return FileFit(table, fits, result)


def _compatible(base: HardwareProfile, device_name: str, per_node, what: str, force: bool) -> str:
    """Why `what` does not belong in a profile of `base` ('' when it does); raises unless
    forced. `per_node`: the GPUs per node the file shows, None where it does not say."""
    why = ""
    other = match_published(device_name) if device_name else None
    if device_name and (other is None or other.name != base.name):
        why = f"measured on {device_name}, not {base.display_name}"
    elif per_node is not None and per_node != base.network.gpus_per_node:
        why = f"{per_node} GPUs per node, the {base.name} profile has {base.network.gpus_per_node}"
    if why and not force:
        raise UserError(f"{what}: {why}; refused (--force to use it anyway)")
    return why


def _per_node(t, gpus_per_node):
    """GPUs per node a table shows: world / nodes where the node count was read, more ranks
    than a node holds on one node; None where nothing says."""
    if t.nodes > 1 and not t.nodes_source.startswith("assumed"):
        return t.world // t.nodes if t.world % t.nodes == 0 else t.world / t.nodes
    if t.nodes == 1 and t.world > gpus_per_node:
        return t.world
    return None


def ingest_files(nccl_specs, link_paths, base: HardwareProfile, force: bool = False):
    """(FileFits, link rows) of the named files, checked against `base`."""
    file_fits = []
    for spec in nccl_specs:
        spec = spec if isinstance(spec, NcclSpec) else NcclSpec.parse(spec)
        for t in read_collective_file(spec, gpus_per_node=base.network.gpus_per_node):
            why = _compatible(base, t.device_name, _per_node(t, base.network.gpus_per_node), t.label, force)
            ff = fit_table(t)
            if why:
                ff.table.notes.append(f"forced in: {why}")
            file_fits.append(ff)
    links = []
    for path in link_paths:
        df = read_link_file(path)
        gpus = int(max(df["src"].max(), df["dst"].max()) + 1) if len(df) else 0
        per_node = gpus if gpus > base.network.gpus_per_node else None
        why = _compatible(base, str(df["device_name"].iloc[0]), per_node, str(path), force)
        if why:
            df = df.assign(note=f"forced in: {why}")
        links.append(df)
    _pick_for_profile(file_fits)
    return file_fits, (pd.concat(links, ignore_index=True) if links else None)


def _pick_for_profile(file_fits):
    """One fit per (collective, world size, scope, mode) in the profile: the first file named
    wins, and the others say so (two tables of one key are two configurations, e.g. NVLS and
    ring, whose points must not be pooled into one line)."""
    seen = {}
    for ff in file_fits:
        f = ff.fits[0]
        key = (f.collective, f.world_size, f.scope, f.mode)
        if key in seen:
            ff.in_profile = False
            ff.why_not = f"{seen[key]} already gives {f.collective} over {f.world_size} ranks ({f.scope})"
            ff.result.term = f"{ff.result.term} [{ff.table.label}]"  # both stay in the report, told apart
        else:
            seen[key] = ff.table.label


def link_results(links: pd.DataFrame | None) -> list[FitResult]:
    """Median GB/s per direction of each link kind, with its spread over GPU pairs."""
    out = []
    if links is None:
        return out
    for (bench, op), g in links[links["benchmark"].isin(["p2p", "host_link"])].groupby(["benchmark", "op"]):
        v = g["gbps"].to_numpy(float)
        med = float(np.median(v))
        q1, q3 = np.percentile(v, [25, 75])
        out.append(FitResult(f"link:{op}", "median over GPU pairs (GB/s per direction)", {"gbps": med},
                             {"gbps": float(q3 - q1) / 1.349 / np.sqrt(len(v))}, float(np.mean(np.abs(v - med) / med)),
                             None, len(v), extra={"files": sorted(set(g["source"])),
                                                  "sha256": sorted(set(g["source_sha256"])),
                                                  "lines_used": sorted({int(x) for x in g["source_line"]})}))
    return out


def profile_from_files(nccl_specs, link_paths, gpu: str, force: bool = False) -> CalibrationResult:
    base = get_profile(gpu)
    if not nccl_specs and not link_paths:
        raise UserError("calibrate from files needs --nccl-tests FILE or --nvbandwidth FILE")
    file_fits, links = ingest_files(nccl_specs, link_paths, base, force)
    used = [ff for ff in file_fits if ff.in_profile]
    net = dataclasses.replace(base.network, collectives=[f for ff in used for f in ff.fits])
    fits = [ff.result for ff in file_fits]
    kept = ["arithmetic (published)", "memory (published)", "latency (published)"]
    lr = link_results(links)
    fits += lr
    p2p = next((r for r in lr if r.term == "link:d2d"), None)
    if p2p is not None:
        # A GPU-to-GPU copy is the NVLink path every intra-node collective rides: its measured
        # GB/s per direction replaces the published efficiency cap of that link.
        eff = p2p.params["gbps"] / base.network.intra.bandwidth_gbps
        net = dataclasses.replace(net, intra=dataclasses.replace(net.intra, efficiency=eff))
    else:
        kept.append("network: intra-node link efficiency (no GPU-to-GPU copy matrix)")
    if not used:
        kept.append("network: collectives (no nccl-tests table)")
    notes = [f"kept {k}" for k in kept]
    for ff in file_fits:
        if not ff.in_profile:
            notes.append(f"{ff.table.label}: fitted and reported, not in the profile ({ff.why_not})")
        notes += [f"{ff.table.label}: {n}" for n in ff.table.notes]
    if links is not None and "note" in links:
        notes += sorted({f"{s}: {n}" for s, n in zip(links["source"], links["note"]) if isinstance(n, str)})
    unused = [] if links is None else sorted(set(links.loc[links["benchmark"] == "memory", "source"]))
    notes += [f"{u}: local-copy bandwidth reported, not used (the memory term stays published)" for u in unused]
    sources = sorted({ff.table.path + " sha256:" + ff.table.sha256 for ff in file_fits})
    if links is not None:
        sources += sorted({f"{s} sha256:{h}" for s, h in zip(links["source"], links["source_sha256"])})
    profile = HardwareProfile(
        name=f"{base.name}-from-files", display_name=f"{base.display_name} (network from operators' files)",
        compute=base.compute, memory=base.memory, network=net,  # the published network, files' terms in
        latency=base.latency, price_usd_per_gpu_hour=base.price_usd_per_gpu_hour,
        provenance=Provenance(kind="calibrated", sources=sources + [f"base: {base.name} published profile"],
                              run_id=None, versions={},
                              fit_quality={ff.result.term: ff.result.quality() for ff in file_fits}
                              | {r.term: r.quality() for r in lr},
                              notes=notes),
        # Published ranges stay for what the files do not measure; the fitted collectives
        # bring their held-out error (calibration/fit_uncertainty.py).
        uncertainty=calibrated_uncertainty(base.uncertainty, "from files",
                                           collectives=[ff.result for ff in used]),
    )
    tables = {"collectives": pd.concat([ff.table.frame() for ff in used], ignore_index=True)} if used else {}
    if links is not None:
        for bench, g in links.groupby("benchmark"):
            tables[bench] = g
    return CalibrationResult(profile, fits, missing=[], kept_published=kept, tables=tables, file_fits=file_fits)

