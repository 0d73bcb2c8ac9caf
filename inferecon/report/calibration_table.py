"""The table `inferecon calibrate` prints after a fit."""

from __future__ import annotations


def _pct(x):
    return "-" if x is None else f"{100 * x:.1f}%"


def calibration_table(result) -> str:
    """Each fitted term with its form and held-out error, then the profile's headline figures."""
    lines = [f"\ncalibrated {result.profile.display_name}",
             f"{'term':44s} {'form':34s} {'held-out':>9s} {'train':>7s} {'points':>6s}"]
    for r in result.fits:
        flag = "" if r.converged else "  (did not converge: published value kept)"
        lines.append(f"{r.term:44s} {r.form[:34]:34s} {_pct(r.heldout_mape):>9s} {_pct(r.train_mape):>7s} "
                     f"{r.n_points:6d}{flag}")
    p = result.profile
    lines.append(f"\nprofile: peak {peaks_text(result)} TFLOP/s "
                 f"x efficiency {p.compute.efficiency:.3f}; HBM {p.memory.achieved_gbps:.1f} GB/s sustained; "
                 f"launch {p.latency.kernel_launch_us:.2f} µs; {len(p.network.collectives)} collective fits")
    from inferecon.model.uncertain import entries

    lines += ["uncertainty (drawn for every band and interval):"] + [f"  {u.describe()}" for u in entries(p)]
    return "\n".join(lines)


def peaks_text(result) -> str:
    """Each dtype's peak with where it came from: a CPU has no datasheet, so a dtype it did not
    measure (bf16 on CPU) keeps a placeholder that must not read as a measurement."""
    from inferecon.calibration.build import published_base

    matmul = result.tables.get("matmul")
    measured = set(matmul["dtype"]) if matmul is not None and "dtype" in matmul else set()
    # A GPU with a datasheet keeps the datasheet peaks and measures the efficiency against them.
    sheet = published_base(result.profile.display_name)
    sheet = sheet.compute.peak_tflops if sheet is not None else {}
    parts = []
    for dtype, v in result.profile.compute.peak_tflops.items():
        origin = ("datasheet" if sheet.get(dtype) == v else "measured" if dtype in measured
                  else "placeholder, not measured")
        parts.append(f"{dtype} {v:.3g} ({origin})")
    return ", ".join(parts)
