"""The summary table of a run directory (one row per stored case: median, IQR, derived figure,
fraction of the published peak), printed by `bench` and `calibrate`: shared printing lives here
so that no command imports another."""

from __future__ import annotations

import math

BENCHMARKS = ("matmul", "memory", "launch", "collectives")


def published_peak(device_name: str, what: str):
    """Datasheet peak of `what` ("bf16", "fp16", "fp8", "tf32", "fp32" in TFLOP/s; "hbm" in
    GB/s) for a GPU name, or None (CPUs, unknown GPUs, unknown figures)."""
    from inferecon.model.published import match_published

    prof = match_published(device_name)
    if prof is None:
        return None
    if what == "hbm":
        return prof.memory.bandwidth_gbps
    return prof.compute.peak_tflops.get(what)


def _derived(row: dict):
    """(figure, unit, fraction of published peak or None) of one record."""
    bench = row.get("benchmark")
    name = row.get("device_name", "")
    if bench == "matmul":
        v = row.get("tflops")
        peak = published_peak(name, row.get("dtype", ""))
        return v, "TFLOP/s", (v / peak if peak and _ok(v) else None)
    if bench == "memory":
        v = row.get("gbps")
        peak = published_peak(name, "hbm") if row.get("device") == "cuda" else None
        return v, "GB/s", (v / peak if peak and _ok(v) else None)
    if bench == "launch":
        return row.get("time_us"), "us", None
    if bench == "collectives" and _ok(row.get("algbw_gbps")):
        # busbw is 0 by definition at world size 1; algbw still says what one call moved.
        return row["algbw_gbps"], f"GB/s algbw, busbw {_fmt(row.get('busbw_gbps'))}", None
    for key, unit in (("busbw_gbps", "GB/s busbw"), ("gbps", "GB/s"), ("tflops", "TFLOP/s")):
        if key in row and _ok(row[key]):
            return row[key], unit, None
    return None, "", None


def _ok(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def _fmt(v, digits=3) -> str:
    if not _ok(v):
        return "-"
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits - 1}g}"


def summary_rows(run_dir) -> list[list[str]]:
    """One row per stored case, read back from disk: collectives are written by their own
    worker processes, so the files, not this process's memory, are the whole run."""
    from inferecon.harness.store import read_run

    _, tables = read_run(run_dir)
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    rows = []
    for bench in sorted(tables, key=lambda b: (order.get(b, len(order)), b)):
        for r in tables[bench].to_dict(orient="records"):
            fig, unit, frac = _derived(r)
            flags = []
            if r.get("skipped"):
                flags.append(f"skipped: {r['skipped']}")
            if r.get("noisy"):
                flags.append("noisy")
            if r.get("throttled"):
                flags.append("throttled")
            figure = f"{_fmt(fig)} {unit}" if _ok(fig) else "-"
            if bench == "matmul" and _ok(r.get("weight_gbps")):
                figure += f", W {_fmt(r['weight_gbps'])} GB/s"  # decode GEMMs: weight-read bound
            rows.append([bench, str(r["case_id"]), _fmt(r.get("median_us")), _fmt(r.get("iqr_us")), figure,
                         f"{100 * frac:.0f}%" if frac is not None else "-", ", ".join(flags)])
    return rows


def print_summary(store, stream) -> None:
    header = ["benchmark", "case", "median_us", "iqr_us", "figure", "of_peak", "flags"]
    rows = summary_rows(store.run_dir)
    if not rows:
        stream.write("no cases measured\n")
        return
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    stream.write(line(header) + "\n")
    stream.write(line(["-" * w for w in widths]) + "\n")
    for r in rows:
        stream.write(line(r) + "\n")
    stream.flush()
