"""Band widths of the frontier at its fastest and its cheapest point.

    python benchmarks/uncertainty_bands.py [PROFILE.json ...]

For Llama 3 70B (context 4096, 16-bit) on the published H100 profile and on each calibrated
profile given (default: tests/fixtures/uncertainty/cpu_calibrated_profile.json, a real
`inferecon calibrate --device cpu --quick` run on the 2-core CI machine, searched up to 64
"GPUs" = CPU sockets), prints the 90% interval of speed and of $/M tokens, its width relative
to the point figure ((hi - lo) / point), and the point's probability of staying Pareto-optimal.
"""

from __future__ import annotations

import sys

from inferecon.model.published import get_profile
from inferecon.model.catalog import get_model
from inferecon.model.frontier import SearchSpace, search_near
from inferecon.model.hardware import HardwareProfile
from inferecon.model.uncertainty import frontier_band

DEFAULT_CALIBRATED = "tests/fixtures/uncertainty/cpu_calibrated_profile.json"


def report(label: str, hw: HardwareProfile, max_gpus: int) -> None:
    model = get_model("llama-3-70b")
    front, near = search_near(model, hw, 4096, SearchSpace(max_gpus=max_gpus))
    cols = frontier_band(model, hw, front, 4096, near)
    print(f"{label}: {len(front)} frontier points, {len(near)} near neighbours, "
          f"{len(hw.uncertainty)} uncertain parameters")
    for name, i in (("fastest", int(front["tokens_per_s_per_seq"].idxmax())),
                    ("cheapest", int(front["usd_per_mtok"].idxmin()))):
        s, c = front["tokens_per_s_per_seq"].iloc[i], front["usd_per_mtok"].iloc[i]
        s_lo, s_hi = cols["tokens_per_s_per_seq_lo"][i], cols["tokens_per_s_per_seq_hi"][i]
        c_lo, c_hi = cols["usd_per_mtok_lo"][i], cols["usd_per_mtok_hi"][i]
        print(f"  {name:8}: {s:.3g} tok/s/seq [{s_lo:.3g}-{s_hi:.3g}] width {100 * (s_hi - s_lo) / s:.0f}%; "
              f"${c:.4g}/Mtok [{c_lo:.4g}-{c_hi:.4g}] width {100 * (c_hi - c_lo) / c:.0f}%; "
              f"P(optimal) {cols['p_pareto'][i]:.2f}")


def main(paths: list[str]) -> None:
    report("h100-sxm (published)", get_profile("h100-sxm"), 512)
    for path in paths or [DEFAULT_CALIBRATED]:
        report(f"{path} (calibrated)", HardwareProfile.load(path), 64)


if __name__ == "__main__":
    main(sys.argv[1:])
