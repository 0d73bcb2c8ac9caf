"""Hand-edited hardware profiles against one schema with physical bounds (model/profile_checks.py):
shares of a peak within (0, 1], known collective names, scopes, modes and collective models,
bandwidths and latencies inside physical ranges; one line naming the field."""

import copy
import json

import pytest

from cli_check import one_line_error
from inferecon.model.published import get_profile

BASE = get_profile("h100-sxm").to_dict()
FIT = {"collective": "all_reduce", "world_size": 8, "scope": "intra", "alpha_us": 24.0, "beta_gbps": 30.0}


def _edit(fn):
    d = copy.deepcopy(BASE)
    d["network"]["collectives"] = [dict(FIT)]
    fn(d)
    return d


def _net(key, value):
    return lambda d: d["network"].update({key: value})


def _fit(key, value):
    return lambda d: d["network"]["collectives"][0].update({key: value})


CASES = [
    (lambda d: d["memory"].update(efficiency=75.0), "memory.efficiency 75 must be a share of the peak in (0, 1]"),
    (lambda d: d["compute"].update(efficiency=1.2), "compute.efficiency 1.2 must be a share of the peak"),
    (lambda d: d["network"]["intra"].update(efficiency=2.0), "network.intra.efficiency 2 must be a share"),
    (_net("collective_model", "ncll"), "network.collective_model 'ncll' is not one of nccl, paper (did you mean nccl"),
    (_net("collective_model", 1), "network.collective_model 1 is not one of nccl, paper"),
    (_fit("scope", "intar"), "collectives[0].scope 'intar' is not one of intra, inter"),
    (_fit("collective", "allreduce"), "collectives[0].collective 'allreduce' is not one of"),
    (_fit("mode", "cuda-graph"), "collectives[0].mode 'cuda-graph' is not one of eager, graph"),
    (_fit("scpoe", "intra"), "collectives[0]: unknown field 'scpoe' (did you mean scope"),
    (_fit("beta_gbps", 1e-300), "collectives[0].beta_gbps 1e-300 GB/s is outside the physical range"),
    (_fit("alpha_us", 1e308), "collectives[0].alpha_us 1e+308 µs is outside the physical range"),
    (_fit("world_size", 10**6), "collectives[0].world_size 1e+06 is outside [1, 65,536]"),
    (lambda d: d["latency"].update(kernel_launch_us=1e308), "latency.kernel_launch_us 1e+308 µs is outside"),
    (lambda d: d["memory"].update(bandwidth_gbps=1e9), "memory.bandwidth_gbps 1e+09 GB/s is outside"),
    (lambda d: d["memory"].update(capacity_gb=1e-9), "memory.capacity_gb 1e-09 GB is outside"),
    (lambda d: d["compute"]["peak_tflops"].update(bf16=1e12), "compute.peak_tflops.bf16 1e+12 TFLOP/s is outside"),
    (lambda d: d.update(price_usd_per_gpu_hour=1e-300), "$1e-300/GPU-hour is below $0.001"),
    (_net("time_scale", 1e6), "network.time_scale 1e+06 is above 100"),
]


@pytest.mark.parametrize("edit, fragment", CASES, ids=[c[1][:36] for c in CASES])
def test_hand_edited_profile_is_refused_in_one_line(tmp_path, capsys, edit, fragment):
    p = tmp_path / "profile.json"
    p.write_text(json.dumps(_edit(edit)))
    line = one_line_error(capsys, ["predict", "--model", "llama-3-8b", "--hardware", str(p)])
    assert str(p) in line and fragment in line, line


def test_the_unedited_profile_with_a_fit_is_accepted(tmp_path, capsys):
    # The same file with no edit: the schema refuses only what is wrong (a test that can fail).
    from inferecon import cli

    p = tmp_path / "profile.json"
    p.write_text(json.dumps(_edit(lambda d: None)))
    assert cli.main(["predict", "--model", "llama-3-8b", "--hardware", str(p), "--json"]) == 0
