"""Every number and name at the edge: finite, in range, whole where it must be; configs and
profiles that describe impossible hardware or models are refused in one line (exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inferecon.model.published import PROFILES, get_profile
from inferecon.cli import main
from inferecon.core.errors import UserError
from inferecon.model.hardware import HardwareProfile
from inferecon.model.spec import ModelSpec

LLAMA_8B = json.loads(Path("tests/fixtures/hf/llama-3-8b.json").read_text())


def _main(argv, capsys):
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse: parse-time refusals
        rc = exc.code
    out, err = capsys.readouterr()
    return rc, out, err


def _refused(argv, capsys, message):
    rc, out, err = _main(argv, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, (argv, out[-300:], err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------------------------------
# Numbers on the command line

FRONTIER_NUMBERS = [
    (["--price", "inf"], "argument --price: must be a finite number in [0.001, 1000]"),
    (["--price", "nan"], "argument --price"),
    (["--price", "1e308"], "got 1e308"),  # used to print costs with 300 digits
    (["--price", "0"], "argument --price"),
    (["--price", "cheap"], "must be a number"),
    (["--context", "-5"], "argument --context"),
    (["--context", "1.5"], "whole number"),
    (["--context", "1e4"], "whole number"),
    (["--context", "99999999999"], "argument --context"),
    (["--max-gpus", "0"], "argument --max-gpus"),
    (["--max-gpus", "100000000"], "argument --max-gpus"),
    (["--rows", "0"], "argument --rows"),
    (["--rows", "2.5"], "whole number"),
    (["--spec-decode", "llama-3-8b", "--acceptance", "nan"], "argument --acceptance"),
    (["--spec-decode", "llama-3-8b", "--acceptance", "1.01"], "argument --acceptance"),
    (["--spec-decode", "llama-3-8b", "--acceptance", "-0.1"], "argument --acceptance"),
]


@pytest.mark.parametrize("args,message", FRONTIER_NUMBERS)
def test_frontier_numbers(args, message, tmp_path, capsys):
    _refused(["frontier", "--model", "llama-3-70b", *args, "--out", tmp_path], capsys, message)
    assert not (tmp_path / "frontier.csv").exists()


@pytest.mark.parametrize("args,message", [
    (["--model", ",,"], "--model names nothing"),
    (["--model", "llama-3-70b", "--gpu", ","], "--gpu names nothing"),
    (["--model", "llama-3-70b", "--hardware", " , "], "--hardware names nothing"),
])
def test_frontier_names_that_name_nothing(args, message, tmp_path, capsys):
    _refused(["frontier", *args, "--out", tmp_path], capsys, message)


def test_acceptance_one_is_the_limit_not_an_error(tmp_path, capsys):
    # α = 1: every draft token accepted, γ + 1 tokens per round (the formula's limit).
    rc, out, _ = _main(["frontier", "--model", "llama-3-70b", "--spec-decode", "llama-3-8b", "--acceptance", "1",
                        "--max-gpus", "8", "--out", tmp_path], capsys)
    assert rc == 0 and not re.search(r"\bnan\b", out, re.IGNORECASE)


@pytest.mark.parametrize("args,message", [
    (["--price", "inf"], "argument --price"),
    (["--context", "-1"], "argument --context"),
    (["--spec-decode", "llama-3-8b", "--acceptance", "2"], "argument --acceptance"),
])
def test_predict_numbers(args, message, capsys):
    _refused(["predict", "--model", "llama-3-70b", *args], capsys, message)


@pytest.mark.parametrize("args,message", [
    (["--resamples", "10000000000"], "argument --resamples"),
    (["--seed", "-1"], "argument --seed"),
    (["--max-gpus", "0"], "argument --max-gpus"),
    (["--drift=nan%"], "--drift must be"),
    (["--drift=-2%"], "--drift must be"),
    (["--tolerance", "inf%"], "--tolerance inf%: the smallest slowdown that counts must be in [0%, 100%)"),
    (["--confidence", "nan"], "--confidence nan: the bootstrap CI level must be in (0.5, 1)"),
])
def test_regress_numbers(args, message, tmp_path, capsys):
    from test_regress import make_run

    a, b = make_run(tmp_path / "a", seed=1), make_run(tmp_path / "b", seed=2)
    _refused(["regress", "--no-model", "--baseline", a, "--candidate", b, *args], capsys, message)
    assert not (b / "regress.json").exists()


@pytest.mark.parametrize("command", ["bench memory --device cpu", "calibrate --device cpu"])
@pytest.mark.parametrize("args,message", [
    (["--timeout-s", "nan"], "argument --timeout-s"),  # used to kill rank 0 with a ValueError
    (["--timeout-s", "-1"], "argument --timeout-s"),
    (["--nproc-per-node", "100000"], "argument --nproc-per-node"),
    (["--nproc-per-node", "0"], "argument --nproc-per-node"),
])
def test_measuring_numbers(command, args, message, tmp_path, capsys):
    # Refused while parsing, before torch is imported or anything is measured.
    _refused([*command.split(), "--quick", *args, "--out", tmp_path / "run"], capsys, message)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------
# config.json


def _config(tmp_path, **changes) -> Path:
    cfg = {**LLAMA_8B, **changes}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.mark.parametrize("changes,message", [
    ({"num_attention_heads": 30}, "30 attention heads do not divide hidden size 4096"),
    ({"hidden_size": 4096.5}, "hidden_size must be a whole number, got 4096.5"),
    ({"num_key_value_heads": 5}, "5 key-value heads do not divide 32 attention heads"),
    ({"num_key_value_heads": 64}, "key-value heads"),
    ({"num_local_experts": 4, "num_experts_per_tok": 8}, "8 experts per token exceed the 4 experts"),
    ({"num_local_experts": 8}, "needs num_experts_per_tok"),
    ({"vocab_size": -3}, "vocab_size must be positive"),
    ({"num_hidden_layers": "32"}, "num_hidden_layers must be a number, got '32'"),
    ({"num_hidden_layers": True}, "num_hidden_layers must be a number, got True"),
    ({"intermediate_size": 0}, "intermediate_size must be positive"),
    ({"first_k_dense_replace": 40, "num_local_experts": 8, "num_experts_per_tok": 2}, "first_k_dense_replace 40"),
])
def test_bad_configs_are_refused(changes, message, tmp_path, capsys):
    path = _config(tmp_path, **changes)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        ModelSpec.from_hf_config(path)
    _refused(["frontier", "--model", path, "--out", tmp_path / "o"], capsys, message)


def test_head_dim_given_allows_heads_that_do_not_divide(tmp_path):
    # Qwen3-32B: 64 heads x head_dim 128 = 8192 != hidden 5120. Legitimate where head_dim is given.
    spec = ModelSpec.from_hf_config(_config(tmp_path, hidden_size=5120, num_attention_heads=64, head_dim=128))
    assert spec.d_head == 128 and spec.n_heads == 64


def test_every_shipped_config_fixture_passes():
    for name in ("llama-3-8b", "mixtral-8x7b", "deepseek-v3", "qwen3-235b-a22b"):
        ModelSpec.from_hf_config(Path(f"tests/fixtures/hf/{name}.json"))


# ---------------------------------------------------------------------------------------
# Hardware profiles


def _profile(tmp_path, edit) -> Path:
    d = json.loads(json.dumps(get_profile("h100-sxm").to_dict()))
    edit(d)
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(d))
    return path


BAD_PROFILES = [
    (lambda d: d["memory"].update(bandwidth_gbps=0), "memory.bandwidth_gbps must be positive, got 0"),
    (lambda d: d["memory"].update(capacity_gb=-80), "memory.capacity_gb must be positive"),
    (lambda d: d["compute"]["peak_tflops"].update(bf16=0), "compute.peak_tflops.bf16 must be positive"),
    (lambda d: d["compute"].update(efficiency=float("nan")), "compute.efficiency must be finite"),
    (lambda d: d["network"]["intra"].update(bandwidth_gbps="fast"), "network.intra.bandwidth_gbps must be a number"),
    (lambda d: d["network"].update(gpus_per_node=7.5), "network.gpus_per_node must be a whole number"),
    (lambda d: d["latency"].update(kernel_launch_us=-4), "latency.kernel_launch_us must not be negative"),
    (lambda d: d.update(price_usd_per_gpu_hour=0), "price_usd_per_gpu_hour must be positive"),
    (lambda d: d.update(price_usd_per_gpu_hour=1e308), "is above $1000"),
    (lambda d: d.update(schema_version=99), "schema_version 99"),
]


@pytest.mark.parametrize("edit,message", BAD_PROFILES)
def test_bad_profiles_are_refused_by_frontier(edit, message, tmp_path, capsys):
    path = _profile(tmp_path, edit)
    with pytest.raises(UserError, match=message.replace("$", r"\$")):
        HardwareProfile.load(path)
    _refused(["frontier", "--model", "llama-3-70b", "--hardware", path, "--out", tmp_path / "o"], capsys, message)


@pytest.mark.slow
def test_zero_bandwidth_profile_is_one_line_in_validate(tmp_path):
    path = _profile(tmp_path, lambda d: d["memory"].update(bandwidth_gbps=0))
    r = subprocess.run([sys.executable, "-m", "inferecon", "validate", "--hardware", str(path), "--model", "tiny-llama",
                        "--device", "cpu", "--quick", "--out", str(tmp_path / "v")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"inferecon: error: {path}: memory.bandwidth_gbps must be positive, got 0"]
    assert not (tmp_path / "v").exists()  # nothing measured


def test_every_published_profile_passes_its_own_checks(tmp_path):
    for name, prof in PROFILES.items():
        assert HardwareProfile.load(prof.save(tmp_path / f"{name}.json")) == prof
